package weir_test

import (
	"testing"

	weir "github.com/weir-flow/weir/sdk/wasm"
)

// FuzzByteSet checks Select against a plain loop for any column and any
// set of up to eight members (word comparisons up to four, table above).
func FuzzByteSet(f *testing.F) {
	f.Add([]byte{6, 17, 0x80, 0xff, 0, 1, 0x7f, 6, 17, 16, 18, 7, 5}, []byte{6, 17})
	f.Add(make([]byte, 130), []byte{0})
	f.Add([]byte{0xff, 0xfe, 0x7f, 0x80, 0x81, 0x00, 0x01}, []byte{0xff, 0x80, 0x7f, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, col, members []byte) {
		var in [256]bool
		for _, v := range members[:min(len(members), 8)] {
			in[v] = true
		}
		s := weir.NewByteSet(&in)
		got := s.Select(nil, col)
		for i, v := range col {
			if got[i>>6]&(1<<(i&63)) != 0 != in[v] {
				t.Fatalf("value %d at %d: selected %v, member %v", v, i, !in[v], in[v])
			}
		}
		if r := len(col) & 63; r != 0 && got[len(got)-1]>>r != 0 {
			t.Fatalf("bits set past the %d values", len(col))
		}
	})
}
