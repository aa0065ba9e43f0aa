package protocol

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/plugins/filter/protocol/match"
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
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Filter keeps the records of the configured protocols and drops the rest.
// It reads only protocolIdentifier and the two transport ports, never
// modifies a record, and is safe for concurrent use.
type Filter struct {
	m *match.Matcher
}

// New builds a filter from cfg, logging the entries it ignores (right type,
// but naming no protocol or group).
func New(cfg *Config, set plugin.Settings) (*Filter, error) {
	m, warnings, err := match.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, w := range warnings {
		log.Warn(w, "protocols", cfg.Protocols)
	}
	return &Filter{m: m}, nil
}

// Keep reports whether r passes the filter.
func (f *Filter) Keep(r *flow.Record) bool {
	return f.m.Keep(r.ProtocolIdentifier, r.SourceTransportPort, r.DestinationTransportPort)
}

func (f *Filter) keepWhole(r *flow.Record) bool { return f.m.Whole[r.ProtocolIdentifier] }

// SelectedProtocols returns the protocols a kept record may have: those
// kept on every port and those kept on some ports.
func (f *Filter) SelectedProtocols() (set [256]bool, all bool) {
	if f.m.KeepAll {
		return set, true
	}
	for p := range set {
		set[p] = f.m.Whole[p] || f.m.Ports[p] != nil
	}
	return set, false
}

func (f *Filter) Start(context.Context) error    { return nil }
func (f *Filter) Shutdown(context.Context) error { return nil }

// Process removes from b the records that do not pass; it keeps the order of
// the others and does not modify them. A record without protocolIdentifier
// reads as protocol 0 (hopopt).
func (f *Filter) Process(_ context.Context, b *flow.Batch) error {
	switch {
	case f.m.KeepAll:
	case f.m.AnyPort:
		b.Retain(f.Keep)
	default:
		b.Retain(f.keepWhole)
	}
	return nil
}

var (
	_ plugin.Processor        = (*Filter)(nil)
	_ plugin.ProtocolSelector = (*Filter)(nil)
)
