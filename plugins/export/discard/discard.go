package discard

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "export.discard"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "count records and drop them (benchmarks, metrics-only pipelines)",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Exporter counts and drops records. It is safe for concurrent use.
type Exporter struct {
	records atomic.Uint64
	batches atomic.Uint64
}

// New returns an exporter and registers its metrics
// (weir_export_discard_records_total, weir_export_discard_batches_total).
func New(_ *Config, set plugin.Settings) (*Exporter, error) {
	e := &Exporter{}
	if set.Metrics == nil {
		return e, nil
	}
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
	}{
		{"records_total", "Records counted and dropped.", &e.records},
		{"batches_total", "Batches counted and dropped.", &e.batches},
	} {
		v := c.v
		if err := set.Metrics.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weir_export_discard_" + c.name, Help: c.help,
		}, func() float64 { return float64(v.Load()) })); err != nil {
			return nil, fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return e, nil
}

// Start does nothing.
func (e *Exporter) Start(context.Context) error { return nil }

// Export counts b's records. It never fails and never reads the records.
func (e *Exporter) Export(_ context.Context, b *flow.Batch) error {
	e.records.Add(uint64(b.Len()))
	e.batches.Add(1)
	return nil
}

// Records returns how many records Export has counted.
func (e *Exporter) Records() uint64 { return e.records.Load() }

// Shutdown does nothing; it is idempotent.
func (e *Exporter) Shutdown(context.Context) error { return nil }

var _ plugin.Exporter = (*Exporter)(nil)
