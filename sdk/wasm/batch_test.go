package weir_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/plugintest"
	weir "github.com/weir-flow/weir/sdk/wasm"
	"github.com/weir-flow/weir/sdk/wasm/wasmtest"
)

// TestBatchColumns checks every column accessor and Has against the
// records, and that misuse panics with a message (answered as a panic).
func TestBatchColumns(t *testing.T) {
	src := plugintest.MixedBatch(70)
	var failures []string
	weir.RegisterInit(nil)
	weir.RegisterBatchFilter(func(b *weir.Batch) {
		if b.Len() != src.Len() {
			failures = append(failures, "Len")
		}
		protos, ports, ingress, octets, end := b.Uint8(weir.ProtocolIdentifier), b.Uint16(weir.DestinationTransportPort),
			b.Uint32(weir.IngressInterface), b.Uint64(weir.OctetDeltaCount), b.Time(weir.FlowEnd)
		for i, r := range src.Records {
			if protos[i] != r.ProtocolIdentifier || ports[i] != r.DestinationTransportPort || ingress[i] != r.IngressInterface ||
				octets[i] != r.OctetDeltaCount || end[i] != r.FlowEnd || b.Has(i, weir.OctetDeltaCount) != r.Has(weir.OctetDeltaCount) {
				failures = append(failures, "record "+r.SourceAddress.String())
			}
			if i%2 == 1 {
				b.Drop(i)
			}
			if b.Kept(i) != (i%2 == 0) {
				failures = append(failures, "Kept")
			}
		}
	}, weir.Reads(weir.ProtocolIdentifier, weir.DestinationTransportPort, weir.IngressInterface, weir.OctetDeltaCount, weir.FlowEnd), weir.ReadsPresence())
	h, err := wasmtest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := plugintest.MixedBatch(70)
	removed, err := h.Process(b)
	if err != nil || removed != 35 || len(failures) > 0 {
		t.Fatalf("removed %d, %v, failures %v", removed, err, failures)
	}

	for name, misuse := range map[string]func(b *weir.Batch){
		"not read":    func(b *weir.Batch) { b.Uint16(weir.SourceTransportPort) },
		"wrong width": func(b *weir.Batch) { b.Uint16(weir.ProtocolIdentifier) },
		"time as u64": func(b *weir.Batch) { b.Uint64(weir.FlowEnd) },
		"string":      func(b *weir.Batch) { b.Uint64(weir.SourcePodName) },
		"presence":    func(b *weir.Batch) { b.Has(0, weir.ProtocolIdentifier) },
	} {
		t.Run(name, func(t *testing.T) {
			weir.RegisterBatchFilter(misuse, weir.Reads(weir.ProtocolIdentifier, weir.FlowEnd))
			h, err := wasmtest.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.Process(plugintest.MixedBatch(3))
			var pe *abi.PluginError
			if !errors.As(err, &pe) || pe.Status != abi.StatusPanic || !strings.Contains(pe.Message, "weir: Batch") {
				t.Fatalf("got %v, want a panic naming the column", err)
			}
		})
	}
}

// TestKeepIn checks KeepIn and ByteSet.Select against a per-record loop,
// for sets compared by word (up to four values) and by table, and batch
// sizes around the 64-record words, with a record dropped before.
func TestKeepIn(t *testing.T) {
	for _, members := range [][]int{nil, {6}, {0, 255}, {6, 17, 1, 58}, {6, 17, 1, 58, 132}, {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233}} {
		var in [256]bool
		for _, v := range members {
			in[v] = true
		}
		set := weir.NewByteSet(&in)
		for _, n := range []int{1, 7, 63, 64, 65, 128, 200} {
			rng := rand.New(rand.NewPCG(uint64(n), uint64(len(members))))
			protos := make([]uint8, n)
			for i := range protos {
				protos[i] = uint8(rng.IntN(256))
				if len(members) > 0 && rng.IntN(2) == 0 {
					protos[i] = uint8(members[rng.IntN(len(members))])
				}
			}
			var failures []string
			weir.RegisterBatchFilter(func(b *weir.Batch) {
				col := b.Uint8(weir.ProtocolIdentifier)
				sel := set.Select(nil, col)
				for i, p := range col {
					if got := sel[i>>6]&(1<<(i&63)) != 0; got != in[p] || set.Has(p) != in[p] {
						failures = append(failures, fmt.Sprintf("record %d (%d): selected %v", i, p, got))
					}
				}
				if i := len(col) & 63; i != 0 && sel[len(sel)-1]>>i != 0 {
					failures = append(failures, "Select sets bits past the end")
				}
				b.Drop(0)
				b.KeepIn(col, set)
			}, weir.Reads(weir.ProtocolIdentifier))
			h, err := wasmtest.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			if h.Manifest().Reads.Flags&abi.FlagNoPresence == 0 {
				t.Error("a batch filter without ReadsPresence asks for presence")
			}
			b := plugintest.MixedBatch(n)
			var want []uint8
			for i, r := range b.Records {
				r.ProtocolIdentifier = protos[i]
				if i > 0 && in[protos[i]] {
					want = append(want, protos[i])
				}
			}
			if _, err := h.Process(b); err != nil || len(failures) > 0 {
				t.Fatalf("set %v, n=%d: %v %v", members, n, err, failures)
			}
			var got []uint8
			for _, r := range b.Records {
				got = append(got, r.ProtocolIdentifier)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("set %v, n=%d: kept %v, want %v", members, n, got, want)
			}
		}
	}
}

// TestSetReads checks that Init can narrow what the plugin reads.
func TestSetReads(t *testing.T) {
	weir.RegisterBatchFilter(func(*weir.Batch) {}, weir.Reads(weir.ProtocolIdentifier, weir.SourceTransportPort))
	weir.RegisterInit(func([]byte) error {
		weir.SetReads(weir.Reads(weir.ProtocolIdentifier))
		return nil
	})
	defer weir.RegisterInit(nil)
	h, err := wasmtest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := abi.MaskOf(abi.FlagColumns|abi.FlagNoPresence, weir.ProtocolIdentifier)
	if got := h.Manifest().Reads; got != want {
		t.Fatalf("reads %+v, want %+v", got, want)
	}
}
