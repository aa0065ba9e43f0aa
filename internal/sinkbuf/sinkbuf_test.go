package sinkbuf

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
)

// fakeServer accepts writes while up and remembers every row it got.
type fakeServer struct {
	mu   sync.Mutex
	up   bool
	rows []uint64
	bad  atomic.Bool
}

func (s *fakeServer) write(_ context.Context, rows []flow.Record) error {
	if s.bad.Load() {
		return Permanent(errors.New("type mismatch"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return errors.New("connection refused")
	}
	for i := range rows {
		s.rows = append(s.rows, rows[i].OctetDeltaCount)
	}
	return nil
}

func (s *fakeServer) set(up bool) { s.mu.Lock(); s.up = up; s.mu.Unlock() }
func (s *fakeServer) count() int  { s.mu.Lock(); defer s.mu.Unlock(); return len(s.rows) }

func records(first, n int) []*flow.Record {
	b := flow.NewBatch(n)
	for i := first; i < first+n; i++ {
		r := b.Append()
		r.SetUint(flow.OctetDeltaCount, uint64(i))
		r.Extra = append(r.Extra, flow.Field{Element: 60, Value: []byte{4}})
	}
	return b.Records
}

func newBuffer(t *testing.T, s *fakeServer, max int) *Buffer {
	t.Helper()
	b, err := New(Options{Name: "test", BatchSize: 10, BatchInterval: 5 * time.Millisecond, MaxRecords: max,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Write: s.write}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	return b
}

func wait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBuffer(t *testing.T) {
	t.Run("outage within and beyond the bound", func(t *testing.T) {
		s := &fakeServer{}
		b := newBuffer(t, s, 50)
		ctx := context.Background()
		_ = b.Add(ctx, records(0, 45)) // server down: retried
		_ = b.Add(ctx, records(45, 10))
		if got := b.Dropped(ReasonBufferFull); got != 5 {
			t.Fatalf("buffer_full = %d, want 5", got)
		}
		s.set(true)
		wait(t, func() bool { return s.count() == 50 })
		for i, v := range s.rows {
			if v != uint64(i) {
				t.Fatalf("row %d = %d: order or content changed", i, v)
			}
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if b.Inserted() != 50 {
			t.Errorf("Inserted = %d", b.Inserted())
		}
	})
	t.Run("interval flushes a partial batch", func(t *testing.T) {
		s := &fakeServer{up: true}
		b := newBuffer(t, s, 100)
		_ = b.Add(context.Background(), records(0, 3))
		wait(t, func() bool { return s.count() == 3 })
		_ = b.Close(context.Background())
	})
	t.Run("rejected batch is counted, not retried", func(t *testing.T) {
		s := &fakeServer{up: true}
		s.bad.Store(true)
		b := newBuffer(t, s, 100)
		_ = b.Add(context.Background(), records(0, 10))
		wait(t, func() bool { return b.Dropped(ReasonRejected) == 10 })
		_ = b.Close(context.Background())
	})
	t.Run("shutdown deadline counts the rest", func(t *testing.T) {
		s := &fakeServer{}
		b := newBuffer(t, s, 100)
		_ = b.Add(context.Background(), records(0, 30))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := b.Close(ctx); err == nil {
			t.Error("Close with the server down returned nil")
		}
		if got := b.Dropped(ReasonShutdown); got != 30 {
			t.Errorf("shutdown = %d, want 30", got)
		}
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("block waits for room", func(t *testing.T) {
		s := &fakeServer{}
		b, _ := New(Options{Name: "test", BatchSize: 10, BatchInterval: time.Millisecond, MaxRecords: 10, Block: true,
			MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Write: s.write}, prometheus.NewRegistry())
		b.Start()
		_ = b.Add(context.Background(), records(0, 10))
		done := make(chan error)
		go func() { done <- b.Add(context.Background(), records(10, 5)) }()
		select {
		case <-done:
			t.Fatal("Add returned with the buffer full")
		case <-time.After(20 * time.Millisecond):
		}
		s.set(true)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		wait(t, func() bool { return s.count() == 15 })
		_ = b.Close(context.Background())
	})
}

// TestAddAcked: an ack runs only once its records have left the buffer —
// inserted (in order, after the server came back), or dropped at Close —
// and at once for records dropped because the buffer was full.
func TestAddAcked(t *testing.T) {
	s := &fakeServer{} // down
	b := newBuffer(t, s, 25)
	ctx := context.Background()
	var acked [4]atomic.Bool
	ack := func(i int) func() { return func() { acked[i].Store(true) } }
	_ = b.AddAcked(ctx, records(0, 10), ack(0))
	_ = b.AddAcked(ctx, records(10, 10), ack(1))
	_ = b.AddAcked(ctx, records(20, 10), ack(2)) // 5 kept, 5 dropped: buffer full
	time.Sleep(30 * time.Millisecond)            // several failed inserts
	for i := range 3 {
		if acked[i].Load() {
			t.Fatalf("batch %d acknowledged while the server is down", i)
		}
	}
	s.set(true)
	wait(t, func() bool { return acked[0].Load() && acked[1].Load() && acked[2].Load() })
	if got := s.count(); got != 25 {
		t.Fatalf("server has %d rows, want 25", got)
	}
	s.set(false)
	_ = b.AddAcked(ctx, records(30, 3), ack(3))
	time.Sleep(10 * time.Millisecond)
	if acked[3].Load() {
		t.Fatal("acknowledged before Close while the server is down")
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_ = b.Close(cctx)
	if !acked[3].Load() {
		t.Fatal("Close dropped the records without running their ack")
	}
	if got := b.Dropped(ReasonShutdown); got != 3 {
		t.Errorf("shutdown drops = %d, want 3", got)
	}
	// After Close every ack runs at once.
	var late atomic.Bool
	_ = b.AddAcked(ctx, records(40, 2), func() { late.Store(true) })
	if !late.Load() {
		t.Error("an ack after Close did not run")
	}
}
