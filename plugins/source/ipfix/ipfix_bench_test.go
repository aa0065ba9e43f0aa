package ipfix_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	source "github.com/weir-flow/weir/plugins/source/ipfix"
)

// countingEmitter counts records and recycles batches, like a pipeline
// with a free list.
type countingEmitter struct {
	records atomic.Int64
	free    chan *flow.Batch
}

func (e *countingEmitter) NewBatch() *flow.Batch {
	select {
	case b := <-e.free:
		b.Reset()
		return b
	default:
		return flow.NewBatch(256)
	}
}
func (e *countingEmitter) BatchSize() int              { return 256 }
func (e *countingEmitter) BatchTimeout() time.Duration { return 10 * time.Millisecond }
func (e *countingEmitter) Emit(_ context.Context, b *flow.Batch) error {
	e.records.Add(int64(b.Len()))
	select {
	case e.free <- b:
	default:
	}
	return nil
}

// BenchmarkUDPIngest sends b.N 30-record messages over loopback to one
// reader, keeping at most 256 messages in flight so the socket buffer never
// overflows; ns/op is per message. It measures the receive + decode +
// batch path, not the kernel's limits (test/bench/ingest.sh does that).
func BenchmarkUDPIngest(b *testing.B) {
	cfg := *source.DefaultConfig()
	cfg.UDP, cfg.TCP, cfg.Readers = "127.0.0.1:0", "", 1
	s, err := source.New(&cfg, plugin.NopSettings(source.ID))
	if err != nil {
		b.Fatal(err)
	}
	em := &countingEmitter{free: make(chan *flow.Batch, 16)}
	if err := s.Start(context.Background(), em); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	c, err := net.DialUDP("udp", nil, s.UDPAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	enc := newEncoder(1)
	msgs := encode(b, enc, records(0, 30))     // template + data
	data := encode(b, enc, records(30, 30))[0] // data only
	if _, err := c.Write(msgs[0]); err != nil {
		b.Fatal(err)
	}
	per := int64(30)
	for em.records.Load() < per {
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	base := em.records.Load()
	for i := 0; i < b.N; i++ {
		for int64(i)*per-(em.records.Load()-base) > 256*per {
			time.Sleep(20 * time.Microsecond)
		}
		c.Write(data)
	}
	want := base + int64(b.N)*per
	deadline := time.Now().Add(10 * time.Second)
	for em.records.Load() < want && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	got := em.records.Load() - base
	b.ReportMetric(float64(got)/b.Elapsed().Seconds()/1e6, "Mrecords/s")
	b.ReportMetric(100*(1-float64(got)/float64(int64(b.N)*per)), "%loss")
}
