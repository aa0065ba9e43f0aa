package protocol

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"strings"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "filter.protocol"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "keep records whose protocolIdentifier (and optionally ports) is in a set; drop the rest",
		NewConfig: func() plugin.Config { return DefaultConfig() },
		New: func(cfg plugin.Config, set plugin.Settings) (plugin.Component, error) {
			return New(cfg.(*Config), set)
		},
	})
}

// portSet is a bitmap of the 65536 transport ports (8 KiB).
type portSet [1 << 16 / 64]uint64

func (s *portSet) add(r portRange) {
	for p := uint32(r.lo); p <= uint32(r.hi); p++ {
		s[p>>6] |= 1 << (p & 63)
	}
}

func (s *portSet) has(p uint16) bool { return s[p>>6]&(1<<(p&63)) != 0 }

// Filter keeps the records of the configured protocols and drops the rest.
// It reads only protocolIdentifier and the two transport ports, never
// modifies a record, and is safe for concurrent use.
type Filter struct {
	keepAll bool          // no protocols configured
	whole   [256]bool     // protocols kept on every port
	ports   [256]*portSet // protocols kept on some ports only; nil if none
	anyPort bool          // some entry of ports is non-nil
	kept    []string      // normalised entries, for logs and tests
}

// New builds a filter from cfg. Entries that name no protocol or group are
// logged as warnings and ignored; cfg must pass Validate.
func New(cfg *Config, set plugin.Settings) (*Filter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Filter{keepAll: len(cfg.Protocols) == 0}
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
				f.addEntry(pe)
			}
		} else if p, ok := lookupProtocol(key); ok {
			f.whole[p] = true
		} else {
			log.Warn("ignoring protocols entry: not an IANA protocol keyword, a number 0-255 or a group",
				"key", fmt.Sprintf("protocols[%d]", i), "value", v)
			continue
		}
		seen[key] = true
		f.kept = append(f.kept, key)
	}
	if !f.keepAll && len(f.kept) == 0 {
		log.Error("no valid protocols entry: every record will be dropped", "protocols", cfg.Protocols)
	}
	return f, nil
}

func (f *Filter) addEntry(e parsedEntry) {
	if len(e.ports) == 0 {
		f.whole[e.protocol] = true
		return
	}
	ps := f.ports[e.protocol]
	if ps == nil {
		ps = new(portSet)
		f.ports[e.protocol] = ps
		f.anyPort = true
	}
	for _, r := range e.ports {
		ps.add(r)
	}
}

// Keep reports whether r passes the filter.
func (f *Filter) Keep(r *flow.Record) bool {
	if f.keepAll || f.whole[r.ProtocolIdentifier] {
		return true
	}
	if ps := f.ports[r.ProtocolIdentifier]; ps != nil {
		return ps.has(r.SourceTransportPort) || ps.has(r.DestinationTransportPort)
	}
	return false
}

func (f *Filter) keepWhole(r *flow.Record) bool { return f.whole[r.ProtocolIdentifier] }

func (f *Filter) Start(context.Context) error    { return nil }
func (f *Filter) Shutdown(context.Context) error { return nil }

// Process removes from b the records that do not pass; it keeps the order of
// the others and does not modify them. A record without protocolIdentifier
// reads as protocol 0 (hopopt).
func (f *Filter) Process(_ context.Context, b *flow.Batch) error {
	switch {
	case f.keepAll:
	case f.anyPort:
		b.Retain(f.Keep)
	default:
		b.Retain(f.keepWhole)
	}
	return nil
}

var _ plugin.Processor = (*Filter)(nil)
