package proxy

import (
	"context"
	_ "embed"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "proxy"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "forward records unaggregated, adding originalExporterIPv4/IPv6Address and originalObservationDomainId",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Proxy stamps records with their original exporter and observation domain.
// It mutates records in place and never drops one; it is safe for
// concurrent use.
type Proxy struct {
	overwrite bool
}

// New returns a proxy; it fails only on a config Validate refuses.
func New(cfg *Config, _ plugin.Settings) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Proxy{overwrite: cfg.Overwrite}, nil
}

func (p *Proxy) Start(context.Context) error    { return nil }
func (p *Proxy) Shutdown(context.Context) error { return nil }

// Process sets IEs 403/404 and 405 on every record from the record's
// exporter address and observation domain.
func (p *Proxy) Process(_ context.Context, b *flow.Batch) error {
	for _, r := range b.Records {
		if !p.overwrite && r.Present.Has(flow.OriginalExporterAddress) {
			continue
		}
		if a := r.Exporter.Addr(); a.IsValid() {
			r.OriginalExporterAddress = a.Unmap()
			r.Present.Add(flow.OriginalExporterAddress)
		}
		r.OriginalObservationDomainID = r.ObservationDomainID
		r.Present.Add(flow.OriginalObservationDomainID)
	}
	return nil
}

var _ plugin.Processor = (*Proxy)(nil)
