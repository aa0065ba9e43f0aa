package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	weir "github.com/weir-flow/weir/sdk/wasm"
)

// Config is filter.protocol's configuration.
type Config struct {
	// Protocols lists what to keep: IANA protocol keywords, numbers 0–255
	// and group names, in any case. Empty keeps every record.
	Protocols []any `json:"protocols"`
	// Groups are named protocol/port groups usable in Protocols, besides
	// the built-in "web" (tcp 80, 443) and "dns" (udp and tcp 53).
	Groups map[string][]GroupEntry `json:"groups"`
}

// GroupEntry is one protocol of a group, optionally narrowed to ports
// (numbers or "lo-hi" ranges; a record matches on either port).
type GroupEntry struct {
	Protocol any   `json:"protocol"`
	Ports    []any `json:"ports"`
}

// Filter decides which records to keep.
type Filter struct {
	keepAll bool
	whole   [256]bool
	ports   [256]*portSet
}

type portSet [1 << 16 / 64]uint64

func (s *portSet) has(p uint16) bool { return s[p>>6]&(1<<(p&63)) != 0 }

type portRange struct{ lo, hi uint16 }

// Keep reports whether r passes.
func (f *Filter) Keep(r *weir.Record) bool {
	return f.KeepValues(r.ProtocolIdentifier, r.SourceTransportPort, r.DestinationTransportPort)
}

// KeepValues reports whether a record with protocolIdentifier proto and
// transport ports src and dst passes.
func (f *Filter) KeepValues(proto uint8, src, dst uint16) bool {
	if f.keepAll || f.whole[proto] {
		return true
	}
	if ps := f.ports[proto]; ps != nil {
		return ps.has(src) || ps.has(dst)
	}
	return false
}

// New validates cfg and builds the filter. Entries of the right type that
// name nothing are returned as warnings, as filter.protocol logs them.
func New(cfg *Config) (*Filter, []string, error) {
	var errs []error
	for i, p := range cfg.Protocols {
		if _, _, ok := entryString(p); !ok {
			errs = append(errs, fmt.Errorf("protocols[%d]: %v (%T) is not a protocol name, number or group name", i, p, p))
		}
	}
	groups := map[string][]GroupEntry{}
	for name, g := range builtinGroups {
		groups[name] = g
	}
	seen := map[string]string{}
	names := make([]string, 0, len(cfg.Groups))
	for name := range cfg.Groups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := "groups." + name
		lower := strings.ToLower(strings.TrimSpace(name))
		switch {
		case lower == "":
			errs = append(errs, fmt.Errorf("%s: group name is empty", key))
			continue
		case isProtocol(lower):
			errs = append(errs, fmt.Errorf("%s: group name %q is also a protocol name or number", key, name))
		}
		if other, dup := seen[lower]; dup {
			errs = append(errs, fmt.Errorf("%s: group name %q differs from %q only in case", key, name, other))
		}
		seen[lower] = name
		if len(cfg.Groups[name]) == 0 {
			errs = append(errs, fmt.Errorf("%s: group is empty", key))
		}
		for j, e := range cfg.Groups[name] {
			if _, _, entryErrs := parseEntry(e); len(entryErrs) > 0 {
				for _, err := range entryErrs {
					errs = append(errs, fmt.Errorf("%s[%d]: %w", key, j, err))
				}
			}
		}
		groups[lower] = cfg.Groups[name]
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}

	f := &Filter{keepAll: len(cfg.Protocols) == 0}
	var warnings []string
	done := map[string]bool{}
	kept := 0
	for i, v := range cfg.Protocols {
		s, number, _ := entryString(v)
		key := strings.ToLower(strings.TrimSpace(s))
		if done[key] {
			continue
		}
		if g, ok := groups[key]; ok && !number {
			for _, e := range g {
				p, ports, _ := parseEntry(e)
				f.add(p, ports)
			}
		} else if p, ok := lookupProtocol(key); ok {
			f.whole[p] = true
		} else {
			warnings = append(warnings, fmt.Sprintf("ignoring protocols[%d] = %v: not an IANA protocol keyword, a number 0-255 or a group", i, v))
			continue
		}
		done[key] = true
		kept++
	}
	if !f.keepAll && kept == 0 {
		warnings = append(warnings, "no valid protocols entry: every record will be dropped")
	}
	return f, warnings, nil
}

func (f *Filter) add(p uint8, ports []portRange) {
	if len(ports) == 0 {
		f.whole[p] = true
		return
	}
	if f.ports[p] == nil {
		f.ports[p] = new(portSet)
	}
	for _, r := range ports {
		for q := uint32(r.lo); q <= uint32(r.hi); q++ {
			f.ports[p][q>>6] |= 1 << (q & 63)
		}
	}
}

// entryString returns an entry as text and whether it is a number; ok is
// false for types that cannot be an entry.
func entryString(v any) (s string, number, ok bool) {
	switch v := v.(type) {
	case string:
		return v, false, true
	case json.Number:
		if f, err := v.Float64(); err == nil && f == math.Trunc(f) {
			return strconv.FormatFloat(f, 'f', -1, 64), true, true
		}
		return v.String(), true, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true, true
	}
	return "", false, false
}

func parseEntry(e GroupEntry) (uint8, []portRange, []error) {
	var (
		proto uint8
		ports []portRange
		errs  []error
	)
	if e.Protocol == nil {
		errs = append(errs, errors.New("protocol: missing"))
	} else if s, _, ok := entryString(e.Protocol); !ok {
		errs = append(errs, fmt.Errorf("protocol: %v (%T) is not a protocol name or number", e.Protocol, e.Protocol))
	} else if p, ok := lookupProtocol(s); !ok {
		errs = append(errs, fmt.Errorf("protocol: %q is not an IANA protocol keyword or a number 0-255", s))
	} else {
		proto = p
	}
	for k, v := range e.Ports {
		r, err := parsePorts(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("ports[%d]: %w", k, err))
			continue
		}
		ports = append(ports, r)
	}
	return proto, ports, errs
}

func parsePorts(v any) (portRange, error) {
	s, _, ok := entryString(v)
	if !ok {
		return portRange{}, fmt.Errorf("%v (%T) is not a port or a range lo-hi", v, v)
	}
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	}
	if err1 != nil || err2 != nil {
		return portRange{}, fmt.Errorf("%q is not a port 0-65535 or a range lo-hi", s)
	}
	if a > b {
		return portRange{}, fmt.Errorf("range %q is empty (lo > hi)", s)
	}
	return portRange{uint16(a), uint16(b)}, nil
}

func isProtocol(s string) bool {
	_, ok := lookupProtocol(s)
	return ok
}

// lookupProtocol resolves a keyword (any case) or a number 0–255.
func lookupProtocol(s string) (uint8, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if n, ok := protocolNumbers[s]; ok {
		return n, true
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return uint8(n), true
	}
	return 0, false
}

var builtinGroups = map[string][]GroupEntry{
	"web": {{Protocol: "tcp", Ports: []any{80.0, 443.0}}},
	"dns": {{Protocol: "udp", Ports: []any{53.0}}, {Protocol: "tcp", Ports: []any{53.0}}},
}

// protocolNumbers maps lower-case IANA protocol keywords (and the usual
// /etc/protocols aliases) to numbers; the same table as filter.protocol.
var protocolNumbers = map[string]uint8{
	"hopopt":          0,
	"icmp":            1,
	"igmp":            2,
	"ggp":             3,
	"ipv4":            4,
	"ipencap":         4, // /etc/protocols alias of IP-in-IP
	"st":              5,
	"tcp":             6,
	"egp":             8,
	"igp":             9,
	"pup":             12,
	"udp":             17,
	"hmp":             20,
	"xns-idp":         22,
	"rdp":             27,
	"iso-tp4":         29,
	"dccp":            33,
	"xtp":             36,
	"ddp":             37,
	"idpr-cmtp":       38,
	"ipv6":            41,
	"ipv6-route":      43,
	"ipv6-frag":       44,
	"idrp":            45,
	"rsvp":            46,
	"gre":             47,
	"esp":             50,
	"ah":              51,
	"skip":            57,
	"ipv6-icmp":       58,
	"icmpv6":          58, // common alias
	"icmp6":           58, // common alias
	"ipv6-nonxt":      59,
	"ipv6-opts":       60,
	"rspf":            73,
	"vmtp":            81,
	"eigrp":           88,
	"ospf":            89, // IANA keyword is OSPFIGP
	"ospfigp":         89,
	"ax.25":           93,
	"ipip":            94,
	"etherip":         97,
	"encap":           98,
	"pim":             103,
	"ipcomp":          108,
	"vrrp":            112,
	"l2tp":            115,
	"isis":            124, // "ISIS over IPv4"
	"sctp":            132,
	"fc":              133,
	"mobility-header": 135,
	"udplite":         136,
	"mpls-in-ip":      137,
	"manet":           138,
	"hip":             139,
	"shim6":           140,
	"wesp":            141,
	"rohc":            142,
	"ethernet":        143,
	"aggfrag":         144,
	"nsh":             145,
}
