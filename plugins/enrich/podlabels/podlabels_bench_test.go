package podlabels

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/internal/cputime"
)

// benchEnricher returns an enricher whose index holds pods Pods (each with
// five labels), 100 Nodes and 1000 Services, and a batch of n records
// between them: mostly Pod to Pod, some to Services and some misses.
func benchEnricher(b *testing.B, pods, n int) (*Enricher, *flow.Batch) {
	b.Helper()
	e, err := newEnricher(DefaultConfig(), plugin.NopSettings(ID), func(*Enricher, *labelEncoder) (backend, error) {
		return nil, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	enc := newLabelEncoder(DefaultConfig().Labels)
	podIP := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}) }
	for i := range pods {
		p := &podInfo{
			endpoint: endpoint{podName: fmt.Sprintf("web-%d-abcde", i), podNamespace: fmt.Sprintf("ns-%d", i%50), nodeName: fmt.Sprintf("node-%d", i%100)},
			ips:      []netip.Addr{podIP(i)},
			created:  time.Unix(int64(i), 0),
		}
		p.labels, _ = enc.encode(map[string]string{
			"app": fmt.Sprintf("web-%d", i/10), "app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop",
			"pod-template-hash": "7d9c5b6f4", "tier": "frontend",
		})
		e.store.upsertPod(fmt.Sprint(i), p)
	}
	for i := range 100 {
		e.store.upsertNode(fmt.Sprintf("node-%d", i), []netip.Addr{netip.AddrFrom4([4]byte{192, 168, 1, byte(i)})})
	}
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
		e.store.upsertService(fmt.Sprintf("ns/svc-%d", i), []svcPort{{addr: ip, port: 80, proto: 6, name: fmt.Sprintf("ns/svc-%d:http", i)}})
	}
	e.store.rebuild()

	batch := flow.NewBatch(n)
	for i := range n {
		r := batch.Append()
		src := podIP((i * 7919) % pods)
		dst := podIP((i * 104729) % pods)
		switch i % 8 {
		case 0:
			dst = netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i % 200)}) // Service
		case 1:
			dst = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) // miss
		}
		r.SetAddr(flow.SourceAddress, src)
		r.SetAddr(flow.DestinationAddress, dst)
		r.SetUint(flow.ProtocolIdentifier, 6)
		r.SetUint(flow.DestinationTransportPort, 80)
	}
	return e, batch
}

// clearAntrea resets the fields the enricher fills so each iteration does
// the full work (with overwrite off, filled fields would be skipped).
func clearAntrea(b *flow.Batch) {
	for _, r := range b.Records {
		r.SourcePodName, r.SourcePodNamespace, r.SourceNodeName, r.SourcePodLabels = "", "", "", ""
		r.DestinationPodName, r.DestinationPodNamespace, r.DestinationNodeName, r.DestinationPodLabels = "", "", "", ""
		r.DestinationServicePortName = ""
		r.DestinationClusterIP = netip.Addr{}
		r.Present.Remove(flow.DestinationServicePort)
	}
}

// BenchmarkProcess reports ns/record for a 256-record batch against 10 k
// Pods (target ≤ 100 ns/record, 0 allocs). The per-iteration reset of the
// batch is included; it is a few ns per record.
func BenchmarkProcess(b *testing.B) {
	for _, pods := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			e, batch := benchEnricher(b, pods, flow.DefaultBatchSize)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cputime.Start()
			for b.Loop() {
				clearAntrea(batch)
				if err := e.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			cpu.ReportPer(b, b.N*batch.Len(), "record")
		})
	}
}

// BenchmarkProcessParallel runs Process from every CPU at once, as the
// engine's workers do, while the index is being rebuilt. B/op counts the
// rebuilds' allocations (process-wide); Process itself allocates nothing.
func BenchmarkProcessParallel(b *testing.B) {
	e, proto := benchEnricher(b, 10_000, flow.DefaultBatchSize)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Churn: a rebuild every 100 ms, the most the store's run loop does.
		for i := 0; ctx.Err() == nil; i++ {
			e.store.upsertPod("churn", &podInfo{endpoint: endpoint{podName: fmt.Sprint("churn-", i)}, ips: []netip.Addr{netip.MustParseAddr("10.250.0.1")}})
			e.store.rebuild()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		batch := flow.NewBatch(proto.Len())
		for _, r := range proto.Records {
			batch.Append().CopyFrom(r, batch)
		}
		for pb.Next() {
			clearAntrea(batch)
			if err := e.Process(ctx, batch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*proto.Len()), "ns/record")
}

// BenchmarkRebuild is the cost of publishing a new snapshot of 10 k Pods,
// paid at most once per 100 ms off the hot path.
func BenchmarkRebuild(b *testing.B) {
	e, _ := benchEnricher(b, 10_000, 1)
	b.ReportAllocs()
	for b.Loop() {
		e.store.mu.Lock()
		e.store.publish()
		e.store.mu.Unlock()
	}
}
