package match

import (
	"fmt"
	"strings"
)

// PortSet is a bitmap of the 65536 transport ports (8 KiB).
type PortSet [1 << 16 / 64]uint64

func (s *PortSet) add(r portRange) {
	for p := uint32(r.lo); p <= uint32(r.hi); p++ {
		s[p>>6] |= 1 << (p & 63)
	}
}

// Has reports whether port p is in s.
func (s *PortSet) Has(p uint16) bool { return s[p>>6]&(1<<(p&63)) != 0 }

// Matcher decides which records to keep. It is read-only once built and
// safe for concurrent use.
type Matcher struct {
	// KeepAll is set when no protocols are configured.
	KeepAll bool
	// Whole marks the protocols kept on every port.
	Whole [256]bool
	// Ports holds, per protocol kept on some ports only, those ports; nil
	// for the others.
	Ports [256]*PortSet
	// AnyPort is set when some entry of Ports is non-nil.
	AnyPort bool
	// Kept lists the normalised entries in effect, for logs and tests.
	Kept []string
}

// New validates cfg and builds its matcher. Protocols entries of the right
// type that name no protocol or group are not errors: they come back as
// warnings naming their key, to be logged, and are ignored.
func New(cfg *Config) (m *Matcher, warnings []string, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	m = &Matcher{KeepAll: len(cfg.Protocols) == 0}
	groups := map[string][]GroupEntry{}
	for name, g := range builtinGroups {
		groups[name] = g
	}
	for name, g := range cfg.Groups {
		groups[strings.ToLower(strings.TrimSpace(name))] = g
	}
	seen := map[string]bool{}
	for i, v := range cfg.Protocols {
		s, number, _ := entryString(v)
		key := strings.ToLower(strings.TrimSpace(s))
		if seen[key] {
			continue
		}
		if g, ok := groups[key]; ok && !number {
			for _, e := range g {
				pe, _ := parseEntry(e) // validated
				m.add(pe)
			}
		} else if p, ok := lookupProtocol(key); ok {
			m.Whole[p] = true
		} else {
			warnings = append(warnings, fmt.Sprintf("ignoring protocols[%d] = %v: not an IANA protocol keyword, a number 0-255 or a group", i, v))
			continue
		}
		seen[key] = true
		m.Kept = append(m.Kept, key)
	}
	if !m.KeepAll && len(m.Kept) == 0 {
		warnings = append(warnings, "no valid protocols entry: every record will be dropped")
	}
	return m, warnings, nil
}

func (m *Matcher) add(e parsedEntry) {
	if len(e.ports) == 0 {
		m.Whole[e.protocol] = true
		return
	}
	ps := m.Ports[e.protocol]
	if ps == nil {
		ps = new(PortSet)
		m.Ports[e.protocol] = ps
		m.AnyPort = true
	}
	for _, r := range e.ports {
		ps.add(r)
	}
}

// Keep reports whether a record with protocolIdentifier proto and transport
// ports src and dst passes: its protocol is kept on every port, or one of
// its ports is in the protocol's port set.
func (m *Matcher) Keep(proto uint8, src, dst uint16) bool {
	if m.KeepAll || m.Whole[proto] {
		return true
	}
	if ps := m.Ports[proto]; ps != nil {
		return ps.Has(src) || ps.Has(dst)
	}
	return false
}
