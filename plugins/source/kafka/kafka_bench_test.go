package kafka_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	exportkafka "github.com/weir-flow/weir/plugins/export/kafka"
	"github.com/weir-flow/weir/plugins/source/kafka"
)

// countingEmitter counts records and acknowledges at once, as a pipeline
// with a fast exporter would.
type countingEmitter struct{ n atomic.Int64 }

func (e *countingEmitter) NewBatch() *flow.Batch       { return flow.NewBatch(256) }
func (e *countingEmitter) BatchSize() int              { return 256 }
func (e *countingEmitter) BatchTimeout() time.Duration { return 50 * time.Millisecond }
func (e *countingEmitter) Emit(_ context.Context, b *flow.Batch) error {
	e.n.Add(int64(b.Len()))
	return nil
}
func (e *countingEmitter) EmitAcked(_ context.Context, b *flow.Batch, done func()) error {
	e.n.Add(int64(b.Len()))
	done()
	return nil
}

// BenchmarkInletToOutlet measures records/s from raw IPFIX messages
// through export.kafka (payload raw, key random, lz4) into an in-process
// Kafka (kfake, 4 partitions) and out of 1, 2 and 4 source.kafka consumers
// in one group that decode them. Each iteration produces the messages of
// 1000 exporters replaying the project's softflowd capture and times until
// every record is decoded.
func BenchmarkInletToOutlet(b *testing.B) {
	msgs := captureMessages(b)
	perExporter := decodeDirect(msgs).Len()
	const exporters = 1000
	for _, consumers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("consumers=%d", consumers), func(b *testing.B) {
			var total time.Duration
			records := 0
			for i := 0; i < b.N; i++ {
				brokers := newCluster(b, "bench", 4)
				cfg := exportkafka.DefaultConfig()
				cfg.Brokers, cfg.Topic, cfg.Payload, cfg.Key, cfg.Compression = brokers, "bench", "raw", "random", "lz4"
				e := newExporter(b, cfg)
				var ems []*countingEmitter
				var srcs []*kafka.Source
				for c := 0; c < consumers; c++ {
					sc := kafka.DefaultConfig()
					sc.Brokers, sc.Topic, sc.Group = brokers, "bench", fmt.Sprintf("g%d", i)
					s, err := kafka.New(sc, plugin.NopSettings(kafka.ID))
					if err != nil {
						b.Fatal(err)
					}
					em := &countingEmitter{}
					if err := s.Start(context.Background(), em); err != nil {
						b.Fatal(err)
					}
					ems, srcs = append(ems, em), append(srcs, s)
				}
				// Time the stream, not the group's formation: every member
				// owns partitions before the inlet sends.
				deadline := time.Now().Add(time.Minute)
				for owned := false; !owned; {
					owned = true
					for _, s := range srcs {
						owned = owned && s.Partitions() > 0
					}
					if time.Now().After(deadline) {
						b.Fatal("the group did not give every member a partition")
					}
					time.Sleep(time.Millisecond)
				}
				start := time.Now()
				batch := flow.NewBatch(len(msgs) * exporters)
				for x := 0; x < exporters; x++ {
					from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(x >> 8), byte(x)}), 4739)
					for _, m := range msgs {
						ipfix.AppendRaw(batch, m.msg, from, start)
					}
				}
				if err := e.Export(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				want := int64(perExporter * exporters)
				deadline = time.Now().Add(2 * time.Minute)
				for {
					var n int64
					for _, em := range ems {
						n += em.n.Load()
					}
					if n >= want {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("consumed %d records of %d", n, want)
					}
					time.Sleep(time.Millisecond)
				}
				total += time.Since(start)
				records += int(want)
				for _, s := range srcs {
					_ = s.Shutdown(context.Background())
				}
				_ = e.Shutdown(context.Background())
			}
			b.ReportMetric(float64(records)/total.Seconds(), "records/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
