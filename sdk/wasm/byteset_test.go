package weir_test

import (
	"testing"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/plugintest"
	weir "github.com/weir-flow/weir/sdk/wasm"
	"github.com/weir-flow/weir/sdk/wasm/internal/guest"
	"github.com/weir-flow/weir/sdk/wasm/wasmtest"
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

// FuzzBatchFilter feeds any buffer, twice (the second time on the path
// for a batch of the last shape), to a batch filter's guest: it answers,
// and never panics.
func FuzzBatchFilter(f *testing.F) {
	mask := abi.MaskOf(abi.FlagColumns|abi.FlagNoPresence, weir.ProtocolIdentifier, weir.FlowEnd)
	f.Add(abi.AppendBatchMask(nil, plugintest.MixedBatch(70), mask))
	f.Add(abi.AppendBatchMask(nil, plugintest.MixedBatch(3), abi.MaskOf(abi.FlagColumns, weir.ProtocolIdentifier)))
	f.Add(abi.AppendBatch(nil, plugintest.MixedBatch(2)))
	var in [256]bool
	in[6] = true
	set := weir.NewByteSet(&in)
	weir.RegisterInit(nil)
	weir.RegisterBatchFilter(func(b *weir.Batch) {
		b.KeepIn(b.Uint8(weir.ProtocolIdentifier), set)
		_ = b.Time(weir.FlowEnd)
	}, weir.Reads(weir.ProtocolIdentifier, weir.FlowEnd))
	if _, err := wasmtest.New(nil); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		g := &guest.Default
		for range 2 {
			in := g.Alloc(len(buf))
			copy(in, buf)
			var a abi.Answer
			if err := abi.DecodeAnswer(g.Process(in[:len(buf)]), &a); err != nil {
				t.Fatalf("answer: %v", err)
			}
		}
	})
}
