package kafka_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	exportkafka "github.com/weir-flow/weir/plugins/export/kafka"
	"github.com/weir-flow/weir/plugins/source/kafka"
)

// countingEmitter counts records and acknowledges at once, as a pipeline
// with a fast exporter would, and recycles batches as the engine does
// (so the benchmark does not measure allocating them). With a gate, a
// non-empty batch waits until the gate is closed (the benchmark's start
// signal).
type countingEmitter struct {
	n    atomic.Int64
	gate chan struct{}
	pool sync.Pool
}

func (e *countingEmitter) NewBatch() *flow.Batch {
	if b, ok := e.pool.Get().(*flow.Batch); ok {
		return b
	}
	return flow.NewBatch(256)
}
func (e *countingEmitter) BatchSize() int              { return 256 }
func (e *countingEmitter) BatchTimeout() time.Duration { return 50 * time.Millisecond }
func (e *countingEmitter) Emit(_ context.Context, b *flow.Batch) error {
	e.count(b)
	return nil
}
func (e *countingEmitter) EmitAcked(_ context.Context, b *flow.Batch, done func()) error {
	e.count(b)
	done()
	return nil
}
func (e *countingEmitter) count(b *flow.Batch) {
	if e.gate != nil && b.Len() > 0 {
		<-e.gate
	}
	e.n.Add(int64(b.Len()))
	b.Reset()
	e.pool.Put(b)
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
				waitOwned(b, srcs)
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
				deadline := time.Now().Add(2 * time.Minute)
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

// cpuTime returns the CPU time (user + system) the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// preload writes the softflowd capture's records, replayed by exporters
// exporters, into the topic through export.kafka (key exporter, as the
// shipped inlet: an exporter's messages and templates stay on one
// partition; lz4), 100 exporters per Export, and returns the records
// written once every message is acknowledged.
func preload(b *testing.B, brokers []string, payload string, msgs []message, exporters int) int64 {
	cfg := exportkafka.DefaultConfig()
	cfg.Brokers, cfg.Topic, cfg.Payload, cfg.Key, cfg.Compression = brokers, "bench", payload, "exporter", "lz4"
	e := newExporter(b, cfg)
	perExporter := decodeDirect(msgs)
	now := time.Now()
	const chunk = 100
	batch := flow.NewBatch(max(len(msgs), perExporter.Len()) * chunk)
	for x := 0; x < exporters; x++ {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(x >> 16), byte(x >> 8), byte(x)}), 4739)
		if payload == "raw" {
			for _, m := range msgs {
				ipfix.AppendRaw(batch, m.msg, from, now)
			}
		} else {
			for _, r := range perExporter.Records {
				c := batch.Append()
				*c = *r
				c.Exporter = from
			}
		}
		if (x+1)%chunk == 0 || x == exporters-1 {
			if err := e.Export(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	if err := e.Shutdown(context.Background()); err != nil { // flushes: every message is acknowledged
		b.Fatal(err)
	}
	return int64(perExporter.Len() * exporters)
}

// BenchmarkOutletScaling measures how an outlet scales out: a topic of 4
// partitions (kfake, in this process) is preloaded with the softflowd
// capture's records replayed by 20,000 exporters (2,180,000 records) and
// drained by 1, 2 or 4 source.kafka members of one group that decode every
// record (into a counting emitter: the pipeline's own cost is not
// measured). The group forms on the empty topic; the topic is then filled
// while the members' first batches wait at a gate, and timing and CPU
// start when the gate opens (each member may have fetched, not decoded,
// one fetch response before). It reports records/s and CPU per record
// (user + system time of the whole process, including kfake's serving of
// the fetches): on a machine with C cores, records/s can grow with members
// only up to C, and a flat CPU per record is what shows the members add no
// cost of their own.
func BenchmarkOutletScaling(b *testing.B) {
	msgs := captureMessages(b)
	const exporters = 20000
	for _, payload := range []string{"records", "raw"} {
		for _, consumers := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("payload=%s/consumers=%d", payload, consumers), func(b *testing.B) {
				var wall, cpu time.Duration
				var records int64
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"))
					if err != nil {
						b.Fatal(err)
					}
					brokers := cluster.ListenAddrs()
					gate := make(chan struct{})
					var ems []*countingEmitter
					var srcs []*kafka.Source
					for c := 0; c < consumers; c++ {
						sc := kafka.DefaultConfig()
						sc.Brokers, sc.Topic, sc.Group = brokers, "bench", "outlets"
						s, err := kafka.New(sc, plugin.NopSettings(kafka.ID))
						if err != nil {
							b.Fatal(err)
						}
						em := &countingEmitter{gate: gate}
						if err := s.Start(context.Background(), em); err != nil {
							b.Fatal(err)
						}
						ems, srcs = append(ems, em), append(srcs, s)
					}
					consumed := func() int64 {
						var n int64
						for _, em := range ems {
							n += em.n.Load()
						}
						return n
					}
					waitOwned(b, srcs)
					want := preload(b, brokers, payload, msgs, exporters)
					runtime.GC()
					b.StartTimer()
					n0, t0, c0 := consumed(), time.Now(), cpuTime(b)
					close(gate)
					for deadline := t0.Add(2 * time.Minute); consumed() < want; time.Sleep(time.Millisecond) {
						if time.Now().After(deadline) {
							b.Fatalf("consumed %d records of %d", consumed(), want)
						}
					}
					wall += time.Since(t0)
					cpu += cpuTime(b) - c0
					records += want - n0
					b.StopTimer()
					if n := consumed(); n != want {
						b.Fatalf("consumed %d records, want %d", n, want)
					}
					for _, s := range srcs {
						_ = s.Shutdown(context.Background())
					}
					cluster.Close() // its records are garbage before the next iteration's GC
				}
				b.ReportMetric(float64(records)/wall.Seconds(), "records/s")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(records), "cpu-ns/record")
				b.ReportMetric(float64(records)/cpu.Seconds(), "records/cpu-s")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// waitOwned waits until the group has given every member a partition, so
// that a benchmark times the stream, not the group's formation.
func waitOwned(b *testing.B, srcs []*kafka.Source) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		owned := true
		for _, s := range srcs {
			owned = owned && s.Partitions() > 0
		}
		if owned {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("the group did not give every member a partition")
		}
		time.Sleep(time.Millisecond)
	}
}
