package pipeline_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

// ackSource emits two batches through plugin.AckEmitter — one with an
// even source port (kept by filter.test_even), one with odd ports only
// (filtered empty) — and records which were acknowledged.
type ackSource struct {
	mu    sync.Mutex
	acked map[string]bool
}

var acks = &ackSource{acked: map[string]bool{}}

func (s *ackSource) Start(ctx context.Context, out plugin.Emitter) error {
	ae := out.(plugin.AckEmitter)
	for _, tc := range []struct {
		name string
		port uint16
	}{{"kept", 2}, {"filtered", 3}} {
		b := out.NewBatch()
		plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, tc.port, 80, 1, 1)
		name := tc.name
		if err := ae.EmitAcked(ctx, b, func() { s.mu.Lock(); s.acked[name] = true; s.mu.Unlock() }); err != nil {
			return err
		}
	}
	return nil
}

func (s *ackSource) Shutdown(context.Context) error { return nil }

func (s *ackSource) isAcked(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[name]
}

func init() {
	plugin.Register(plugin.Info{ID: "source.test_ack", NewConfig: func() plugin.Config { return &emptyConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) { return acks, nil }})
}

// TestEmitAcked: the engine acknowledges a batch once it is done with it:
// at once when filtered empty, and only after the exporter returned
// otherwise.
func TestEmitAcked(t *testing.T) {
	p := start(t, `
pipeline:
  sources: [{source.test_ack: {}}]
  processors: [{filter.test_even: {}}]
  exporters: [{export.test_gated: {name: ack}}]
`)
	defer p.Shutdown(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for !acks.isAcked("filtered") {
		if time.Now().After(deadline) {
			t.Fatal("a batch filtered empty was never acknowledged")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if acks.isAcked("kept") {
		t.Fatal("a batch was acknowledged before its exporter returned")
	}
	sinksMu.Lock()
	close(gates["ack"])
	sinksMu.Unlock()
	for !acks.isAcked("kept") {
		if time.Now().After(deadline) {
			t.Fatal("an exported batch was never acknowledged")
		}
		time.Sleep(time.Millisecond)
	}
	if sink("ack").Len() != 1 {
		t.Errorf("exporter got %d records, want 1", sink("ack").Len())
	}
}

// ackingExporter is a plugin.AckExporter that stores nothing until
// the test calls its held callbacks.
type ackingExporter struct {
	mu     sync.Mutex
	stored []func()
	plain  int // batches that came through Export (no ack wanted)
}

func (e *ackingExporter) Start(context.Context) error    { return nil }
func (e *ackingExporter) Shutdown(context.Context) error { return nil }

func (e *ackingExporter) Export(context.Context, *flow.Batch) error {
	e.mu.Lock()
	e.plain++
	e.mu.Unlock()
	return nil
}

func (e *ackingExporter) ExportAcked(_ context.Context, _ *flow.Batch, stored func()) error {
	e.mu.Lock()
	e.stored = append(e.stored, stored)
	e.mu.Unlock()
	return nil
}

func (e *ackingExporter) take() []func() {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stored
	e.stored = nil
	return s
}

var (
	ackingAcks = &ackSource{acked: map[string]bool{}}
	acking     = &ackingExporter{}
)

func init() {
	plugin.Register(plugin.Info{ID: "source.test_ack_acking", NewConfig: func() plugin.Config { return &emptyConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) { return ackingAcks, nil }})
	plugin.Register(plugin.Info{ID: "export.test_acking", NewConfig: func() plugin.Config { return &emptyConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) { return acking, nil }})
}

// TestEmitAckedWaitsForStored: with a plugin.AckExporter, a batch is
// acknowledged only once that exporter has stored it, not when Export
// returned; a batch filtered empty never reaches it and is acknowledged
// at once.
func TestEmitAckedWaitsForStored(t *testing.T) {
	p := start(t, `
pipeline:
  sources: [{source.test_ack_acking: {}}]
  processors: [{filter.test_even: {}}]
  exporters: [{export.test_acking: {}}]
`)
	defer p.Shutdown(context.Background())
	var held []func()
	deadline := time.Now().Add(10 * time.Second)
	for len(held) == 0 || !ackingAcks.isAcked("filtered") {
		if time.Now().After(deadline) {
			t.Fatalf("held %d batches, filtered acknowledged %v", len(held), ackingAcks.isAcked("filtered"))
		}
		held = append(held, acking.take()...)
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if ackingAcks.isAcked("kept") {
		t.Fatal("a batch was acknowledged before the exporter stored it")
	}
	if len(held) != 1 {
		t.Fatalf("exporter holds %d batches, want 1", len(held))
	}
	held[0]()
	for !ackingAcks.isAcked("kept") {
		if time.Now().After(deadline) {
			t.Fatal("a stored batch was never acknowledged")
		}
		time.Sleep(time.Millisecond)
	}
	if acking.plain != 0 {
		t.Errorf("%d acknowledged batches went through Export instead of ExportAcked", acking.plain)
	}
}
