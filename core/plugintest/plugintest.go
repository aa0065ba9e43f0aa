// Package plugintest is the shared harness for plugin tests: a sink
// exporter that records what it receives, batch builders, and the standard
// lifecycle checks every plugin must pass.
package plugintest

import (
	"context"
	"maps"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// Sink is an exporter that keeps deep copies of every record it receives.
type Sink struct {
	mu      sync.Mutex
	batches int
	keep    *flow.Batch
}

// NewSink returns an empty sink.
func NewSink() *Sink { return &Sink{keep: flow.NewBatch(0)} }

func (s *Sink) Start(context.Context) error    { return nil }
func (s *Sink) Shutdown(context.Context) error { return nil }

// Export copies b's records.
func (s *Sink) Export(_ context.Context, b *flow.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	for _, r := range b.Records {
		s.keep.Append().CopyFrom(r, s.keep)
	}
	return nil
}

// Records returns copies of every record received so far, in order.
func (s *Sink) Records() []*flow.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*flow.Record(nil), s.keep.Records...)
}

// Len returns how many records the sink received.
func (s *Sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keep.Len()
}

// Batches returns how many batches the sink received.
func (s *Sink) Batches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches
}

// Record builds a record for tests: an IPv4/IPv6 5-tuple with counters.
func Record(b *flow.Batch, src, dst string, proto uint8, sport, dport uint16, packets, octets uint64) *flow.Record {
	r := b.Append()
	r.SetAddr(flow.SourceAddress, netip.MustParseAddr(src))
	r.SetAddr(flow.DestinationAddress, netip.MustParseAddr(dst))
	r.SetUint(flow.ProtocolIdentifier, uint64(proto))
	r.SetUint(flow.SourceTransportPort, uint64(sport))
	r.SetUint(flow.DestinationTransportPort, uint64(dport))
	r.SetUint(flow.PacketDeltaCount, packets)
	r.SetUint(flow.OctetDeltaCount, octets)
	return r
}

// MixedBatch returns a batch of n records cycling through TCP, UDP, ICMP
// and ICMPv6, half IPv4 and half IPv6.
func MixedBatch(n int) *flow.Batch {
	b := flow.NewBatch(n)
	protos := []uint8{6, 17, 1, 58}
	for i := 0; i < n; i++ {
		p := protos[i%len(protos)]
		if i%2 == 0 {
			Record(b, "10.0.0.1", "10.0.0.2", p, uint16(1024+i), 80, 1, 100)
		} else {
			Record(b, "fd00::1", "fd00::2", p, uint16(1024+i), 443, 2, 200)
		}
	}
	return b
}

// Emitter is a plugin.Emitter that collects emitted batches in a Sink.
type Emitter struct {
	Sink *Sink
	Size int
}

// NewEmitter returns an emitter with batch size size into a fresh sink.
func NewEmitter(size int) *Emitter { return &Emitter{Sink: NewSink(), Size: size} }

func (e *Emitter) NewBatch() *flow.Batch       { return flow.NewBatch(e.Size) }
func (e *Emitter) BatchSize() int              { return e.Size }
func (e *Emitter) BatchTimeout() time.Duration { return 50 * time.Millisecond }
func (e *Emitter) Emit(ctx context.Context, b *flow.Batch) error {
	return e.Sink.Export(ctx, b)
}

// EmitAcked implements plugin.AckEmitter: done runs once the sink holds b.
func (e *Emitter) EmitAcked(ctx context.Context, b *flow.Batch, done func()) error {
	err := e.Sink.Export(ctx, b)
	if err == nil && done != nil {
		done()
	}
	return err
}

// Lifecycle checks the contract every component honours: Shutdown without
// Start succeeds, and Shutdown twice succeeds.
func Lifecycle(t *testing.T, newComponent func() plugin.Component) {
	t.Helper()
	t.Run("shutdown without start", func(t *testing.T) {
		if err := newComponent().Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown without Start: %v", err)
		}
	})
	t.Run("shutdown twice", func(t *testing.T) {
		c := newComponent()
		ctx := context.Background()
		var err error
		switch c := c.(type) {
		case plugin.Processor:
			err = c.Start(ctx)
		case plugin.Exporter:
			err = c.Start(ctx)
		case plugin.Source:
			err = c.Start(ctx, NewEmitter(flow.DefaultBatchSize))
		}
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Fatalf("first Shutdown: %v", err)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Fatalf("second Shutdown: %v", err)
		}
	})
}

var (
	_ plugin.Exporter = (*Sink)(nil)
	_ plugin.Emitter  = (*Emitter)(nil)
)

// Outcome is a plugin.Outcome that records what a plugin.Deferred exporter
// reports, for tests. The zero value is ready; safe for concurrent use.
type Outcome struct {
	mu        sync.Mutex
	delivered int
	dropped   map[string]int
}

var _ plugin.Outcome = (*Outcome)(nil)

// Delivered implements plugin.Outcome.
func (o *Outcome) Delivered(n int) { o.mu.Lock(); o.delivered += n; o.mu.Unlock() }

// Dropped implements plugin.Outcome.
func (o *Outcome) Dropped(reason string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dropped == nil {
		o.dropped = map[string]int{}
	}
	o.dropped[reason] += n
}

// Counts returns the records reported delivered, and a copy of those
// reported dropped, by reason.
func (o *Outcome) Counts() (delivered int, dropped map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.delivered, maps.Clone(o.dropped)
}
