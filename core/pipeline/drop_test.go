package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/plugin"
)

type dropperConfig struct {
	// Mode: "partial" (drops only), "failed" (drops joined with a
	// failure), "deferred" (plugin.Deferred, reports at Shutdown).
	Mode string `koanf:"mode"`
}

func (dropperConfig) Validate() error { return nil }

// dropper delivers records whose source port is even; of the odd ones,
// port%4 == 1 are dropped as record_too_large and port%4 == 3 as
// send_error, the way a real exporter drops what it cannot encode or send.
type dropper struct {
	mode      string
	mu        sync.Mutex
	delivered int
	buffered  []uint16 // deferred: source ports waiting for Shutdown
	out       plugin.Outcome
}

func (d *dropper) Start(context.Context) error { return nil }

func (d *dropper) SetOutcome(o plugin.Outcome) { d.out = o }

func (d *dropper) Export(_ context.Context, b *flow.Batch) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mode == "deferred" {
		// Accept everything now; what becomes of it is known at Shutdown.
		for _, r := range b.Records {
			d.buffered = append(d.buffered, r.SourceTransportPort)
		}
		return nil
	}
	tooLarge, sendErr := 0, 0
	for _, r := range b.Records {
		switch r.SourceTransportPort % 4 {
		case 1:
			tooLarge++
		case 3:
			sendErr++
		default:
			d.delivered++
		}
	}
	var errs []error
	if tooLarge > 0 {
		errs = append(errs, plugin.Dropped(plugin.DropRecordTooLarge, tooLarge, errors.New("does not fit")))
	}
	if sendErr > 0 {
		errs = append(errs, fmt.Errorf("send: %w", plugin.Dropped(plugin.DropSendError, sendErr, nil)))
	}
	if d.mode == "failed" {
		// The even records were not delivered after all: the batch failed.
		d.delivered -= b.Len() - tooLarge - sendErr
		errs = append(errs, plugin.Fail(plugin.ReasonUnavailable, errors.New("peer gone")))
	}
	return errors.Join(errs...)
}

func (d *dropper) Shutdown(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mode != "deferred" || d.out == nil {
		return nil
	}
	for _, port := range d.buffered {
		if port%2 == 0 {
			d.out.Delivered(1)
		} else {
			d.out.Dropped(plugin.DropRejected, 1)
		}
	}
	d.buffered = nil
	return nil
}

var _ plugin.Deferred = (*dropper)(nil)

func init() {
	plugin.Register(plugin.Info{ID: "export.test_dropper", NewConfig: func() plugin.Config { return &dropperConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			return &dropperExporter{&dropper{mode: c.(*dropperConfig).Mode}}, nil
		}})
	plugin.Register(plugin.Info{ID: "export.test_deferred", NewConfig: func() plugin.Config { return &dropperConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) {
			return &dropper{mode: "deferred"}, nil
		}})
}

// dropperExporter hides SetOutcome: a plain (not Deferred) exporter.
type dropperExporter struct{ d *dropper }

func (e *dropperExporter) Start(ctx context.Context) error { return e.d.Start(ctx) }
func (e *dropperExporter) Export(ctx context.Context, b *flow.Batch) error {
	return e.d.Export(ctx, b)
}
func (e *dropperExporter) Shutdown(ctx context.Context) error { return e.d.Shutdown(ctx) }

// TestExporterDropAccounting checks that records an exporter drops inside a
// batch it otherwise delivered are counted dropped by reason, not out:
// out + dropped + errored == in for every kind of exporter result.
func TestExporterDropAccounting(t *testing.T) {
	const n = 1000 // ports 0..999: 500 even, 250 %4==1, 250 %4==3
	for _, tc := range []struct {
		name, exporter                   string
		out, tooLarge, sendErr, rejected uint64
		errored                          uint64
	}{
		{name: "partial", exporter: "export.test_dropper: {mode: partial}", out: 500, tooLarge: 250, sendErr: 250},
		{name: "failed", exporter: "export.test_dropper: {mode: failed}", tooLarge: 250, sendErr: 250, errored: 500},
		{name: "deferred", exporter: "export.test_deferred: {}", out: 500, rejected: 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			cfg, err := config.Parse([]byte(fmt.Sprintf(`
pipeline:
  name: drops
  batch: {size: 64, timeout: 50ms}
  sources:
    - source.test_gen: {records: %d}
  exporters:
    - %s
`, n, tc.exporter)), nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := pipeline.New(context.Background(), cfg, pipeline.Options{Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitDone(t, p, "finite source never finished")
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			s := stat(t, p, "exporters[0]")
			if s.In != n {
				t.Fatalf("in %d, want %d", s.In, n)
			}
			if s.Out != tc.out || s.Dropped[plugin.DropRecordTooLarge] != tc.tooLarge ||
				s.Dropped[plugin.DropSendError] != tc.sendErr || s.Dropped[plugin.DropRejected] != tc.rejected || s.Errored != tc.errored {
				t.Errorf("out %d, dropped %v, errored %d; want out %d, record_too_large %d, send_error %d, rejected %d, errored %d",
					s.Out, s.Dropped, s.Errored, tc.out, tc.tooLarge, tc.sendErr, tc.rejected, tc.errored)
			}
			var dropped uint64
			for _, v := range s.Dropped {
				dropped += v
			}
			if s.Out+dropped+s.Errored != s.In {
				t.Errorf("out %d + dropped %d + errored %d != in %d", s.Out, dropped, s.Errored, s.In)
			}
			if tc.errored > 0 && s.ErroredBy[plugin.ReasonUnavailable] != tc.errored {
				t.Errorf("errored by reason %v, want unavailable %d", s.ErroredBy, tc.errored)
			}
			// The metrics say the same.
			if got := stageMetric(t, reg, "weir_stage_records_out_total", ""); got != float64(tc.out) {
				t.Errorf("weir_stage_records_out_total of the exporter: %v, want %d", got, tc.out)
			}
			got := stageMetric(t, reg, "weir_stage_records_dropped_total", plugin.DropRecordTooLarge) + stageMetric(t, reg, "weir_stage_records_dropped_total", plugin.DropSendError) + stageMetric(t, reg, "weir_stage_records_dropped_total", plugin.DropRejected)
			if got != float64(tc.tooLarge+tc.sendErr+tc.rejected) {
				t.Errorf("weir_stage_records_dropped_total of the exporter: %v, want %d", got, tc.tooLarge+tc.sendErr+tc.rejected)
			}
		})
	}
}

// stageMetric reads the counter name{stage="exporters[0]"}, with reason
// when not "".
func stageMetric(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["stage"] == "exporters[0]" && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{stage=\"exporters[0]\",reason=%q}", name, reason)
	return 0
}
