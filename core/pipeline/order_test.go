package pipeline_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// lifecycleLog records Start and Shutdown calls of the order_* plugins.
var lifecycleLog struct {
	sync.Mutex
	events []string
}

func logEvent(e string) {
	lifecycleLog.Lock()
	lifecycleLog.events = append(lifecycleLog.events, e)
	lifecycleLog.Unlock()
}

type orderConfig struct {
	Name string `koanf:"name"`
}

func (orderConfig) Validate() error { return nil }

type orderStage struct{ name string }

func (s *orderStage) Start(context.Context) error { logEvent("start " + s.name); return nil }
func (s *orderStage) Shutdown(context.Context) error {
	logEvent("stop " + s.name)
	return nil
}
func (s *orderStage) Process(context.Context, *flow.Batch) error { return nil }
func (s *orderStage) Export(context.Context, *flow.Batch) error  { return nil }

type orderSource struct{ orderStage }

func (s *orderSource) Start(context.Context, plugin.Emitter) error {
	logEvent("start " + s.name)
	return nil
}

func init() {
	newStage := func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
		return &orderStage{c.(*orderConfig).Name}, nil
	}
	plugin.Register(plugin.Info{ID: "source.test_order", NewConfig: func() plugin.Config { return &orderConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			return &orderSource{orderStage{c.(*orderConfig).Name}}, nil
		}})
	plugin.Register(plugin.Info{ID: "filter.test_order", NewConfig: func() plugin.Config { return &orderConfig{} }, New: newStage})
	plugin.Register(plugin.Info{ID: "export.test_order", NewConfig: func() plugin.Config { return &orderConfig{} }, New: newStage})
}

// TestStartStopOrder checks the engine's lifecycle contract: exporters,
// then processors, then sources start (so every stage emits into a live
// consumer), and stop in the reverse order (so every stage drains into
// one).
func TestStartStopOrder(t *testing.T) {
	p := start(t, `
pipeline:
  sources:
    - source.test_order: {name: source-a}
    - source.test_order: {name: source-b}
  processors:
    - filter.test_order: {name: processor-a}
    - filter.test_order: {name: processor-b}
  exporters:
    - export.test_order: {name: exporter-a}
    - export.test_order: {name: exporter-b}
`)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	lifecycleLog.Lock()
	got := slices.Clone(lifecycleLog.events)
	lifecycleLog.Unlock()
	want := []string{
		"start exporter-a", "start exporter-b", "start processor-a", "start processor-b", "start source-a", "start source-b",
		"stop source-a", "stop source-b", "stop processor-a", "stop processor-b", "stop exporter-a", "stop exporter-b",
	}
	if !slices.Equal(got, want) {
		t.Errorf("lifecycle order\n got %q\nwant %q", got, want)
	}
}
