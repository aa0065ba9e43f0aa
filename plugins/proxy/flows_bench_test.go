package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

// BenchmarkLiveFlows shows proxy keeps no per-flow state: its heap does
// not grow with the number of distinct flows it forwards (compare the
// aggregate processor's bytes per live flow).
func BenchmarkLiveFlows(b *testing.B) {
	for _, flows := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", flows), func(b *testing.B) {
			p := newProxy(b, DefaultConfig())
			batch := flow.NewBatch(256)
			for range 256 {
				batch.Append().Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
			}
			ctx := context.Background()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for i, r := range batch.Records {
					k := uint32((n*256 + i) % flows)
					r.SourceAddress = netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)})
					r.SourceTransportPort = uint16(k)
				}
				_ = p.Process(ctx, batch)
				n++
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(flows), "heap-growth-B/flow")
		})
	}
}
