// Package fields checks that every typed field of core/flow crosses every
// layer of Weir: IPFIX decode and encode, the ABI (record blocks, columns,
// packed batches, updates, Apply, Diff), JSON, and both SDKs. A field added
// to flow.Fields that one layer forgets fails here, by name.
package fields

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/plugins/export/jsonl"
	"github.com/weir-flow/weir/sdk/rpc"
	weir "github.com/weir-flow/weir/sdk/wasm"
	"github.com/weir-flow/weir/sdk/wasm/wasmtest"
)

// value sets field f of r to a value that tells it apart from zero and
// fits its width; v6 picks an IPv6 address for an address field.
func value(r *flow.Record, f flow.FieldID, v6 bool) {
	info := &flow.Fields[f]
	switch info.Kind {
	case flow.KindAddress:
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(f)})
		if v6 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(f)})
		}
		r.SetAddr(f, a)
	case flow.KindString:
		r.SetString(f, "v-"+info.Name)
	case flow.KindTime:
		// Milliseconds: IPFIX exports dateTimeMilliseconds.
		r.SetUint(f, uint64(time.UnixMilli(1_700_000_000_123+int64(f)).UnixNano()))
	default:
		w := flow.SlotOf(f).Size
		r.SetUint(f, uint64(0x81)<<(8*(w-1))|uint64(f))
	}
}

// same reports how field f of got differs from want, or "".
func same(got, want *flow.Record, f flow.FieldID) string {
	switch {
	case got.Has(f) != want.Has(f):
		return fmt.Sprintf("present %v, want %v", got.Has(f), want.Has(f))
	case got.Uint(f) != want.Uint(f), got.String(f) != want.String(f), got.Addr(f) != want.Addr(f):
		return fmt.Sprintf("value %v/%q/%v, want %v/%q/%v", got.Uint(f), got.String(f), got.Addr(f), want.Uint(f), want.String(f), want.Addr(f))
	}
	return ""
}

// each runs check for every typed field (addresses in both families) on
// a record holding that field only.
func each(t *testing.T, check func(t *testing.T, f flow.FieldID, want *flow.Record)) {
	for i := range flow.NumFields {
		f := flow.FieldID(i)
		families := []bool{false}
		if flow.Fields[f].Kind == flow.KindAddress {
			families = []bool{false, true}
		}
		for _, v6 := range families {
			name := f.String()
			if v6 {
				name = flow.Fields[f].Name6
			}
			t.Run(name, func(t *testing.T) {
				var want flow.Record
				value(&want, f, v6)
				check(t, f, &want)
			})
		}
	}
}

func batchOf(r *flow.Record) *flow.Batch {
	b := flow.NewBatch(1)
	*b.Append() = *r
	return b
}

func TestIEtable(t *testing.T) {
	each(t, func(t *testing.T, f flow.FieldID, _ *flow.Record) {
		info := &flow.Fields[f]
		if _, ok := ipfix.LookupIE(flow.IEKey{Enterprise: info.Enterprise, Element: info.Element}); !ok {
			t.Errorf("IE %d/%d is not in core/ipfix's IE table", info.Enterprise, info.Element)
		}
		if got, ok := flow.FieldByName(info.Name); !ok || got != f {
			t.Errorf("FieldByName(%q) = %v, %v", info.Name, got, ok)
		}
	})
}

func TestIPFIX(t *testing.T) {
	each(t, func(t *testing.T, f flow.FieldID, want *flow.Record) {
		var msgs [][]byte
		enc := ipfix.NewEncoder(ipfix.EncoderOptions{})
		err := enc.Encode([]*flow.Record{want}, time.Unix(1_700_000_100, 0), func(m []byte) error {
			msgs = append(msgs, append([]byte(nil), m...))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
		b := flow.NewBatch(1)
		for _, m := range msgs {
			if _, err := dec.Decode(b, m, netip.MustParseAddrPort("127.0.0.1:4739")); err != nil {
				t.Fatal(err)
			}
		}
		if b.Len() != 1 {
			t.Fatalf("%d records decoded", b.Len())
		}
		if d := same(b.Records[0], want, f); d != "" {
			t.Errorf("encode then decode: %s", d)
		}
		if len(b.Records[0].Extra) != 0 {
			t.Errorf("decoded into Extra: %v", b.Records[0].Extra)
		}
	})
}

func TestABI(t *testing.T) {
	masks := map[string]abi.Mask{
		"blocks":  abi.All,
		"field":   abi.MaskOf(0),
		"columns": abi.MaskOf(abi.FlagColumns),
	}
	each(t, func(t *testing.T, f flow.FieldID, want *flow.Record) {
		for name, m := range masks {
			if name != "blocks" {
				m = abi.MaskOf(m.Flags, f)
			}
			buf := abi.AppendBatchMask(nil, batchOf(want), m)
			v, err := abi.ParseBatch(buf)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var d abi.Decoder
			var got flow.Record
			if err := d.Record(&v, 0, &got); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if s := same(&got, want, f); s != "" {
				t.Errorf("%s: %s", name, s)
			}
		}
		p, err := abi.ParsePacked(abi.NewPackedLayout(abi.MaskOf(0, f)).Append(nil, batchOf(want)), nil)
		if err != nil {
			t.Fatal(err)
		}
		var got flow.Record
		var st abi.Strings
		if err := p.Record(0, &got, &st); err != nil {
			t.Fatal(err)
		}
		if s := same(&got, want, f); s != "" {
			t.Errorf("packed: %s", s)
		}
	})
}

// TestDiffApply sets, changes and clears each field through Updates.Diff
// and CompactWriter.Diff, applied by abi.Apply.
func TestDiffApply(t *testing.T) {
	each(t, func(t *testing.T, f flow.FieldID, want *flow.Record) {
		var changed flow.Record
		value(&changed, f, false)
		if flow.Fields[f].Kind == flow.KindString {
			changed.SetString(f, "other")
		} else if flow.Fields[f].Kind != flow.KindAddress {
			changed.SetUint(f, want.Uint(f)^1)
		}
		steps := []struct {
			name          string
			before, after flow.Record
		}{
			{"set", flow.Record{}, *want},
			{"change", changed, *want},
			{"clear", *want, flow.Record{}},
		}
		var sc abi.Scratch
		for _, s := range steps {
			var u abi.Updates
			u.Diff(0, &s.before, &s.after)
			a := abi.Answer{Count: 1, Verdicts: abi.Verdicts(nil).KeepAll(1), Updates: u.Bytes(), UpdateCount: u.Len()}
			b := batchOf(&s.before)
			if _, err := abi.Apply(b, a.Append(nil), &sc); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if d := same(b.Records[0], &s.after, f); d != "" {
				t.Errorf("%s: Updates.Diff: %s", s.name, d)
			}
			var w abi.CompactWriter
			w.Reset()
			w.Diff(0, &s.before, &s.after, s.before.PresentSet())
			b = batchOf(&s.before)
			if _, err := abi.Apply(b, w.Append(nil, abi.StatusOK, 1, abi.Verdicts(nil).KeepAll(1), ""), &sc); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if d := same(b.Records[0], &s.after, f); d != "" {
				t.Errorf("%s: CompactWriter.Diff: %s", s.name, d)
			}
		}
	})
}

func TestJSON(t *testing.T) {
	each(t, func(t *testing.T, f flow.FieldID, want *flow.Record) {
		name := flow.Fields[f].Name
		if a := want.Addr(f); a.Is6() {
			name = flow.Fields[f].Name6
		}
		if js := string(jsonl.AppendRecord(nil, want, false)); !strings.Contains(js, `"`+name+`":`) {
			t.Errorf("%s not in %s", name, js)
		}
	})
}

// TestSDKs runs an enricher that sets each field, in both SDKs' host
// emulators, which encode, decode and apply as the hosts do.
func TestSDKs(t *testing.T) {
	var target *flow.Record
	var field flow.FieldID
	enrich := func(r *flow.Record) { r.CopyField(field, target) }
	rh, err := rpc.NewTestHost(rpc.Plugin{Name: "fields", Enrich: enrich}, nil)
	if err != nil {
		t.Fatal(err)
	}
	weir.RegisterEnricher(enrich)
	wh, err := wasmtest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	each(t, func(t *testing.T, f flow.FieldID, want *flow.Record) {
		target, field = want, f
		b := batchOf(&flow.Record{})
		if err := rh.Process(b); err != nil {
			t.Fatal(err)
		}
		if d := same(b.Records[0], want, f); d != "" {
			t.Errorf("sdk/rpc: %s", d)
		}
		b = batchOf(&flow.Record{})
		if _, err := wh.Process(b); err != nil {
			t.Fatal(err)
		}
		if d := same(b.Records[0], want, f); d != "" {
			t.Errorf("sdk/wasm: %s", d)
		}
	})
}
