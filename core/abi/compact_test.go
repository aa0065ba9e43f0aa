package abi

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

// compactCase builds the same updates as an ABI answer (abi) and as a
// compact answer (w), strings through w's table.
func compactCase() (abiUpdates Updates, w *CompactWriter) {
	w = new(CompactWriter)
	both := func(f func(u *Updates)) {
		f(&abiUpdates)
		f(&w.Updates)
	}
	for _, rec := range []int{0, 2, 4} {
		abiUpdates.SetString(rec, flow.SourcePodLabels, `{"a":"b"}`)
		w.SetString(rec, flow.SourcePodLabels, `{"a":"b"}`)
	}
	abiUpdates.SetString(1, flow.DestinationPodName, "")
	w.SetString(1, flow.DestinationPodName, "")
	both(func(u *Updates) { u.SetUint(1, flow.OctetDeltaCount, 77) })
	both(func(u *Updates) { u.SetAddr(3, flow.DestinationAddress, netip.MustParseAddr("fd00::9")) })
	both(func(u *Updates) { u.Clear(5, flow.DestinationPodName) })
	both(func(u *Updates) {
		u.AddExtra(7, flow.Field{Enterprise: 9, Element: 78, Variable: true, Value: []byte{8, 8}})
	})
	return abiUpdates, w
}

// TestCompactAnswer checks that a compact answer applies as the ABI answer
// with the same updates does, and that malformed ones change nothing.
func TestCompactAnswer(t *testing.T) {
	u, w := compactCase()
	if len(w.ends) != 2 || len(w.refs) != 4*refSize {
		t.Fatalf("table of %d strings, %d references; want 2, 4", len(w.ends), len(w.refs)/refSize)
	}
	keep := Verdicts(nil).KeepAll(9)
	good := w.Append(nil, StatusOK, 9, keep, "")
	filter := w.Append(nil, StatusOK, 9, Verdicts{0b101010101}, "")
	abiAnswer := func(v Verdicts) []byte {
		return (&Answer{Count: 9, Verdicts: v, Updates: u.Bytes(), UpdateCount: u.Len()}).Append(nil)
	}
	headerAt := func(off int, v uint32) []byte {
		buf := bytes.Clone(good)
		le.PutUint32(buf[off:], v)
		return buf
	}
	refAt := func(k, off int, v uint32) []byte {
		buf := bytes.Clone(good)
		ro := CompactHeaderSize + 8 + 4*2 + len(`{"a":"b"}`)
		le.PutUint32(buf[ro+k*refSize+off:], v)
		return buf
	}
	type tc struct {
		buf  []byte
		want []byte // the ABI answer it equals; nil: an error
	}
	cases := map[string]tc{
		"enrich":       {good, abiAnswer(keep)},
		"filter":       {filter, abiAnswer(Verdicts{0b101010101})},
		"short":        {good[:30], nil},
		"truncated":    {good[:len(good)-1], nil},
		"longer":       {append(bytes.Clone(good), 0), nil},
		"count":        {headerAt(cCount, 8), nil},
		"ref record":   {refAt(0, 0, 9), nil},
		"ref field":    {refAt(0, 4, 0<<8|uint32(flow.OctetDeltaCount)), nil},
		"ref index":    {refAt(0, 4, 2<<8|uint32(flow.SourcePodLabels)), nil},
		"string ends":  {headerAt(CompactHeaderSize+8, 99), nil},
		"update count": {headerAt(cUpdateCount, 9), nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := testBatch()
			var sc Scratch
			_, err := Apply(got, c.buf, &sc)
			want := testBatch()
			if c.want == nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error %v, want ErrMalformed", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := refApply(want, c.want); err != nil {
					t.Fatal(err)
				}
			}
			if got.Len() != want.Len() {
				t.Fatalf("%d records, want %d", got.Len(), want.Len())
			}
			for i := range want.Records {
				if !sameRecord(got.Records[i], want.Records[i]) {
					t.Errorf("record %d:\n got %+v\nwant %+v", i, *got.Records[i], *want.Records[i])
				}
			}
		})
	}
	t.Run("error", func(t *testing.T) {
		var pe *PluginError
		_, err := Apply(testBatch(), CompactError(StatusError, "no table"), new(Scratch))
		if !errors.As(err, &pe) || pe.Status != StatusError || pe.Message != "no table" {
			t.Fatalf("got %v", err)
		}
	})
}

// TestCompactAnswerAllocs checks that applying a compact answer whose
// strings were seen before allocates nothing.
func TestCompactAnswerAllocs(t *testing.T) {
	var w CompactWriter
	labels := []string{`{"app":"web"}`, `{"app":"db"}`}
	for i := range 9 {
		w.SetString(i, flow.SourcePodLabels, labels[i%2])
		w.SetString(i, flow.DestinationPodLabels, labels[(i+1)%2])
	}
	if len(w.ends) != 2 {
		t.Fatalf("%d strings in the table, want 2", len(w.ends))
	}
	buf := w.Append(nil, StatusOK, 9, Verdicts(nil).KeepAll(9), "")
	b := testBatch()
	applyWithoutAllocs(t, b, buf)
	if b.Records[3].DestinationPodLabels != labels[0] {
		t.Errorf("record 3: %q", b.Records[3].DestinationPodLabels)
	}
}

func FuzzApplyCompact(f *testing.F) {
	_, w := compactCase()
	f.Add(w.Append(nil, StatusOK, 9, Verdicts(nil).KeepAll(9), ""))
	f.Add(CompactError(StatusError, "x"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		b := testBatch()
		_, _ = Apply(b, buf, new(Scratch)) // must not panic
	})
}

// applyWithoutAllocs applies buf to b, then checks that applying it again
// allocates nothing: its strings are interned by then.
func applyWithoutAllocs(t *testing.T, b *flow.Batch, buf []byte) {
	t.Helper()
	var sc Scratch
	if _, err := Apply(b, buf, &sc); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Apply(b, buf, &sc); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per answer, want 0", allocs)
	}
}
