package expr_test

import (
	"context"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/cputime"
	"github.com/weir-flow/weir/plugins/filter/expr"
)

// issueExample is the expression the filter.expr target is measured on
// (≤ 150 ns/record).
const issueExample = `protocolIdentifier == 6 && destinationTransportPort in [80, 443] && sourcePodNamespace != "kube-system"`

// benchBatch is a batch of n records: TCP, UDP, ICMP and ICMPv6 in turn,
// ports 80 and 443, namespaces default and kube-system in turn.
func benchBatch(n int) *flow.Batch {
	b := plugintest.MixedBatch(n)
	for i, r := range b.Records {
		if i%3 == 0 {
			r.SetString(flow.SourcePodNamespace, "kube-system")
		} else {
			r.SetString(flow.SourcePodNamespace, "default")
		}
	}
	return b
}

// BenchmarkProcess reports ns/record of the filter on batches of 256.
func BenchmarkProcess(b *testing.B) {
	for _, bc := range []struct{ name, expression string }{
		{"issue_example", issueExample},
		{"address_cidr", `inCIDR(sourceIPv4Address, "10.0.0.0/8") || sourceIPv6Address startsWith "fd00:"`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := expr.New(&expr.Config{Expression: bc.expression}, plugin.NopSettings(expr.ID))
			if err != nil {
				b.Fatal(err)
			}
			batch := benchBatch(flow.DefaultBatchSize)
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
