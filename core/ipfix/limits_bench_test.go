package ipfix

import (
	"sync"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/internal/cputime"
)

// wideTemplate returns a message defining template id with n IANA fields of
// 4 bytes whose elements are unassigned (unknown IEs), the shape of the
// template-flood attack (16,000 fields, 64 KB).
func wideTemplate(id uint16, n, variant int) []byte {
	specs := make([]spec, n)
	for i := range specs {
		specs[i] = ie(uint16(1000+(i+variant)%8000), 4)
	}
	return message(1, 1_700_000_000, set(setIDTemplate, templateRecord(id, specs...)))
}

// BenchmarkTemplateWide stores a changed 16,000-field template per
// iteration (the same ID redefined, so each is compiled), with an UnknownIE hook that
// locks like source.ipfix's. The cost is per template, not per field.
func BenchmarkTemplateWide(b *testing.B) {
	for _, c := range []struct {
		n    int
		hook bool
	}{{100, true}, {1000, true}, {16000, true}, {16000, false}} {
		n := c.n
		name := itoa(n) + "_fields"
		if !c.hook {
			name += "_nohook"
		}
		b.Run(name, func(b *testing.B) {
			msgs := [][]byte{wideTemplate(256, n, 0), wideTemplate(256, n, 1)}
			d := NewDecoder(DecoderOptions{})
			var mu sync.Mutex
			seen := map[flow.IEKey]int{}
			if c.hook {
				d.UnknownIE(func(k flow.IEKey) { mu.Lock(); seen[k]++; mu.Unlock() })
			}
			batch := flow.NewBatch(0)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cputime.Start()
			for i := 0; i < b.N; i++ {
				if _, err := d.Decode(batch, msgs[i%len(msgs)], testExporter); err != nil {
					b.Fatal(err)
				}
			}
			cpu.Report(b, b.N, "op")
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
