package pipeline_test

import (
	"context"
	"testing"

	"github.com/weir-flow/weir/core/plugin"
)

// pushdownGen is a gen source that records the processor pushed down to it.
type pushdownGen struct {
	*gen
	got chan plugin.Processor
}

func (g *pushdownGen) PushDown(next plugin.Processor) { g.got <- next }

var pushedDown = make(chan plugin.Processor, 1)

func init() {
	plugin.Register(plugin.Info{ID: "source.test_pushdown", NewConfig: func() plugin.Config { return &genConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			return &pushdownGen{gen: &gen{n: c.(*genConfig).Records, done: make(chan struct{})}, got: pushedDown}, nil
		}})
}

// TestPushDown: a plugin.Pushdown source is handed the first processor
// before it starts, and the processor still runs.
func TestPushDown(t *testing.T) {
	p := runToDone(t, `
pipeline:
  sources:
    - source.test_pushdown: {records: 10}
  processors:
    - filter.test_even: {}
  exporters:
    - export.test_sink: {name: pushdown}
`)
	select {
	case next := <-pushedDown:
		if next == nil {
			t.Fatal("PushDown got a nil processor")
		}
	default:
		t.Fatal("PushDown was not called")
	}
	if got := sink("pushdown").Len(); got != 5 {
		t.Errorf("sink got %d records, want the 5 the filter keeps", got)
	}
	_ = p.Shutdown(context.Background())
}
