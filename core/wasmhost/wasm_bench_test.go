package wasmhost

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/cputime"
	"github.com/weir-flow/weir/plugins/filter/protocol"
)

var benchSizes = []int{1, 64, 256, 1024}

// benchBatch is a mixed batch and a pristine copy to restore it from, so
// that every iteration filters the same records.
func benchBatch(n int) (b, orig *flow.Batch) {
	return plugintest.MixedBatch(n), plugintest.MixedBatch(n)
}

func restore(b, orig *flow.Batch) {
	b.Records = b.Records[:len(orig.Records)]
	copy(b.Records, orig.Records)
}

// BenchmarkProtocolFilter compares the WASM protocolfilter with the
// built-in filter.protocol (config {protocols: [tcp, udp]}: half the
// records kept) per batch size; cpu-ns/record (process CPU time) is the
// figure to compare, ns/record is wall time. The WASM variants are the
// default (timeout 1s), no deadline (timeout 0), and, for reference,
// wazero's own interruption checks and no checks at all, neither of which
// a pipeline can select.
func BenchmarkProtocolFilter(b *testing.B) {
	config := map[string]any{"protocols": []any{"tcp", "udp"}}
	variants := []struct {
		name    string
		guest   string
		timeout time.Duration
		checks  checks
	}{
		{"timeout=1s", "protocolfilter", time.Second, checksInstrumented},
		{"timeout=0", "protocolfilter", 0, checksInstrumented},
		{"wazero-checks", "protocolfilter", time.Second, checksWazero},
		{"no-checks", "protocolfilter", 0, checksNone},
		// The same filter through the per-record API (weir.RegisterFilter).
		{"record-api", "recordfilter", time.Second, checksInstrumented},
		// TCP and UDP kept by a module written directly in WebAssembly:
		// the host and the ABI without a Go runtime in the guest.
		{"handwritten", "handwritten", time.Second, checksInstrumented},
	}
	for _, n := range benchSizes {
		for _, v := range variants {
			b.Run(fmt.Sprintf("wasm/%s/n=%d", v.name, n), func(b *testing.B) {
				p, err := New(testConfig(v.guest, config, func(c *Config) { c.Instances = 1; c.Timeout = v.timeout }), plugin.NopSettings(ID))
				if err != nil {
					b.Fatal(err)
				}
				p.ic.checks = v.checks
				if err := p.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				defer p.Shutdown(context.Background()) //nolint:errcheck
				if p.mod.checks != v.checks {
					b.Fatalf("module compiled with %s checks, want %s", p.mod.checks, v.checks)
				}
				batch, orig := benchBatch(n)
				ctx := context.Background()
				b.ReportAllocs()
				cpu := cputime.Start()
				for b.Loop() {
					restore(batch, orig)
					if err := p.Process(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				if batch.Len() != (n+1)/2 && n > 1 {
					b.Fatalf("kept %d of %d", batch.Len(), n)
				}
				cpu.ReportPer(b, b.N*n, "record")
			})
		}
		b.Run(fmt.Sprintf("builtin/n=%d", n), func(b *testing.B) {
			var cfg protocol.Config
			cfg.Protocols = config["protocols"].([]any)
			f, err := protocol.New(&cfg, plugin.NopSettings(protocol.ID))
			if err != nil {
				b.Fatal(err)
			}
			batch, orig := benchBatch(n)
			ctx := context.Background()
			b.ReportAllocs()
			cpu := cputime.Start()
			for b.Loop() {
				restore(batch, orig)
				if err := f.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			cpu.ReportPer(b, b.N*n, "record")
		})
	}
}

// BenchmarkEnricher measures subnettag, which sends four fields and gets
// two label updates per record back.
func BenchmarkEnricher(b *testing.B) {
	p := newProcessor(b, "subnettag", map[string]any{"subnets": map[string]any{"10.0.0.0/8": "ten", "fd00::/8": "ula"}},
		func(c *Config) { c.Instances = 1 })
	const n = 256
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		batch := plugintest.MixedBatch(n)
		b.StartTimer()
		if err := p.Process(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

// BenchmarkCompile measures compiling protocolfilter.wasm without a cache
// (cold) and from a warm on-disk cache.
func BenchmarkCompile(b *testing.B) {
	path := guests["protocolfilter"]
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			m, err := compileModule(ctx, path, limits{pages: 1024, tables: DefaultTableLimit}, checksInstrumented, "", log)
			if err != nil {
				b.Fatal(err)
			}
			m.close(ctx)
		}
	})
	b.Run("cached", func(b *testing.B) {
		dir := b.TempDir()
		m, err := compileModule(ctx, path, limits{pages: 1024, tables: DefaultTableLimit}, checksInstrumented, dir, log)
		if err != nil {
			b.Fatal(err)
		}
		m.close(ctx)
		b.ResetTimer()
		for b.Loop() {
			m, err := compileModule(ctx, path, limits{pages: 1024, tables: DefaultTableLimit}, checksInstrumented, dir, log)
			if err != nil {
				b.Fatal(err)
			}
			m.close(ctx)
		}
	})
}

// BenchmarkInstantiate measures creating an instance (Go runtime start-up
// included) and passing it its config, and reports the memory each
// instance holds: its linear memory and the host heap it adds.
func BenchmarkInstantiate(b *testing.B) {
	ctx := context.Background()
	cfg := testConfig("protocolfilter", map[string]any{"protocols": []any{"tcp"}})
	ic := instanceConfig{log: slog.New(slog.DiscardHandler), buffer: bufferFor(256)}
	m, err := compileModule(ctx, cfg.Path, cfg.limits(), checksInstrumented, cfg.CacheDir, ic.log)
	if err != nil {
		b.Fatal(err)
	}
	defer m.close(ctx)
	config, _ := cfg.configJSON()
	var linear uint32
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var keep []*instance
	for b.Loop() {
		in, _, err := m.newInstance(ctx, config, ic)
		if err != nil {
			b.Fatal(err)
		}
		linear = in.mem.Size()
		if len(keep) < 16 {
			keep = append(keep, in)
		} else {
			in.close(ctx)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(linear)/(1<<20), "MiB-linear/instance")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(keep))/(1<<20), "MiB-heap/instance")
	for _, in := range keep {
		in.close(ctx)
	}
	_ = os.Stderr
}
