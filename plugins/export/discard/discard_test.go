package discard_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/export/discard"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, discard.ExampleYAML) }

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		e, err := discard.New(discard.DefaultConfig(), plugin.NopSettings(discard.ID))
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}

func TestCounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		batches []int
		want    uint64
	}{
		{"none", nil, 0},
		{"one batch", []int{7}, 7},
		{"several, one empty", []int{256, 0, 3}, 259},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := plugin.NopSettings(discard.ID)
			reg := set.Metrics.(*prometheus.Registry)
			e, err := discard.New(discard.DefaultConfig(), set)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.batches {
				if err := e.Export(ctx, plugintest.MixedBatch(n)); err != nil {
					t.Fatal(err)
				}
			}
			if got := e.Records(); got != tc.want {
				t.Errorf("Records() = %d, want %d", got, tc.want)
			}
			mfs, err := reg.Gather()
			if err != nil || len(mfs) != 2 {
				t.Fatalf("gather: %d metric families, %v", len(mfs), err)
			}
			for _, mf := range mfs {
				switch mf.GetName() {
				case "weir_export_discard_records_total":
					if got := mf.GetMetric()[0].GetCounter().GetValue(); got != float64(tc.want) {
						t.Errorf("records metric = %v, want %d", got, tc.want)
					}
				case "weir_export_discard_batches_total":
					if got := mf.GetMetric()[0].GetCounter().GetValue(); got != float64(len(tc.batches)) {
						t.Errorf("batches metric = %v, want %d", got, len(tc.batches))
					}
				}
			}
			if err := e.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
