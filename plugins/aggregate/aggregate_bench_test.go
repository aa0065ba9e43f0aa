package aggregate

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"slices"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/cputime"
)

// BenchmarkProcess measures records/s through aggregate in steady state:
// every record updates one of `flows` live flows (TCP, softflowd-like
// records, a distinct source per flow and one destination), in batches of
// 256. Reports ns/record, records/s, bytes per live flow of the table and
// allocs.
//
// IPv6 sources: "ipv6" spreads them over 64 Nodes' Pod CIDRs (one /64
// each, kube-controller-manager's default node-cidr-mask-size-ipv6) to a
// Service address; "ipv6-distinct64" gives every source a /64 of its own
// (e.g. clients on the Internet), the worst case of the prefix interning.
func BenchmarkProcess(b *testing.B) {
	for _, bc := range []struct {
		flows int
		v6    string
	}{{100_000, ""}, {1_000_000, ""}, {100_000, "ipv6"}, {100_000, "ipv6-distinct64"}} {
		flows := bc.flows
		name := fmt.Sprintf("flows=%d", flows)
		if bc.v6 != "" {
			name += "/" + bc.v6
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.MaxFlows = flows + 256 // makeBatches rounds up to whole batches
			a, err := New(cfg, plugin.NopSettings(ID))
			if err != nil {
				b.Fatal(err)
			}
			a.SetEmitter(plugintest.NewEmitter(256))
			batches := makeBatches(flows)
			if bc.v6 != "" {
				dst := netip.MustParseAddr("fd00:10:96::a")
				for _, bt := range batches {
					for _, r := range bt.Records {
						k := r.SourceAddress.As4()
						src := [16]byte{0xfd, 0, 0, 0x10, 0x02, 0x44, 0, k[3] & 63, 12: k[0], 13: k[1], 14: k[2], 15: k[3]}
						if bc.v6 == "ipv6-distinct64" {
							src = [16]byte{0x20, 0x01, 0x0d, 0xb8, 4: k[1], 5: k[2], 6: k[3], 15: 1}
						}
						r.SetAddr(flow.SourceAddress, netip.AddrFrom16(src))
						r.SetAddr(flow.DestinationAddress, dst)
					}
				}
			}
			ctx := context.Background()
			// Fill the table, then measure updates.
			for _, bt := range batches {
				_ = a.Process(ctx, refill(bt))
			}
			if a.tb.live < flows {
				b.Fatalf("live %d, want %d", a.tb.live, flows)
			}
			b.ReportAllocs()
			b.ResetTimer()
			meter := cputime.Start()
			n := 0
			for b.Loop() {
				bt := batches[n%len(batches)]
				refill(bt)
				_ = a.Process(ctx, bt)
				n++
			}
			b.StopTimer()
			cpu := meter.Elapsed()
			recs := float64(n * 256)
			// The machine may be shared: CPU time per record is the figure
			// that does not depend on how often this process ran.
			b.ReportMetric(float64(cpu.Nanoseconds())/recs, "cpu-ns/record")
			b.ReportMetric(recs/cpu.Seconds(), "records/cpu-s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/recs, "ns/record")
			b.ReportMetric(recs/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(a.tb.bytes())/float64(a.tb.live), "B/flow")
		})
	}
}

// The batches keep their records; Process removes held ones from Records,
// so refill restores all 256 (the slots stay put in slots).
func refill(b *flow.Batch) *flow.Batch {
	b.Records = b.Records[:cap(b.Records)]
	return b
}

func makeBatches(flows int) []*flow.Batch {
	var out []*flow.Batch
	exp := netip.MustParseAddrPort("192.0.2.1:4739")
	for i := 0; i < flows; i += 256 {
		b := flow.NewBatch(256)
		for j := range 256 {
			k := uint32(i + j)
			src := netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)})
			r := b.Append()
			r.SetAddr(flow.SourceAddress, src)
			r.SetAddr(flow.DestinationAddress, netip.AddrFrom4([4]byte{10, 99, 0, 1}))
			r.SetUint(flow.ProtocolIdentifier, 6)
			r.SetUint(flow.SourceTransportPort, uint64(1024+k%50000))
			r.SetUint(flow.DestinationTransportPort, 443)
			r.SetUint(flow.PacketDeltaCount, 3)
			r.SetUint(flow.OctetDeltaCount, 1500)
			r.SetUint(flow.FlowStart, 1e18)
			r.SetUint(flow.FlowEnd, 1e18+1e9)
			r.SetUint(flow.FlowEndReason, 2)
			r.Exporter = exp
		}
		out = append(out, b)
	}
	return out
}

// BenchmarkGCPause measures GC pauses (stop-the-world, p99 of forced
// collections) with 0 and 1 M live flows, the heap per live flow, and the
// heap the GC scans per flow: the pointer-free table is not scanned.
func BenchmarkGCPause(b *testing.B) {
	for _, flows := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", flows), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.MaxFlows = flows + 256
			a, err := New(cfg, plugin.NopSettings(ID))
			if err != nil {
				b.Fatal(err)
			}
			a.SetEmitter(plugintest.NewEmitter(256))
			batches := makeBatches(flows)
			ctx := context.Background()
			for _, bt := range batches {
				_ = a.Process(ctx, refill(bt))
			}
			batches = nil
			runtime.GC()
			var before debug.GCStats
			debug.ReadGCStats(&before)
			b.ResetTimer()
			for b.Loop() {
				runtime.GC()
			}
			b.StopTimer()
			var st debug.GCStats
			debug.ReadGCStats(&st)
			pauses := slices.Clone(st.Pause[:min(len(st.Pause), int(st.NumGC-before.NumGC))])
			slices.Sort(pauses)
			if len(pauses) > 0 {
				b.ReportMetric(float64(pauses[len(pauses)*99/100].Microseconds()), "p99-pause-µs")
				b.ReportMetric(float64(pauses[len(pauses)/2].Microseconds()), "p50-pause-µs")
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			sample := []rtmetrics.Sample{{Name: "/gc/scan/heap:bytes"}}
			rtmetrics.Read(sample)
			if flows > 0 {
				b.ReportMetric(float64(ms.HeapAlloc)/float64(flows), "heap-B/flow")
				b.ReportMetric(float64(sample[0].Value.Uint64())/float64(flows), "scanned-B/flow")
			}
			runtime.KeepAlive(a)
		})
	}
}
