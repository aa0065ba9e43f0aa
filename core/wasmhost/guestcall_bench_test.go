package wasmhost

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/cputime"
)

// BenchmarkGuestCall calls weir_process on a batch already in guest
// memory: the guest's share of the cost.
func BenchmarkGuestCall(b *testing.B) {
	for _, n := range []int{1, 256, 1024} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			p := newProcessor(b, "protocolfilter", map[string]any{"protocols": []any{"tcp", "udp"}}, func(c *Config) { c.Instances = 1; c.Timeout = timeoutFromEnv() })
			in, err := p.acquire(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer func() { p.release(in); p.inflight.Done() }()
			buf := abi.AppendBatchMask(nil, plugintest.MixedBatch(n), p.manifest.Reads)
			if err := in.grow(context.Background(), len(buf)); err != nil {
				b.Fatal(err)
			}
			in.mem.Write(in.inPtr, buf)
			ctx := context.Background()
			cpu := cputime.Start()
			for b.Loop() {
				in.stack[0], in.stack[1] = uint64(in.inPtr), uint64(len(buf))
				if err := in.process.CallWithStack(ctx, in.stack[:]); err != nil {
					b.Fatal(err)
				}
			}
			cpu.ReportPer(b, b.N*n, "record")
		})
	}
}

// timeoutFromEnv lets a run compare interruptible and plain code:
// WEIR_BENCH_TIMEOUT=0 benchmarks without a deadline.
func timeoutFromEnv() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("WEIR_BENCH_TIMEOUT")); err == nil {
		return d
	}
	return time.Second
}
