package pipeline_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/pipeline"
)

// TestExporterQueueCapacity: config.Queue.ExporterCapacity's table.
func TestExporterQueueCapacity(t *testing.T) {
	for _, tc := range []struct {
		q         config.Queue
		exporters int
		want      int
	}{
		{config.Queue{WhenFull: "auto"}, 1, 64},
		{config.Queue{WhenFull: "auto"}, 2, 1024},
		{config.Queue{WhenFull: "block"}, 3, 64},
		{config.Queue{WhenFull: "drop"}, 1, 1024},
		{config.Queue{WhenFull: "block", ExporterSize: 500}, 1, 500},
		{config.Queue{WhenFull: "drop", ExporterSize: 8}, 2, 8},
	} {
		if got := tc.q.ExporterCapacity(tc.exporters); got != tc.want {
			t.Errorf("%+v with %d exporters: %d, want %d", tc.q, tc.exporters, got, tc.want)
		}
	}
}

// queueCapacities returns weir_queue_capacity_batches by stage label.
func queueCapacities(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "weir_queue_capacity_batches" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// TestExporterQueueFollowsPolicy: by default an exporter's queue is short
// where it blocks (auto with one exporter) and long where it drops (auto
// with two); a reload that changes which rebuilds the kept exporter with
// the new depth.
func TestExporterQueueFollowsPolicy(t *testing.T) {
	const head = `
pipeline:
  batch: {size: 64, timeout: 10ms}
  sources:
    - name: in
      source.test_stream: {}
  exporters:
    - name: out
      export.test_sink: {name: queue-sink}
`
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	p, err := pipeline.New(ctx, parse(t, head), pipeline.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	if got := queueCapacities(t, reg)["out"]; got != 64 {
		t.Errorf("one exporter (blocks): capacity %v, want 64", got)
	}
	res, err := p.Reload(ctx, parse(t, head+"    - name: second\n      export.test_sink: {name: queue-sink-2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if caps := queueCapacities(t, reg); caps["out"] != 1024 || caps["second"] != 1024 {
		t.Errorf("two exporters (drop): capacities %v, want 1024 each", caps)
	}
	if got := fmt.Sprint(res.Replaced); got != "[out (export.test_sink)]" {
		t.Errorf("replaced %s, want the kept exporter rebuilt with its new queue", got)
	}
}
