package match

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Config is filter.protocol's configuration, shared by the built-in plugin
// (koanf) and the WASM example (JSON).
//
// # Notes
//   - Validate rejects only what cannot be an entry at all: a protocols
//     entry that is not a string or an integer (a map, a list, a bool), and
//     malformed groups (groups are written on purpose, so a bad port or an
//     unknown protocol in a group is an error). A protocols entry of the
//     right type that names no protocol or group ("tpc", 300) is ignored
//     with a warning when the filter is built, so one typo does not stop a
//     running collector from starting.
type Config struct {
	// Protocols lists what to keep: IANA protocol keywords ("tcp", "udp",
	// "icmp", "ipv6-icmp" or "icmpv6", "sctp", "gre", "esp", …), protocol
	// numbers 0–255, and group names ("web", "dns" or a key of Groups). Case
	// does not matter; duplicates are ignored. Default empty: keep every
	// record. If entries were given but none is valid, every record is
	// dropped (and an error is logged) rather than the filter silently
	// keeping everything.
	Protocols []any `koanf:"protocols" json:"protocols"`
	// Groups defines named groups of protocol/port pairs usable in
	// Protocols, in addition to the built-in "web" (tcp 80, 443) and "dns"
	// (udp and tcp 53); a group named like a built-in one replaces it.
	// Default none.
	Groups map[string][]GroupEntry `koanf:"groups" json:"groups"`
}

// GroupEntry is one protocol of a group, optionally narrowed to ports.
type GroupEntry struct {
	// Protocol is an IANA protocol keyword or a number 0–255. Required.
	Protocol any `koanf:"protocol" json:"protocol"`
	// Ports are transport ports (0–65535) or inclusive ranges "lo-hi"
	// ("8000-8099"). A record matches when its source or destination port
	// is one of them. Empty means every port of Protocol.
	Ports []any `koanf:"ports" json:"ports"`
}

// DefaultConfig returns the defaults: no protocols (keep everything).
func DefaultConfig() *Config { return &Config{} }

// Validate checks entry types and groups. It is pure and joins every
// problem.
func (c *Config) Validate() error {
	var errs []error
	for i, p := range c.Protocols {
		if _, _, ok := entryString(p); !ok {
			errs = append(errs, fmt.Errorf("protocols[%d]: %v (%T) is not a protocol name, number or group name", i, p, p))
		}
	}
	seen := map[string]string{}
	for _, name := range sortedKeys(c.Groups) {
		key := fmt.Sprintf("groups.%s", name)
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
		entries := c.Groups[name]
		if len(entries) == 0 {
			errs = append(errs, fmt.Errorf("%s: group is empty", key))
		}
		for j, e := range entries {
			_, entryErrs := parseEntry(e)
			for _, err := range entryErrs {
				// One error per problem: wrapping a joined error would
				// hide the inner ones' keys from the config loader.
				errs = append(errs, fmt.Errorf("%s[%d]: %w", key, j, err))
			}
		}
	}
	return errors.Join(errs...)
}

// entryString returns a protocols entry as text and whether it is a number.
// ok is false for types that cannot be an entry.
func entryString(v any) (s string, number bool, ok bool) {
	switch v := v.(type) {
	case string:
		return v, false, true
	case int:
		return strconv.FormatInt(int64(v), 10), true, true
	case int8, int16, int32, int64:
		return fmt.Sprint(v), true, true
	case uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(v), true, true
	case float64:
		// JSON and some YAML paths produce floats for integers.
		if v == math.Trunc(v) && !math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'f', -1, 64), true, true
		}
		return strconv.FormatFloat(v, 'g', -1, 64), true, true
	case float32:
		return entryString(float64(v))
	case json.Number:
		if f, err := v.Float64(); err == nil {
			return entryString(f)
		}
		return v.String(), true, true
	}
	return "", false, false
}

func isProtocol(s string) bool {
	_, ok := lookupProtocol(s)
	return ok
}

// portRange is an inclusive range of transport ports.
type portRange struct{ lo, hi uint16 }

// parsedEntry is a validated GroupEntry.
type parsedEntry struct {
	protocol uint8
	ports    []portRange // empty: every port
}

// parseEntry checks e and returns one error per problem, each naming its
// key.
func parseEntry(e GroupEntry) (parsedEntry, []error) {
	var (
		out  parsedEntry
		errs []error
	)
	if e.Protocol == nil {
		errs = append(errs, errors.New("protocol: missing"))
	} else if s, _, ok := entryString(e.Protocol); !ok {
		errs = append(errs, fmt.Errorf("protocol: %v (%T) is not a protocol name or number", e.Protocol, e.Protocol))
	} else if p, ok := lookupProtocol(s); !ok {
		errs = append(errs, fmt.Errorf("protocol: %q is not an IANA protocol keyword or a number 0-255", s))
	} else {
		out.protocol = p
	}
	for k, v := range e.Ports {
		r, err := parsePorts(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("ports[%d]: %w", k, err))
			continue
		}
		out.ports = append(out.ports, r)
	}
	return out, errs
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Warnings returns the entries New would ignore (right type, but naming no
// protocol or group), for `weir validate`; nil for an invalid config.
func (c *Config) Warnings() []string {
	_, warnings, err := New(c)
	if err != nil {
		return nil
	}
	return warnings
}
