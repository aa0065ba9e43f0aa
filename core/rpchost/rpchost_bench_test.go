package rpchost

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/core/rpcwire"
	"github.com/weir-flow/weir/internal/cputime"
)

func benchProcessor(b *testing.B, inFlight int) *Processor {
	b.Helper()
	return startBench(b, exampleConfig(), inFlight)
}

func startBench(b *testing.B, cfg *Config, inFlight int) *Processor {
	b.Helper()
	cfg.InFlight = inFlight
	p, err := New(cfg, plugin.NopSettings(ID))
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Shutdown(context.Background()) })
	return p
}

// BenchmarkEnrich sends batches through the subnetlabels example: every
// record gets labels for both addresses. inflight callers send batches
// concurrently, each with its own batch.
func BenchmarkEnrich(b *testing.B) {
	for _, inFlight := range []int{1, 4, 8} {
		p := benchProcessor(b, inFlight)
		for _, size := range []int{1, 64, 256, 1024} {
			b.Run(fmt.Sprintf("batch=%d/inflight=%d", size, inFlight), func(b *testing.B) {
				if out := benchBatches(b, p, size, inFlight); out.Records[0].SourcePodLabels == "" {
					b.Fatal("not enriched")
				}
			})
		}
	}
}

// BenchmarkPluginProcs is BenchmarkEnrich at 256 records with the
// plugin's GOMAXPROCS set through env:, to compare one P with two (the
// SDK's default is half the CPUs).
func BenchmarkPluginProcs(b *testing.B) {
	for _, inFlight := range []int{1, 4} {
		for _, procs := range []string{"1", "2"} {
			cfg := exampleConfig()
			cfg.Env = map[string]string{"GOMAXPROCS": procs}
			p := startBench(b, cfg, inFlight)
			b.Run(fmt.Sprintf("inflight=%d/procs=%s", inFlight, procs), func(b *testing.B) {
				benchBatches(b, p, 256, inFlight)
			})
		}
	}
}

// BenchmarkTransport is BenchmarkEnrich with a plugin that reads the same
// fields and keeps every record unchanged: the transport's own cost
// (encode, gRPC over AutoMTLS both ways, decode, answer, apply).
func BenchmarkTransport(b *testing.B) {
	for _, inFlight := range []int{1, 4} {
		cfg := DefaultConfig()
		cfg.Cmd, cfg.Args = os.Args[0], []string{argPass}
		p := startBench(b, cfg, inFlight)
		for _, size := range []int{256, 1024} {
			b.Run(fmt.Sprintf("batch=%d/inflight=%d", size, inFlight), func(b *testing.B) {
				benchBatches(b, p, size, inFlight)
			})
		}
	}
}

// benchBatches has inFlight goroutines send batches of size records
// through p, b.N batches in all, reports per-record figures and returns
// one of the batches as it came back.
func benchBatches(b *testing.B, p *Processor, size, inFlight int) *flow.Batch {
	batches := make([]*flow.Batch, inFlight)
	for i := range batches {
		batches[i] = plugintest.MixedBatch(size)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Start(p.PID())
	var wg sync.WaitGroup
	for g := 0; g < inFlight; g++ {
		wg.Add(1)
		go func(batch *flow.Batch) {
			defer wg.Done()
			for i := g; i < b.N; i += inFlight {
				for _, r := range batch.Records {
					r.SourcePodLabels, r.DestinationPodLabels = "", ""
				}
				if err := p.Process(context.Background(), batch); err != nil {
					b.Error(err)
					return
				}
			}
		}(batches[g])
	}
	wg.Wait()
	b.StopTimer()
	if batches[0].Len() != size {
		b.Fatalf("%d records came back, want %d", batches[0].Len(), size)
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*size)
	b.ReportMetric(ns, "ns/record")
	b.ReportMetric(1e9/ns, "records/s")
	cpu.Report(b, b.N*size, "record")
	return batches[0]
}

// BenchmarkEmptyCall is the round trip of one call carrying an empty
// batch: the batch stream over the AutoMTLS unix socket, both codecs, no
// records.
func BenchmarkEmptyCall(b *testing.B) {
	p := benchProcessor(b, 1)
	inst := p.current()
	empty := flow.NewBatch(0)
	buf := abi.AppendBatch(make([]byte, rpcwire.FrameHeadroom), empty)
	var sc abi.Scratch
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Start(inst.pid)
	for i := 0; i < b.N; i++ {
		rep, err := inst.stream.Call(context.Background(), buf)
		if err != nil {
			b.Fatal(err)
		}
		_, err = abi.Apply(empty, rep.Data, &sc)
		rep.Release()
		if err != nil {
			b.Fatal(err)
		}
	}
	cpu.Report(b, b.N, "op")
}

// BenchmarkPayload is the round trip of one call carrying size bytes that
// are no batch (the plugin answers a short error): the cost of bytes on
// their way to the plugin, through gRPC, TLS and the socket. The
// difference between sizes, per byte, is what a smaller batch saves.
func BenchmarkPayload(b *testing.B) {
	p := benchProcessor(b, 1)
	inst := p.current()
	for _, size := range []int{0, 16 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) {
			buf := make([]byte, rpcwire.FrameHeadroom+size)
			b.SetBytes(int64(size))
			cpu := cputime.Start(inst.pid)
			for i := 0; i < b.N; i++ {
				rep, err := inst.stream.Call(context.Background(), buf)
				if err != nil {
					b.Fatal(err)
				}
				rep.Release()
			}
			cpu.Report(b, b.N, "op")
		})
	}
}

// BenchmarkStart is plugin start-up: exec, go-plugin handshake with
// AutoMTLS, gRPC dial and Init (the example loads its table), then a
// graceful stop.
func BenchmarkStart(b *testing.B) {
	cfg := exampleConfig()
	l, err := newLauncher(cfg, "", ID, discardLogger())
	if err != nil {
		b.Fatal(err)
	}
	var startNs int64
	for i := 0; i < b.N; i++ {
		begin := time.Now()
		inst, err := l.start(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		startNs += time.Since(begin).Nanoseconds()
		if err := inst.stop(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(startNs)/float64(b.N)/1e6, "ms/start")
}
