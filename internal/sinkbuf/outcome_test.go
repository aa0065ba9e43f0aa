package sinkbuf

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weir-flow/weir/core/plugintest"
)

// TestOutcome checks that every record Add is given is reported to the
// engine once, as delivered or dropped by reason, matching the buffer's
// own counters: buffer_full while the server is down, rejected for a
// permanent error, shutdown for what is left at Close.
func TestOutcome(t *testing.T) {
	s := &fakeServer{}
	b, err := New(Options{Name: "test", BatchSize: 10, BatchInterval: 5 * time.Millisecond, MaxRecords: 50,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Write: s.write}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	o := &plugintest.Outcome{}
	b.SetOutcome(o)
	b.Start()
	ctx := context.Background()
	_ = b.Add(ctx, records(0, 60)) // server down: 50 kept, 10 buffer_full
	s.set(true)
	wait(t, func() bool { return s.count() == 50 })
	s.bad.Store(true)
	_ = b.Add(ctx, records(60, 20)) // rejected
	wait(t, func() bool { return b.Dropped(ReasonRejected) == 20 })
	s.bad.Store(false)
	s.set(false)
	_ = b.Add(ctx, records(80, 7)) // still buffered at Close
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_ = b.Close(cctx)

	delivered, dropped := o.Counts()
	want := map[string]int{ReasonBufferFull: 10, ReasonRejected: 20, ReasonShutdown: 7}
	for r, n := range want {
		if dropped[r] != n || b.Dropped(r) != uint64(n) {
			t.Errorf("%s: outcome %d, metric %d, want %d", r, dropped[r], b.Dropped(r), n)
		}
	}
	if delivered != 50 || b.Inserted() != 50 {
		t.Errorf("delivered: outcome %d, inserted %d, want 50", delivered, b.Inserted())
	}
}

// TestOutcomeBlockGivenUp: with when_full: block, records still waiting
// for room when ctx ends are dropped and reported (buffer_full), not lost
// with an error.
func TestOutcomeBlockGivenUp(t *testing.T) {
	s := &fakeServer{} // down: nothing leaves the buffer
	b, err := New(Options{Name: "test", BatchSize: 10, BatchInterval: 5 * time.Millisecond, MaxRecords: 20, Block: true,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Write: s.write}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	o := &plugintest.Outcome{}
	b.SetOutcome(o)
	b.Start()
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer ccancel()
		_ = b.Close(cctx) // the server stays down: the 20 buffered go as shutdown
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Add(ctx, records(0, 35)); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if _, dropped := o.Counts(); dropped[ReasonBufferFull] != 15 || b.Buffered() != 20 {
		t.Errorf("dropped %v, buffered %d; want buffer_full 15, 20 buffered", dropped, b.Buffered())
	}
}
