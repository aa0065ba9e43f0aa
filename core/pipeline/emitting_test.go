package pipeline_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// holder is a plugin.Emitting processor: it takes every record out of its
// batch and emits them later, half from its own goroutine while running and
// the rest from Shutdown, the way an aggregator flushes its table.
type holder struct {
	out  plugin.Emitter
	mu   sync.Mutex
	held *flow.Batch
	tick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

func (h *holder) SetEmitter(out plugin.Emitter) { h.out = out }

func (h *holder) Start(context.Context) error {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			select {
			case <-h.stop:
				return
			case <-h.tick:
				h.flush(context.Background(), 100)
			}
		}
	}()
	return nil
}

// flush emits up to n held records.
func (h *holder) flush(ctx context.Context, n int) {
	h.mu.Lock()
	b := h.out.NewBatch()
	moved := 0
	for _, r := range h.held.Records {
		if moved == n {
			break
		}
		b.Append().CopyFrom(r, b)
		moved++
	}
	h.held.Records = h.held.Records[moved:]
	h.mu.Unlock()
	_ = h.out.Emit(ctx, b)
}

func (h *holder) Process(_ context.Context, b *flow.Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range b.Records {
		h.held.Append().CopyFrom(r, h.held)
	}
	b.Records = b.Records[:0]
	return nil
}

func (h *holder) Shutdown(ctx context.Context) error {
	select {
	case <-h.stop:
		return nil
	default:
		close(h.stop)
	}
	h.wg.Wait()
	h.flush(ctx, 1<<30)
	return nil
}

var (
	holdersMu sync.Mutex
	holders   = map[string]*holder{}
)

func init() {
	plugin.Register(plugin.Info{ID: "test_holder", NewConfig: func() plugin.Config { return &sinkConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			h := &holder{held: flow.NewBatch(0), tick: make(chan struct{}), stop: make(chan struct{})}
			holdersMu.Lock()
			holders[c.(*sinkConfig).Name] = h
			holdersMu.Unlock()
			return h, nil
		}})
	plugin.Register(plugin.Info{ID: "test_exclusive", NewConfig: func() plugin.Config { return &emptyConfig{} },
		New:      func(plugin.Config, plugin.Settings) (plugin.Component, error) { return &evenPorts{}, nil },
		Excludes: []string{"filter.test_even"}})
}

// TestEmittingProcessor: records a processor emits later, from its own
// goroutine and from Shutdown, go through the processors after it and reach
// live exporters; the engine counts them as held, then as output.
func TestEmittingProcessor(t *testing.T) {
	p := start(t, `
pipeline:
  batch: {size: 64, timeout: 50ms}
  sources:
    - source.test_gen: {records: 1000}
  processors:
    - test_holder: {name: h1}
    - filter.test_even: {}
  exporters:
    - export.test_sink: {name: held-sink}
`)
	waitDone(t, p, "finite source never finished")
	holdersMu.Lock()
	h := holders["h1"]
	holdersMu.Unlock()
	// Let the source queue drain into the holder, then emit 100 records
	// while running.
	deadline := time.Now().Add(10 * time.Second)
	for stat(t, p, "processors[0]").Held < 1000 {
		if time.Now().After(deadline) {
			t.Fatal("holder never got the 1000 records")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.tick <- struct{}{}
	deadline = time.Now().Add(10 * time.Second)
	for sink("held-sink").Len() < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("records emitted while running never reached the exporter: %d", sink("held-sink").Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sink("held-sink").Len(); got != 500 {
		t.Errorf("sink got %d records, want the 500 even ones, half of them flushed on Shutdown", got)
	}
	hold, even := stat(t, p, "processors[0]"), stat(t, p, "processors[1]")
	if hold.In != 1000 || hold.Held != 1000 || hold.Out != 1000 || hold.Filtered != 0 {
		t.Errorf("holder in %d held %d out %d filtered %d, want 1000/1000/1000/0", hold.In, hold.Held, hold.Out, hold.Filtered)
	}
	if even.In != 1000 || even.Out != 500 {
		t.Errorf("filter after the holder: in %d out %d, want 1000/500", even.In, even.Out)
	}
	b := h.out.NewBatch()
	b.Append()
	if err := h.out.Emit(context.Background(), b); err == nil {
		t.Error("Emit after Shutdown succeeded, want an error")
	}
}

func TestExcludes(t *testing.T) {
	_, err := config.Parse([]byte(`
pipeline:
  sources:
    - source.test_gen: {}
  processors:
    - filter.test_even: {}
    - test_exclusive: {}
`), nil)
	want := "pipeline.processors[1].test_exclusive: cannot be in the same pipeline as pipeline.processors[0].filter.test_even (choose one)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}
