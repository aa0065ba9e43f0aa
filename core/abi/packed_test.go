package abi

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

func testBatch() *flow.Batch {
	b := plugintest.MixedBatch(9)
	for i, r := range b.Records {
		r.SetString(flow.SourcePodLabels, `{"app":"web"}`)
		r.SetString(flow.DestinationPodName, "pod-"+string(rune('a'+i)))
		r.Extra = append(r.Extra, flow.Field{Enterprise: 9, Element: 77, Value: b.CopyBytes([]byte{1, 2, byte(i)})})
	}
	return b
}

func decodeAll(t *testing.T, buf []byte) *flow.Batch {
	t.Helper()
	var d Decoder
	out := flow.NewBatch(0)
	if err := d.Decode(buf, out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

func sameRecord(a, b *flow.Record) bool {
	if len(a.Extra) != len(b.Extra) {
		return false
	}
	for i := range a.Extra {
		if a.Extra[i].Key() != b.Extra[i].Key() || !bytes.Equal(a.Extra[i].Value, b.Extra[i].Value) {
			return false
		}
	}
	x, y := *a, *b
	x.Extra, y.Extra = nil, nil
	return reflect.DeepEqual(x, y)
}
