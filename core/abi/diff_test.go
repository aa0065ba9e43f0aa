package abi

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

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

// TestDiffMatchesABI checks that diff's answer, applied by the host,
// gives the record Updates.Diff's updates give.
func TestDiffMatchesABI(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var c diffCheck
	for i := range 20000 {
		before, after := randomRecord(rng), randomRecord(rng)
		if i%3 == 0 {
			after = before
			after.Extra = append([]flow.Field(nil), before.Extra...)
			after.SetString(flow.SourcePodLabels, "changed")
		}
		c.check(t, i, &before, &after, before.PresentSet())
	}
}

// TestPackedDiffMatchesABI checks the packed path of server.run
// (Packed.Record into before, a whole copy for Enrich, diff with before's
// Present) against Updates.Diff, for records as a plugin decodes them
// from packed batches of several masks, changed or not by Enrich, inside
// and outside the mask.
func TestPackedDiff(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	masks := []Mask{
		MaskOf(0, flow.SourceAddress, flow.DestinationAddress, flow.SourcePodLabels, flow.DestinationPodLabels),
		MaskOf(FlagExtra, flow.SourceTransportPort, flow.FlowStart, flow.SourcePodName, flow.DestinationAddress),
		All,
	}
	var c diffCheck
	var st Strings
	for i := range 20000 {
		l := NewPackedLayout(masks[i%len(masks)])
		p, err := ParsePacked(l.Append(nil, batchOf(randomRecord(rng))), nil)
		if err != nil {
			t.Fatal(err)
		}
		var before flow.Record
		if err := p.Record(0, &before, &st); err != nil {
			t.Fatal(err)
		}
		after := before
		after.Extra = append([]flow.Field(nil), before.Extra...)
		switch i % 4 {
		case 0: // unchanged
		case 1:
			after.SetString(flow.SourcePodLabels, "changed")
			after.SetUint(flow.OctetDeltaCount, 7)
		default:
			after = randomRecord(rng)
		}
		c.check(t, i, &before, &after, before.Present)
	}
}

// diffCheck applies both diffs to copies of before.
type diffCheck struct {
	w  CompactWriter
	sc Scratch
}

func (c *diffCheck) check(t *testing.T, i int, before, after *flow.Record, pb flow.FieldSet) {
	t.Helper()
	var u Updates
	u.Diff(0, before, after)
	want := batchOf(*before)
	ans := Answer{Count: 1, Verdicts: Verdicts{}.KeepAll(1), Updates: u.Bytes(), UpdateCount: u.Len()}
	if _, err := Apply(want, ans.Append(nil), &c.sc); err != nil {
		t.Fatal(err)
	}
	c.w.Reset()
	c.w.Diff(0, before, after, pb)
	got := batchOf(*before)
	if _, err := Apply(got, c.w.Append(nil, StatusOK, 1, Verdicts{}.KeepAll(1), ""), &c.sc); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normal(want.Records[0]), normal(got.Records[0])) {
		t.Fatalf("case %d: CompactWriter.Diff gives\n%+v\nUpdates.Diff gives\n%+v\nbefore %+v\nafter  %+v", i, *got.Records[0], *want.Records[0], *before, *after)
	}
	if h, g := want.Records[0], after; !sameExported(h, g) {
		t.Fatalf("case %d: applying the diff gives\n%+v\nwant\n%+v\nbefore %+v", i, *h, *g, *before)
	}
}

// sameExported compares records as exported: presence and the values of
// present fields, and Extra IEs per key, in order within a key.
func sameExported(a, b *flow.Record) bool {
	for f := range flow.NumFields {
		id := flow.FieldID(f)
		if a.Has(id) != b.Has(id) {
			return false
		}
		if a.Has(id) && (a.Uint(id) != b.Uint(id) || a.String(id) != b.String(id) || a.Addr(id) != b.Addr(id)) {
			return false
		}
	}
	return sameExtraSet(a.Extra, b.Extra)
}

// batchOf returns a batch holding a copy of r.
func batchOf(r flow.Record) *flow.Batch {
	b := flow.NewBatch(1)
	c := b.Append()
	*c = r
	c.Extra = append([]flow.Field(nil), r.Extra...)
	return b
}

// normal makes nil and empty Extra compare equal.
func normal(r *flow.Record) flow.Record {
	c := *r
	if len(c.Extra) == 0 {
		c.Extra = nil
	}
	return c
}

func BenchmarkDiff(b *testing.B) {
	before := flow.Record{}
	before.SetAddr(flow.SourceAddress, netip.MustParseAddr("10.0.0.1"))
	before.SetAddr(flow.DestinationAddress, netip.MustParseAddr("10.0.0.2"))
	after := before
	after.SetString(flow.SourcePodLabels, `{"env":"prod"}`)
	after.SetString(flow.DestinationPodLabels, `{"env":"dev"}`)
	b.Run("updates", func(b *testing.B) {
		var u Updates
		for b.Loop() {
			u.Reset()
			u.Diff(0, &before, &after)
		}
	})
	b.Run("compact", func(b *testing.B) {
		var w CompactWriter
		for b.Loop() {
			w.Reset()
			w.Diff(0, &before, &after, before.PresentSet())
		}
	})
}
