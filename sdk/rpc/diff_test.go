package rpc

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
)

// TestPresenceCoversStrings checks presence against flow.Record.Has for
// every string field, so a string field added to flow fails here.
func TestPresenceCoversStrings(t *testing.T) {
	for i := range flow.NumFields {
		f := flow.FieldID(i)
		if flow.Fields[f].Kind != flow.KindString {
			continue
		}
		var r flow.Record
		r.SetString(f, "x")
		r.Present = flow.FieldSet{}
		if p := presence(&r); !p.Has(f) {
			t.Errorf("presence misses %s", f)
		}
	}
}

// randomRecord sets a random subset of fields, some without their bit.
func randomRecord(rng *rand.Rand) flow.Record {
	var r flow.Record
	for i := range flow.NumFields {
		if rng.IntN(3) != 0 {
			continue
		}
		f := flow.FieldID(i)
		switch flow.Fields[f].Kind {
		case flow.KindAddress:
			addrs := []string{"10.0.0.1", "10.0.0.2", "fd00::1"}
			r.SetAddr(f, netip.MustParseAddr(addrs[rng.IntN(len(addrs))]))
		case flow.KindString:
			r.SetString(f, []string{"", "a", "b"}[rng.IntN(3)])
			if rng.IntN(4) == 0 {
				r.Present.Remove(f)
			}
		default:
			r.SetUint(f, uint64(rng.IntN(3)))
		}
	}
	for range rng.IntN(3) {
		r.Extra = append(r.Extra, flow.Field{Enterprise: uint32(rng.IntN(2)), Element: uint16(rng.IntN(3)), Value: []byte{byte(rng.IntN(3))}})
	}
	return r
}

// TestDiffMatchesABI checks that diff gives abi.Updates.Diff's updates.
func TestDiffMatchesABI(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		before, after := randomRecord(rng), randomRecord(rng)
		if i%3 == 0 {
			after = before
			after.Extra = append([]flow.Field(nil), before.Extra...)
			after.SetString(flow.SourcePodLabels, "changed")
		}
		var want, got abi.Updates
		want.Diff(0, &before, &after)
		diff(&got, 0, &before, &after)
		if want.Len() != got.Len() || !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("case %d: diff gives %d updates, abi %d\nbefore %+v\nafter  %+v", i, got.Len(), want.Len(), before, after)
		}
	}
}

func BenchmarkDiff(b *testing.B) {
	before := flow.Record{}
	before.SetAddr(flow.SourceAddress, netip.MustParseAddr("10.0.0.1"))
	before.SetAddr(flow.DestinationAddress, netip.MustParseAddr("10.0.0.2"))
	after := before
	after.SetString(flow.SourcePodLabels, `{"env":"prod"}`)
	after.SetString(flow.DestinationPodLabels, `{"env":"dev"}`)
	var u abi.Updates
	b.Run("abi", func(b *testing.B) {
		for b.Loop() {
			u.Reset()
			u.Diff(0, &before, &after)
		}
	})
	b.Run("rpc", func(b *testing.B) {
		for b.Loop() {
			u.Reset()
			diff(&u, 0, &before, &after)
		}
	})
}
