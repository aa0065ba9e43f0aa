package iecompat_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/cputime"
	"github.com/weir-flow/weir/plugins/enrich/iecompat"
)

// antreaBatch is n records as an Antrea exporter sends them: pod fields
// typed, and verbatim egressName, rule priority (2 bytes, old registry) and
// a private IE.
func antreaBatch(n int) *flow.Batch {
	b := flow.NewBatch(n)
	for i := 0; i < n; i++ {
		r := rec(b,
			str(antrea, egrName, "egress-a"),
			ie(antrea, prioIE, 0, 100),
			str(lab, 1, "node-a"),
		)
		r.SetString(flow.SourcePodName, "pod")
		r.SetString(flow.SourcePodNamespace, "default")
		r.SetAddr(flow.DestinationClusterIP, netip.MustParseAddr("10.96.0.10"))
	}
	return b
}

// threeShims are the three inline shims the ≤ 50 ns/record target is
// measured with: a renumber onto a typed field, a width change and a
// default, each behind a selector.
func threeShims() []iecompat.Shim {
	return []iecompat.Shim{
		{Name: "lab-egress-node", Match: iecompat.Match{Exporters: []string{"192.0.2.0/24"}},
			Actions: []iecompat.Action{{Op: "rename", IE: "32473/1", To: "egressNodeName"}}},
		{Name: "rule-priority", Match: iecompat.Match{ObservationDomains: []uint32{1}},
			Actions: []iecompat.Action{{Op: "width", IE: "ingressNetworkPolicyRulePriority", Type: "signed32", FromType: "unsigned16"}}},
		{Name: "egress-node-default", Match: iecompat.Match{Has: []string{"egressName"}, Lacks: []string{"egressNodeName"}},
			Actions: []iecompat.Action{{Op: "default", IE: "egressNodeName", Value: "unknown"}}},
	}
}

// BenchmarkProcess reports ns/record over batches of 256.
//
//   - steady: records that already conform (every selector and action
//     runs and finds nothing to do) — the common case.
//   - fixing: fresh records each pass, so every action changes something;
//     includes copying the records (see copy_only for that cost alone).
func BenchmarkProcess(b *testing.B) {
	ctx := context.Background()
	src := antreaBatch(flow.DefaultBatchSize)
	n := src.Len()
	for _, bc := range []struct {
		name    string
		shims   func(testing.TB) *iecompat.Shims
		refresh bool
	}{
		{"three_shims/steady", func(t testing.TB) *iecompat.Shims { s, _ := newShims(t, threeShims()...); return s }, false},
		{"three_shims/fixing", func(t testing.TB) *iecompat.Shims { s, _ := newShims(t, threeShims()...); return s }, true},
		{"shipped_antrea/steady", shippedShims, false},
		{"shipped_antrea/fixing", shippedShims, true},
		{"copy_only", nil, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var s *iecompat.Shims
			if bc.shims != nil {
				s = bc.shims(b)
			}
			work := flow.NewBatch(n)
			fill := func() {
				work.Reset()
				for _, r := range src.Records {
					work.Append().CopyFrom(r, work)
				}
			}
			fill()
			if s != nil && !bc.refresh {
				_ = s.Process(ctx, work) // conform once
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cputime.Start()
			for i := 0; i < b.N; i++ {
				if bc.refresh {
					fill()
				}
				if s != nil {
					if err := s.Process(ctx, work); err != nil {
						b.Fatal(err)
					}
				}
			}
			cpu.ReportPer(b, b.N*n, "record")
		})
	}
}

var _ = plugintest.Record
