package abi

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

// fullRecord fills every part of a record with values derived from seed.
func fullRecord(b *flow.Batch, seed uint64) *flow.Record {
	rng := rand.New(rand.NewPCG(seed, 7))
	r := b.Append()
	r.Exporter = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), uint16(rng.Uint32()))
	r.ObservationDomainID = rng.Uint32()
	for i := range flow.NumFields {
		f := flow.FieldID(i)
		switch flow.Fields[f].Kind {
		case flow.KindAddress:
			if rng.IntN(2) == 0 {
				r.SetAddr(f, netip.AddrFrom4([4]byte{10, byte(rng.Uint32()), byte(rng.Uint32()), byte(i)}))
			} else {
				var a [16]byte
				for j := range a {
					a[j] = byte(rng.Uint32())
				}
				r.SetAddr(f, netip.AddrFrom16(a))
			}
		case flow.KindString:
			if rng.IntN(4) != 0 {
				r.SetString(f, fmt.Sprintf("%s-%d", f, rng.IntN(5)))
			}
		default:
			width := flow.Fields[f].Width
			v := rng.Uint64()
			if width < 8 {
				v &= 1<<(8*width) - 1
			}
			if rng.IntN(5) != 0 {
				r.SetUint(f, v)
			}
		}
	}
	for j := range rng.IntN(4) {
		r.Extra = append(r.Extra, flow.Field{
			Enterprise: uint32(j * 9), Element: uint16(200 + j), Variable: j%2 == 1,
			Value: b.CopyBytes([]byte(fmt.Sprintf("v%d", rng.IntN(1000)))),
		})
	}
	return r
}

func fullBatch(n int) *flow.Batch {
	b := flow.NewBatch(n)
	for i := range n {
		fullRecord(b, uint64(i))
	}
	return b
}

// project returns what a record looks like after crossing with mask m.
func project(r *flow.Record, m Mask) flow.Record {
	var out flow.Record
	for i := range flow.NumFields {
		f := flow.FieldID(i)
		if !m.Fields.Has(f) {
			continue
		}
		out.CopyField(f, r)
		if r.Has(f) { // a decoded string carries its bit
			out.Present.Add(f)
		}
	}
	if m.Flags&FlagExporter != 0 {
		out.Exporter, out.ObservationDomainID = r.Exporter, r.ObservationDomainID
	}
	if m.Flags&FlagExtra != 0 {
		out.Extra = append(out.Extra, r.Extra...)
	}
	return out
}

func equalRecords(t *testing.T, i int, got, want *flow.Record) {
	t.Helper()
	g, w := *got, *want
	if len(g.Extra) == 0 {
		g.Extra = nil
	}
	if len(w.Extra) == 0 {
		w.Extra = nil
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("record %d:\n got %+v\nwant %+v", i, g, w)
	}
}

func TestLayoutMatchesFields(t *testing.T) {
	consts := map[flow.FieldID]int{
		flow.SourceAddress: oSourceAddress, flow.DestinationAddress: oDestinationAddress,
		flow.ProtocolIdentifier: oProtocolIdentifier, flow.FlowStart: oFlowStart,
		flow.OriginalExporterAddress: oOriginalExporterAddress, flow.SourcePodNamespace: oSourcePodNamespace,
		flow.DestinationClusterIP: oDestinationClusterIP, flow.TCPState: oTCPState,
		flow.FlowType: oFlowType, flow.DestinationPodLabels: oDestinationPodLabels,
		flow.EgressNetworkPolicyType: oEgressNetworkPolicyType, flow.DestinationServicePort: oDestinationServicePort,
	}
	for f, off := range consts {
		if int(fieldOffset[f]) != off {
			t.Errorf("%s: constant offset %d, flow.Fields order gives %d", f, off, fieldOffset[f])
		}
	}
	if RecordSize != 360 {
		t.Errorf("RecordSize = %d, docs/abi.md says 360", RecordSize)
	}
}

func TestRoundTrip(t *testing.T) {
	masks := map[string]Mask{
		"all":          All,
		"protocol":     MaskOf(0, flow.ProtocolIdentifier),
		"addresses":    MaskOf(FlagExporter, flow.SourceAddress, flow.DestinationAddress, flow.DestinationClusterIP),
		"strings":      MaskOf(FlagExtra, flow.SourcePodName, flow.DestinationPodLabels, flow.TCPState),
		"everything-1": func() Mask { m := All; m.Fields.Remove(flow.FlowEnd); return m }(),
	}
	for name, m := range masks {
		m.Flags |= FlagColumns
		masks["columns/"+name] = m
	}
	for name, m := range masks {
		t.Run(name, func(t *testing.T) {
			src := fullBatch(100)
			buf := AppendBatchMask([]byte("prefix"), src, m)
			buf = buf[len("prefix"):]
			v, err := ParseBatch(buf)
			if err != nil {
				t.Fatal(err)
			}
			if v.Len() != src.Len() || v.Mask() != m {
				t.Fatalf("view: %d records, mask %+v; want %d, %+v", v.Len(), v.Mask(), src.Len(), m)
			}
			var d Decoder
			got := flow.NewBatch(0)
			if err := d.Decode(buf, got); err != nil {
				t.Fatal(err)
			}
			for i, r := range src.Records {
				want := project(r, m)
				equalRecords(t, i, got.Records[i], &want)
			}
		})
	}
}

func TestRoundTripMixed(t *testing.T) {
	src := plugintest.MixedBatch(64)
	var d Decoder
	got := flow.NewBatch(0)
	if err := d.Decode(AppendBatch(nil, src), got); err != nil {
		t.Fatal(err)
	}
	for i, r := range src.Records {
		equalRecords(t, i, got.Records[i], r)
	}
}

func TestAppendBatchZeroAlloc(t *testing.T) {
	b := fullBatch(256)
	buf := AppendBatch(nil, b)
	allocs := testing.AllocsPerRun(20, func() { buf = AppendBatch(buf[:0], b) })
	if allocs != 0 {
		t.Errorf("AppendBatch with a reused buffer: %v allocations, want 0", allocs)
	}
	m := MaskOf(0, flow.ProtocolIdentifier)
	allocs = testing.AllocsPerRun(20, func() { buf = AppendBatchMask(buf[:0], b, m) })
	if allocs != 0 {
		t.Errorf("AppendBatchMask with a reused buffer: %v allocations, want 0", allocs)
	}
}

func TestParseBatchErrors(t *testing.T) {
	good := AppendBatch(nil, fullBatch(3))
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string]struct {
		buf     []byte
		version bool
	}{
		"empty":       {buf: nil},
		"short":       {buf: good[:20]},
		"magic":       {buf: mut(func(b []byte) []byte { b[0] = 'X'; return b })},
		"version":     {buf: mut(func(b []byte) []byte { le.PutUint16(b[hVersion:], 9); return b }), version: true},
		"count":       {buf: mut(func(b []byte) []byte { le.PutUint32(b[hCount:], 1<<30); return b })},
		"data length": {buf: mut(func(b []byte) []byte { le.PutUint32(b[hDataLen:], 1<<30); return b })},
		"truncated":   {buf: good[:len(good)-1]},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseBatch(c.buf)
			var ve *VersionError
			switch {
			case c.version && !errors.As(err, &ve):
				t.Fatalf("err = %v, want *VersionError", err)
			case !c.version && !errors.Is(err, ErrMalformed):
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestVersionErrorNamesBothVersions(t *testing.T) {
	err := CheckVersion(2)
	if err == nil || err.Error() != "abi version 2 is not supported: this build of weir supports abi version 1" {
		t.Fatalf("CheckVersion(2) = %v", err)
	}
}

func TestDecodeBadString(t *testing.T) {
	b := flow.NewBatch(1)
	b.Append().SetString(flow.SourcePodName, "web")
	buf := AppendBatch(nil, b)
	le.PutUint32(buf[BatchHeaderSize+oSourcePodName:], 1000)
	var d Decoder
	err := d.Decode(buf, flow.NewBatch(1))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}

func TestVerdicts(t *testing.T) {
	v := Verdicts(nil).KeepAll(70)
	if len(v) != 2 || v[1] != 1<<6-1 {
		t.Fatalf("KeepAll(70) = %x", v)
	}
	v.Set(3, false)
	v.Set(69, false)
	if v.Keep(3) || v.Keep(69) || !v.Keep(4) || v.Keep(70) {
		t.Fatalf("verdicts %x", v)
	}
	b := plugintest.MixedBatch(70)
	if removed := b.RetainMask(v); removed != 2 || b.Len() != 68 {
		t.Fatalf("RetainMask removed %d, kept %d", removed, b.Len())
	}
}

func TestAnswerRoundTrip(t *testing.T) {
	var u Updates
	u.SetUint(1, flow.FlowType, 3)
	u.SetString(0, flow.SourcePodName, "web-0")
	in := Answer{Status: StatusOK, Count: 130, Verdicts: Verdicts(nil).KeepAll(130), Updates: u.Bytes(), UpdateCount: u.Len()}
	in.Verdicts.Set(129, false)
	buf := in.Append(nil)
	var out Answer
	if err := DecodeAnswer(buf, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v\nwant %+v", out, in)
	}
	// A second decode reuses the verdicts.
	allocs := testing.AllocsPerRun(10, func() { _ = DecodeAnswer(buf, &out) })
	if allocs != 0 {
		t.Errorf("DecodeAnswer: %v allocations, want 0", allocs)
	}
}

func TestAnswerErrors(t *testing.T) {
	good := (&Answer{Count: 10, Verdicts: Verdicts(nil).KeepAll(10)}).Append(nil)
	cases := map[string]func(b []byte){
		"verdict words": func(b []byte) { le.PutUint32(b[aVerdictLen:], 5) },
		"count":         func(b []byte) { le.PutUint32(b[aCount:], 1000) },
		"updates":       func(b []byte) { le.PutUint32(b[aUpdatesLen:], 1000) },
		"update count":  func(b []byte) { le.PutUint32(b[aUpdateCount:], 1) },
		"message":       func(b []byte) { le.PutUint32(b[aMessageLen:], 1) },
		"magic":         func(b []byte) { b[3] = 0 },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			f(b)
			var a Answer
			if err := DecodeAnswer(b, &a); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestManifestRoundTrip(t *testing.T) {
	in := Manifest{Version: Version, Status: StatusError, Message: "protocols[0]: \"foo\" is not a protocol", Kind: KindFilter, Reads: MaskOf(0, flow.ProtocolIdentifier)}
	out, err := DecodeManifest(in.Append(nil))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v; want %+v", out, err, in)
	}
	in.Version = 2
	_, err = DecodeManifest(in.Append(nil))
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Got != 2 {
		t.Fatalf("version 2: err = %v", err)
	}
}

func TestDiffApply(t *testing.T) {
	edits := map[string]func(r *flow.Record){
		"none":         func(r *flow.Record) {},
		"set string":   func(r *flow.Record) { r.SetString(flow.SourcePodLabels, `{"app":"web"}`) },
		"direct str":   func(r *flow.Record) { r.DestinationPodName = "db-1" },
		"clear string": func(r *flow.Record) { r.Clear(flow.SourcePodName); r.Clear(flow.TCPState) },
		"set uint":     func(r *flow.Record) { r.SetUint(flow.FlowType, 2); r.SetUint(flow.FlowStart, 12345) },
		"clear uint":   func(r *flow.Record) { r.Clear(flow.ProtocolIdentifier) },
		"set addr":     func(r *flow.Record) { r.SetAddr(flow.DestinationClusterIP, netip.MustParseAddr("fd00::9")) },
		"clear addr":   func(r *flow.Record) { r.SetAddr(flow.SourceAddress, netip.Addr{}) },
		"add extra": func(r *flow.Record) {
			r.Extra = append(r.Extra, flow.Field{Enterprise: 99, Element: 1, Value: []byte("x")})
		},
		"change extra": func(r *flow.Record) {
			if len(r.Extra) > 0 {
				r.Extra[0].Value = []byte("changed")
			}
		},
		"drop extras": func(r *flow.Record) { r.Extra = r.Extra[:0] },
		"duplicate extras": func(r *flow.Record) {
			r.Extra = append(r.Extra, flow.Field{Enterprise: 1, Element: 2, Value: []byte("a")}, flow.Field{Enterprise: 1, Element: 2, Value: []byte("b")})
		},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			host := fullBatch(20)
			guest := fullBatch(20)
			var u Updates
			for i, r := range guest.Records {
				before := *r
				before.Extra = append([]flow.Field(nil), r.Extra...)
				if i%3 != 0 {
					edit(r)
				}
				u.Diff(i, &before, r)
			}
			if name == "none" && u.Len() != 0 {
				t.Fatalf("no edit produced %d updates", u.Len())
			}
			if err := applyList(host, &u); err != nil {
				t.Fatal(err)
			}
			for i := range host.Records {
				h, g := *host.Records[i], *guest.Records[i]
				// Compare as exported: presence and values of present fields.
				for f := range flow.NumFields {
					id := flow.FieldID(f)
					if h.Has(id) != g.Has(id) || h.Uint(id) != g.Uint(id) ||
						h.String(id) != g.String(id) || h.Addr(id) != g.Addr(id) {
						t.Errorf("record %d field %s: host %v/%v/%q/%v guest %v/%v/%q/%v", i, id,
							h.Has(id), h.Uint(id), h.String(id), h.Addr(id), g.Has(id), g.Uint(id), g.String(id), g.Addr(id))
					}
				}
				if !sameExtraSet(h.Extra, g.Extra) {
					t.Errorf("record %d extras: host %v guest %v", i, h.Extra, g.Extra)
				}
			}
		})
	}
}

// sameExtraSet compares Extra IEs per key, in order within a key.
func sameExtraSet(a, b []flow.Field) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !sameKeyed(a, b, f.Key()) {
			return false
		}
	}
	return true
}

func TestApplyRejectsUpdates(t *testing.T) {
	cases := map[string]func(u *Updates){
		"record out of range": func(u *Updates) { u.SetUint(5, flow.FlowType, 1) },
		"uint on string":      func(u *Updates) { u.SetUint(0, flow.SourcePodName, 1) },
		"string on uint":      func(u *Updates) { u.SetString(0, flow.FlowType, "x") },
		"unknown field":       func(u *Updates) { u.SetUint(0, flow.FieldID(200), 1) },
		"unknown op":          func(u *Updates) { u.add(0, Op(42), 0, 0, 0, 0, nil) },
		"bad address":         func(u *Updates) { u.add(0, OpSetAddr, uint8(flow.SourceAddress), 0, 0, 0, []byte{1, 2, 3}) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			b := fullBatch(2)
			before := *b.Records[0]
			var u Updates
			u.SetString(0, flow.SourcePodName, "first") // valid, must not be applied
			f(&u)
			if err := applyList(b, &u); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if b.Records[0].SourcePodName != before.SourcePodName {
				t.Fatal("a rejected update list was partly applied")
			}
		})
	}
}

func TestApply(t *testing.T) {
	b := plugintest.MixedBatch(10)
	var u Updates
	u.SetString(9, flow.SourcePodName, "kept")
	a := Answer{Count: 10, Verdicts: Verdicts(nil).KeepAll(10), Updates: u.Bytes(), UpdateCount: u.Len()}
	a.Verdicts.Set(0, false)
	var sc Scratch
	removed, err := Apply(b, a.Append(nil), &sc)
	if err != nil || removed != 1 || b.Len() != 9 || b.Records[8].SourcePodName != "kept" {
		t.Fatalf("Apply: removed %d, err %v, len %d", removed, err, b.Len())
	}
	a = Answer{Status: StatusError, Message: "boom"}
	_, err = Apply(b, a.Append(nil), &sc)
	var pe *PluginError
	if !errors.As(err, &pe) || pe.Message != "boom" {
		t.Fatalf("status error: %v", err)
	}
}

// TestHeaderLayout checks header against the documented offsets.
func TestHeaderLayout(t *testing.T) {
	var h header
	offsets := map[string][2]uintptr{
		"Magic": {unsafe.Offsetof(h.Magic), hMagic}, "Version": {unsafe.Offsetof(h.Version), hVersion},
		"HeaderSize": {unsafe.Offsetof(h.HeaderSize), hHeaderSize}, "Count": {unsafe.Offsetof(h.Count), hCount},
		"RecordSize": {unsafe.Offsetof(h.RecordSize), hRecordSize}, "RecordsOff": {unsafe.Offsetof(h.RecordsOff), hRecordsOff},
		"DataOff": {unsafe.Offsetof(h.DataOff), hDataOff}, "DataLen": {unsafe.Offsetof(h.DataLen), hDataLen},
		"Flags": {unsafe.Offsetof(h.Flags), hFlags}, "Fields": {unsafe.Offsetof(h.Fields), hFields},
	}
	for name, o := range offsets {
		if o[0] != o[1] {
			t.Errorf("header.%s at %d, layout says %d", name, o[0], o[1])
		}
	}
	if unsafe.Sizeof(h) != BatchHeaderSize {
		t.Errorf("header is %d bytes, want %d", unsafe.Sizeof(h), BatchHeaderSize)
	}
	buf := AppendBatchMask(nil, plugintest.MixedBatch(3), MaskOf(FlagColumns, flow.ProtocolIdentifier))
	if h := readHeader(buf); h.Magic != MagicBatch || h.Count != 3 || h.Flags != FlagColumns || !h.Fields.Has(flow.ProtocolIdentifier) {
		t.Errorf("readHeader = %+v", h)
	}
}
