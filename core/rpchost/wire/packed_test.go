package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/weir-flow/weir/core/abi"
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
	var d abi.Decoder
	out := flow.NewBatch(0)
	if err := d.Decode(buf, out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

func TestPackRoundTrip(t *testing.T) {
	masks := map[string]abi.Mask{
		"addresses":          abi.MaskOf(0, flow.SourceAddress, flow.DestinationAddress),
		"labels":             abi.MaskOf(0, flow.SourceAddress, flow.DestinationAddress, flow.SourcePodLabels, flow.DestinationPodLabels),
		"ports and exporter": abi.MaskOf(abi.FlagExporter, flow.SourceTransportPort, flow.DestinationTransportPort, flow.ProtocolIdentifier),
		"strings and extra":  abi.MaskOf(abi.FlagExtra, flow.DestinationPodName, flow.SourcePodLabels),
		"nothing":            abi.MaskOf(0),
		"all":                abi.All,
	}
	b := testBatch()
	for name, m := range masks {
		t.Run(name, func(t *testing.T) {
			plain := abi.AppendBatchMask(nil, b, m)
			packed, err := Pack([]byte("prefix"), plain)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(packed, []byte("prefix")) {
				t.Fatal("Pack did not append")
			}
			packed = packed[len("prefix"):]
			if m != abi.All && len(packed) >= len(plain) {
				t.Errorf("packed %d bytes, plain %d", len(packed), len(plain))
			}
			unpacked, err := Unpack(nil, packed)
			if err != nil {
				t.Fatal(err)
			}
			want, got := decodeAll(t, plain), decodeAll(t, unpacked)
			if want.Len() != got.Len() {
				t.Fatalf("%d records, want %d", got.Len(), want.Len())
			}
			for i := range want.Records {
				w, g := *want.Records[i], *got.Records[i]
				if !sameRecord(&w, &g) {
					t.Errorf("record %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
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

func TestPackable(t *testing.T) {
	if Packable(abi.All) {
		t.Error("All is packable")
	}
	if !Packable(abi.MaskOf(0, flow.SourceAddress, flow.DestinationAddress, flow.SourcePodLabels, flow.DestinationPodLabels)) {
		t.Error("four fields are not packable")
	}
}

func TestUnpackMalformed(t *testing.T) {
	plain := abi.AppendBatchMask(nil, testBatch(), abi.MaskOf(0, flow.SourceAddress))
	packed, err := Pack(nil, plain)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("XXXX"), packed[4:]...),
		"short":     packed[:30],
		"truncated": packed[:len(packed)-1],
		"longer":    append(append([]byte(nil), packed...), 0),
		"plain":     plain,
	}
	for name, buf := range cases {
		if _, err := Unpack(nil, buf); !errors.Is(err, ErrPacked) {
			t.Errorf("%s: %v, want ErrPacked", name, err)
		}
	}
	if _, err := Pack(nil, []byte("not a batch")); !errors.Is(err, ErrPacked) {
		t.Errorf("Pack garbage: %v", err)
	}
}

func FuzzUnpack(f *testing.F) {
	plain := abi.AppendBatchMask(nil, testBatch(), abi.MaskOf(abi.FlagExtra, flow.SourceAddress, flow.SourcePodLabels))
	packed, _ := Pack(nil, plain)
	f.Add(packed)
	f.Fuzz(func(t *testing.T, buf []byte) {
		out, err := Unpack(nil, buf)
		if err != nil {
			return
		}
		// Whatever unpacks must be safe to decode.
		var d abi.Decoder
		_ = d.Decode(out, flow.NewBatch(0))
	})
}
