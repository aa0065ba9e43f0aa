package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

// Test plugins, registered under IDs no built-in uses.

type genConfig struct {
	Records int `koanf:"records"`
}

func (c *genConfig) Validate() error {
	if c.Records < 0 {
		return fmt.Errorf("records: %d must not be negative", c.Records)
	}
	return nil
}

// gen emits Records records, ports 0..n-1, in batches of the pipeline size
// minus one (to exercise partial batches), then closes Done.
type gen struct {
	n    int
	done chan struct{}
	wg   sync.WaitGroup
}

func (g *gen) Start(ctx context.Context, out plugin.Emitter) error {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(g.done)
		b := out.NewBatch()
		for i := range g.n {
			plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, uint16(i), 80, 1, 100)
			if b.Len() == out.BatchSize()-1 {
				if err := out.Emit(ctx, b); err != nil {
					return
				}
				b = out.NewBatch()
			}
		}
		_ = out.Emit(ctx, b)
	}()
	return nil
}
func (g *gen) Shutdown(context.Context) error { g.wg.Wait(); return nil }
func (g *gen) Done() <-chan struct{}          { return g.done }

type emptyConfig struct{}

func (emptyConfig) Validate() error { return nil }

// evenPorts keeps records with an even source port; it fails on batches
// holding port 13 when failOn13 is set.
type evenPorts struct{ fail bool }

func (e *evenPorts) Start(context.Context) error    { return nil }
func (e *evenPorts) Shutdown(context.Context) error { return nil }
func (e *evenPorts) Process(_ context.Context, b *flow.Batch) error {
	if e.fail {
		return errors.New("boom")
	}
	b.Retain(func(r *flow.Record) bool { return r.SourceTransportPort%2 == 0 })
	return nil
}

type barrierConfig struct {
	InFlight int `koanf:"in_flight"`
}

func (barrierConfig) Validate() error { return nil }

// barrier is a plugin.Concurrent processor whose Process calls wait until
// InFlight of them are inside at once; from then on every call passes. A
// call still waiting when the timeout, counted from Start, ends fails, so
// too few workers fail the test instead of hanging it.
type barrier struct {
	n       int
	mu      sync.Mutex
	inside  int
	tripped chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
}

func (b *barrier) InFlight() int { return b.n }

func (b *barrier) Start(context.Context) error {
	b.ctx, b.cancel = context.WithTimeout(context.Background(), 5*time.Second)
	return nil
}

func (b *barrier) Shutdown(context.Context) error {
	if b.cancel != nil {
		b.cancel()
	}
	return nil
}

func (b *barrier) Process(context.Context, *flow.Batch) error {
	b.mu.Lock()
	b.inside++
	if b.inside == b.n {
		select {
		case <-b.tripped:
		default:
			close(b.tripped)
		}
	}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inside--
		b.mu.Unlock()
	}()
	select {
	case <-b.tripped:
		return nil
	case <-b.ctx.Done():
		return fmt.Errorf("fewer than %d calls at once: %w", b.n, b.ctx.Err())
	}
}

var (
	sinksMu sync.Mutex
	sinks   = map[string]*plugintest.Sink{}
	gates   = map[string]chan struct{}{}
)

type sinkConfig struct {
	Name string `koanf:"name"`
}

func (sinkConfig) Validate() error { return nil }

// gatedSink blocks every Export until its gate is closed.
type gatedSink struct {
	*plugintest.Sink
	gate chan struct{}
}

func (g *gatedSink) Export(ctx context.Context, b *flow.Batch) error {
	<-g.gate
	return g.Sink.Export(ctx, b)
}

func init() {
	plugin.Register(plugin.Info{ID: "source.test_gen", NewConfig: func() plugin.Config { return &genConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			return &gen{n: c.(*genConfig).Records, done: make(chan struct{})}, nil
		}})
	plugin.Register(plugin.Info{ID: "filter.test_even", NewConfig: func() plugin.Config { return &emptyConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) { return &evenPorts{}, nil }})
	plugin.Register(plugin.Info{ID: "filter.test_fail", NewConfig: func() plugin.Config { return &emptyConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) { return &evenPorts{fail: true}, nil }})
	plugin.Register(plugin.Info{ID: "filter.test_barrier", NewConfig: func() plugin.Config { return &barrierConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			return &barrier{n: c.(*barrierConfig).InFlight, tripped: make(chan struct{})}, nil
		}})
	plugin.Register(plugin.Info{ID: "export.test_sink", NewConfig: func() plugin.Config { return &sinkConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			s := plugintest.NewSink()
			sinksMu.Lock()
			sinks[c.(*sinkConfig).Name] = s
			sinksMu.Unlock()
			return s, nil
		}})
	plugin.Register(plugin.Info{ID: "export.test_gated", NewConfig: func() plugin.Config { return &sinkConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			s := &gatedSink{Sink: plugintest.NewSink(), gate: make(chan struct{})}
			sinksMu.Lock()
			sinks[c.(*sinkConfig).Name] = s.Sink
			gates[c.(*sinkConfig).Name] = s.gate
			sinksMu.Unlock()
			return s, nil
		}})
}

func sink(name string) *plugintest.Sink {
	sinksMu.Lock()
	defer sinksMu.Unlock()
	return sinks[name]
}

// start parses yaml and starts the pipeline it describes.
func start(t *testing.T, yaml string) *pipeline.Pipeline {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(context.Background(), cfg, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitDone waits for the finite sources to finish; why names the failure.
func waitDone(t *testing.T, p *pipeline.Pipeline, why string) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal(why)
	}
}

// runToDone starts yaml's pipeline, waits for its sources and shuts it down.
func runToDone(t *testing.T, yaml string) *pipeline.Pipeline {
	t.Helper()
	p := start(t, yaml)
	waitDone(t, p, "finite source never finished")
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

func stat(t *testing.T, p *pipeline.Pipeline, stage string) pipeline.Snapshot {
	t.Helper()
	for _, s := range p.Stats() {
		if s.Stage == stage {
			return s
		}
	}
	t.Fatalf("no stage %s", stage)
	return pipeline.Snapshot{}
}

func TestFilterAndFanOut(t *testing.T) {
	p := runToDone(t, `
pipeline:
  batch: {size: 64, timeout: 50ms}
  workers: 2
  sources:
    - source.test_gen: {records: 1000}
  processors:
    - filter.test_even: {}
  exporters:
    - export.test_sink: {name: fan-a}
    - export.test_sink: {name: fan-b}
`)
	for _, name := range []string{"fan-a", "fan-b"} {
		if got := sink(name).Len(); got != 500 {
			t.Errorf("%s got %d records, want 500", name, got)
		}
	}
	src, proc := stat(t, p, "sources[0]"), stat(t, p, "processors[0]")
	if src.Out != 1000 || proc.In != 1000 || proc.Out != 500 || proc.Filtered != 500 {
		t.Errorf("counters do not add up: source out %d, processor in %d out %d filtered %d", src.Out, proc.In, proc.Out, proc.Filtered)
	}
	for _, e := range []string{"exporters[0]", "exporters[1]"} {
		if s := stat(t, p, e); s.In != 500 || s.Out != 500 || s.Overflow != 0 {
			t.Errorf("%s: in %d out %d overflow %d, want 500/500/0", e, s.In, s.Out, s.Overflow)
		}
	}
}

func TestProcessorErrorPassesBatchOn(t *testing.T) {
	p := runToDone(t, `
pipeline:
  sources:
    - source.test_gen: {records: 300}
  processors:
    - filter.test_fail: {}
  exporters:
    - export.test_sink: {name: err-sink}
`)
	if got := sink("err-sink").Len(); got != 300 {
		t.Errorf("sink got %d records, want all 300 (fail open)", got)
	}
	if s := stat(t, p, "processors[0]"); s.Errored != 300 || s.Out != 300 {
		t.Errorf("processor errored %d out %d, want 300/300", s.Errored, s.Out)
	}
}

// TestOnError checks the engine's failure policy for a processor whose
// Process fails: fail-open passes the batch on and counts it errored by
// reason, fail-closed drops it and counts it dropped{reason="error"}.
func TestOnError(t *testing.T) {
	for _, tc := range []struct {
		name, onError           string
		delivered, err, dropped uint64
	}{
		{"default", "", 300, 300, 0},
		{"fail-open", "on_error: fail-open", 300, 300, 0},
		{"fail-closed", "on_error: fail-closed", 0, 0, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "onerror-" + tc.name
			p := runToDone(t, fmt.Sprintf(`
pipeline:
  sources:
    - source.test_gen: {records: 300}
  processors:
    - filter.test_fail: {%s}
  exporters:
    - export.test_sink: {name: %s}
`, tc.onError, name))
			if got := uint64(sink(name).Len()); got != tc.delivered {
				t.Errorf("sink got %d records, want %d", got, tc.delivered)
			}
			s := stat(t, p, "processors[0]")
			if s.Errored != tc.err || s.ErroredBy[plugin.ReasonPluginError] != tc.err || s.ErrorDropped != tc.dropped || s.Filtered != 0 {
				t.Errorf("errored %d (%v), error-dropped %d, filtered %d; want %d, %d, 0", s.Errored, s.ErroredBy, s.ErrorDropped, s.Filtered, tc.err, tc.dropped)
			}
		})
	}
}

// A stuck exporter costs only its own queue: the other exporter gets every
// record, and the stuck one's overflow is counted, never silently lost.
func TestSlowExporterDoesNotStallOthers(t *testing.T) {
	p := start(t, `
pipeline:
  batch: {size: 10, timeout: 50ms}
  queue: {size: 4, exporter_size: 256}
  sources:
    - source.test_gen: {records: 5000}
  exporters:
    - export.test_gated: {name: stuck}
    - export.test_sink: {name: healthy}
`)
	ctx := context.Background()
	waitDone(t, p, "source stalled behind the stuck exporter")
	sinksMu.Lock()
	close(gates["stuck"])
	sinksMu.Unlock()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Every record is accounted for at each exporter: exported or counted
	// as overflow, never silently lost.
	for i, name := range []string{"stuck", "healthy"} {
		s := stat(t, p, fmt.Sprintf("exporters[%d]", i))
		if s.In+s.Overflow != 5000 || uint64(sink(name).Len()) != s.In {
			t.Errorf("%s: in %d + overflow %d != 5000 (sink has %d)", name, s.In, s.Overflow, sink(name).Len())
		}
	}
	if s := stat(t, p, "exporters[0]"); s.Overflow == 0 {
		t.Errorf("stuck exporter overflow not counted")
	}
}

// With when_full: block, or auto (the default) and a single exporter, a
// slow exporter backpressures the source and nothing is dropped anywhere.
func TestBlockingQueueLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name, queue string
		sinks       []string // the first is gated
	}{
		{"block", "queue: {size: 2, exporter_size: 2, when_full: block}", []string{"slow-block", "fast-block"}},
		{"auto, one exporter", "queue: {size: 2, exporter_size: 2}", []string{"slow-auto"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exporters := "    - export.test_gated: {name: " + tc.sinks[0] + "}\n"
			for _, name := range tc.sinks[1:] {
				exporters += "    - export.test_sink: {name: " + name + "}\n"
			}
			p := start(t, `
pipeline:
  batch: {size: 10, timeout: 50ms}
  `+tc.queue+`
  sources:
    - source.test_gen: {records: 3000}
  exporters:
`+exporters)
			ctx := context.Background()
			time.Sleep(50 * time.Millisecond)
			select {
			case <-p.Done():
				t.Fatal("source finished although the slow exporter never took a batch")
			default:
			}
			sinksMu.Lock()
			close(gates[tc.sinks[0]])
			sinksMu.Unlock()
			<-p.Done()
			if err := p.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			for _, name := range tc.sinks {
				if got := sink(name).Len(); got != 3000 {
					t.Errorf("%s got %d records, want 3000", name, got)
				}
			}
			if s := stat(t, p, "exporters[0]"); s.Overflow != 0 {
				t.Errorf("%d records overflowed, want 0", s.Overflow)
			}
		})
	}
}

// With default workers, a plugin.Concurrent processor gets InFlight batches
// at once, even beyond GOMAXPROCS: the barrier only opens when they are all
// inside, and a call that times out waiting counts as errored.
func TestDefaultWorkersReachInFlight(t *testing.T) {
	inFlight := max(5, runtime.GOMAXPROCS(0)+1)
	p := runToDone(t, fmt.Sprintf(`
pipeline:
  batch: {size: 10, timeout: 50ms}
  sources:
    - source.test_gen: {records: 300}
  processors:
    - filter.test_barrier: {in_flight: %d}
  exporters:
    - export.test_sink: {name: barrier-sink}
`, inFlight))
	if s := stat(t, p, "processors[0]"); s.Errored != 0 {
		t.Errorf("%d records errored: the processor never had %d batches at once", s.Errored, inFlight)
	}
	if got := sink("barrier-sink").Len(); got != 300 {
		t.Errorf("sink got %d records, want 300", got)
	}
}

func TestShutdownIdempotent(t *testing.T) {
	p := runToDone(t, `
pipeline:
  sources:
    - source.test_gen: {records: 5}
  exporters:
    - export.test_sink: {name: twice}
`)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if got := sink("twice").Len(); got != 5 {
		t.Errorf("got %d records, want 5", got)
	}
}
