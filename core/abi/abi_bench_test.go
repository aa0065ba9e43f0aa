package abi

import (
	"fmt"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

func BenchmarkAppendBatch(b *testing.B) {
	for _, n := range []int{1, 64, 256, 1024} {
		for name, m := range map[string]Mask{
			"all":      All,
			"protocol": MaskOf(0, flow.ProtocolIdentifier),
			"columns":  MaskOf(FlagColumns, flow.ProtocolIdentifier, flow.SourceTransportPort, flow.DestinationTransportPort),
			// What protocolfilter asks for without port groups.
			"column": MaskOf(FlagColumns|FlagNoPresence, flow.ProtocolIdentifier),
		} {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				batch := plugintest.MixedBatch(n)
				// An Encoder, as the WASM host keeps one per instance.
				var e Encoder
				buf := e.Append(nil, batch, m)
				b.ReportAllocs()
				b.SetBytes(int64(len(buf)))
				for b.Loop() {
					buf = e.Append(buf[:0], batch, m)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			})
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{256} {
		for name, m := range map[string]Mask{"all": All, "protocol": MaskOf(0, flow.ProtocolIdentifier)} {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				buf := AppendBatchMask(nil, plugintest.MixedBatch(n), m)
				out := flow.NewBatch(n)
				var d Decoder
				b.ReportAllocs()
				for b.Loop() {
					out.Reset()
					if err := d.Decode(buf, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			})
		}
	}
}

// BenchmarkFilter measures the guest SDK's filter loop natively (the
// guest runs the same code compiled to WebAssembly).
func BenchmarkFilter(b *testing.B) {
	for _, n := range []int{256, 1024} {
		for name, m := range map[string]Mask{
			"columns": MaskOf(FlagColumns, flow.ProtocolIdentifier, flow.SourceTransportPort, flow.DestinationTransportPort),
			"plain":   MaskOf(0, flow.ProtocolIdentifier, flow.SourceTransportPort, flow.DestinationTransportPort),
		} {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				buf := AppendBatchMask(nil, plugintest.MixedBatch(n), m)
				v, err := ParseBatch(buf)
				if err != nil {
					b.Fatal(err)
				}
				var d Decoder
				var r flow.Record
				keep := func(r *flow.Record) bool { return r.ProtocolIdentifier == 6 || r.ProtocolIdentifier == 17 }
				verdicts := Verdicts(nil).KeepAll(n)
				for b.Loop() {
					if err := d.Filter(&v, &r, keep, verdicts); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			})
		}
	}
}
