package protocol_test

import (
	"context"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/cputime"
	"github.com/weir-flow/weir/plugins/filter/protocol"
)

// BenchmarkProcess reports ns/record: each iteration filters one batch of
// 256 records (TCP, UDP, ICMP, ICMPv6 in turn). The batch is refilled by
// swapping back the removed records, which costs no allocation.
func BenchmarkProcess(b *testing.B) {
	for _, bc := range []struct {
		name      string
		protocols []any
	}{
		{"protocols", []any{"tcp", "UDP", 1}},
		{"groups", []any{"web", "dns"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := protocol.New(&protocol.Config{Protocols: bc.protocols}, nopSettings())
			if err != nil {
				b.Fatal(err)
			}
			batch := plugintest.MixedBatch(flow.DefaultBatchSize)
			all := append([]*flow.Record(nil), batch.Records...)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cputime.Start()
			for i := 0; i < b.N; i++ {
				batch.Records = append(batch.Records[:0], all...)
				if err := f.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			cpu.ReportPer(b, b.N*len(all), "record")
		})
	}
}
