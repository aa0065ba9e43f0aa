package abi

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

var layoutMasks = map[string]Mask{
	"addresses":          MaskOf(0, flow.SourceAddress, flow.DestinationAddress),
	"labels":             MaskOf(0, flow.SourceAddress, flow.DestinationAddress, flow.SourcePodLabels, flow.DestinationPodLabels),
	"ports and exporter": MaskOf(FlagExporter, flow.SourceTransportPort, flow.DestinationTransportPort, flow.ProtocolIdentifier, flow.FlowStart),
	"strings and extra":  MaskOf(FlagExtra, flow.DestinationPodName, flow.SourcePodLabels, flow.OctetDeltaCount),
	"nothing":            MaskOf(0),
	"all":                All,
}

// TestLayoutAppend checks that Packed.Record decodes from Layout.Append's
// bytes what the ABI decoder decodes from AppendBatchMask's, in order
// and out of order, for IPv4, IPv6 and mixed batches.
func TestLayoutAppend(t *testing.T) {
	mixed := testBatch()
	mixed.Records[1].Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
	mixed.Records[1].ObservationDomainID = 7
	mixed.Records[2].Present.Add(flow.SourcePodName)        // present but empty: kept as the ABI keeps it
	mixed.Records[3].Present.Add(flow.DestinationClusterIP) // present but invalid
	v4 := flow.NewBatch(0)
	for _, r := range mixed.Records {
		if r.SourceAddress.Is4() {
			v4.Append().CopyFrom(r, v4)
		}
	}
	for name, m := range layoutMasks {
		for bname, b := range map[string]*flow.Batch{"mixed": mixed, "ipv4": v4, "empty": flow.NewBatch(0)} {
			t.Run(name+"/"+bname, func(t *testing.T) {
				ref := decodeAll(t, AppendBatchMask(nil, b, m))
				l := NewPackedLayout(m)
				got := l.Append([]byte("x"), b)
				if got[0] != 'x' {
					t.Fatal("Append did not append")
				}
				p, err := ParsePacked(got[1:], nil)
				if err != nil {
					t.Fatal(err)
				}
				if p.Len() != b.Len() {
					t.Fatalf("%d records, want %d", p.Len(), b.Len())
				}
				var st Strings
				check := func(i int) {
					var r flow.Record
					if err := p.Record(i, &r, &st); err != nil {
						t.Fatal(err)
					}
					if !sameRecord(&r, ref.Records[i]) {
						t.Errorf("record %d:\n got %+v\nwant %+v", i, r, *ref.Records[i])
					}
				}
				for i := range p.Len() {
					check(i)
				}
				for i := p.Len() - 1; i >= 0; i -= 2 {
					check(i)
				}
				p, _ = ParsePacked(got[1:], nil)
				for i := 1; i < p.Len(); i += 3 { // skipping ahead
					check(i)
				}
			})
		}
	}
}

// TestPackedSize pins the bytes a record costs: the point of the format.
func TestPackedSize(t *testing.T) {
	l := NewPackedLayout(layoutMasks["labels"])
	b := flow.NewBatch(0)
	plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, 1234, 80, 1, 100)
	plugintest.Record(b, "fd00::1", "fd00::2", 6, 1234, 80, 1, 100)
	b.Records[1].SetString(flow.SourcePodLabels, `{"app":"web"}`)
	// 2 presence bytes, 2 addresses and 2 string ends of 4 bytes; the
	// tail holds the IPv6 addresses and the label.
	if l.size != 18 {
		t.Errorf("%d bytes per record, want 18", l.size)
	}
	if got, want := len(l.Append(nil, b)), PackedHeaderSize+2*18+2*16+len(`{"app":"web"}`); got != want {
		t.Errorf("batch of %d bytes, want %d", got, want)
	}
}

func TestParsePackedMalformed(t *testing.T) {
	m := MaskOf(FlagExtra, flow.SourceAddress, flow.SourcePodLabels)
	l := NewPackedLayout(m)
	good := l.Append(nil, testBatch())
	if _, err := ParsePacked(good, nil); err != nil {
		t.Fatal(err)
	}
	edit := func(off int, v uint32) []byte {
		b := append([]byte(nil), good...)
		le.PutUint32(b[off:], v)
		return b
	}
	cases := map[string][]byte{
		"empty":        nil,
		"magic":        append([]byte("XXXX"), good[4:]...),
		"short":        good[:30],
		"truncated":    good[:len(good)-1],
		"longer":       append(append([]byte(nil), good...), 0),
		"record size":  edit(pRecordSize, uint32(l.size+1)),
		"flags":        edit(pFlags, 1<<30),
		"unknown bits": edit(pFields+12, 1<<31),
		"header size":  edit(pHeaderSize, 8),
		"tail":         edit(pTailLen, 1<<31),
	}
	for name, buf := range cases {
		if _, err := ParsePacked(buf, l); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// A bad tail end fails the record, not the process.
	str := PackedHeaderSize + l.items[1].off // record 0's string end
	addr := PackedHeaderSize + l.items[0].off
	for name, bad := range map[string][]byte{
		"string past the tail": edit(str, 1<<20),
		"IPv6 of 3 bytes":      edit(addr, 3),
	} {
		if name == "IPv6 of 3 bytes" {
			bad[PackedHeaderSize] |= 1 // present, in the tail
			bad[PackedHeaderSize+1] |= 1
		}
		p, err := ParsePacked(bad, l)
		if err != nil {
			t.Fatal(err)
		}
		var st Strings
		if err := p.Record(0, new(flow.Record), &st); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzParsePacked(f *testing.F) {
	for _, m := range layoutMasks {
		f.Add(NewPackedLayout(m).Append(nil, testBatch()))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		p, err := ParsePacked(buf, nil)
		if err != nil || p.Len() > 1<<16 {
			// A large count of empty records is valid; decoding it all
			// would only slow the fuzzer.
			return
		}
		var st Strings
		var r flow.Record
		for i := range p.Len() {
			_ = p.Record(i, &r, &st)
		}
		for i := p.Len() - 1; i >= 0; i -= 3 {
			_ = p.Record(i, &r, &st)
		}
	})
}

// TestApplyAnswer checks Apply against the reference (refApply) on good
// and bad answers.
func TestApplyAnswer(t *testing.T) {
	var u Updates
	u.SetString(0, flow.SourcePodLabels, `{"a":"b"}`)
	u.SetString(2, flow.SourcePodLabels, `{"a":"b"}`)
	u.SetUint(1, flow.OctetDeltaCount, 77)
	u.SetAddr(3, flow.DestinationAddress, netip.MustParseAddr("fd00::9"))
	u.SetAddr(4, flow.SourceAddress, netip.MustParseAddr("10.9.9.9"))
	u.Clear(5, flow.DestinationPodName)
	u.SetExtra(6, flow.Field{Enterprise: 9, Element: 77, Value: []byte{7}})
	u.AddExtra(7, flow.Field{Enterprise: 9, Element: 78, Variable: true, Value: []byte{8, 8}})
	u.DeleteExtra(8, flow.IEKey{Enterprise: 9, Element: 77})
	answer := func(mut func(a *Answer)) []byte {
		a := Answer{Count: 9, Verdicts: Verdicts(nil).KeepAll(9), Updates: u.Bytes(), UpdateCount: u.Len()}
		if mut != nil {
			mut(&a)
		}
		return a.Append(nil)
	}
	cases := map[string][]byte{
		"enrich":        answer(nil),
		"filter":        answer(func(a *Answer) { a.Verdicts[0] = 0b101010101 }),
		"drop all":      answer(func(a *Answer) { a.Verdicts[0] = 0 }),
		"plugin error":  answer(func(a *Answer) { a.Status, a.Message = StatusError, "no" }),
		"panic":         answer(func(a *Answer) { a.Status, a.Message = StatusPanic, "boom" }),
		"count":         answer(func(a *Answer) { a.Count, a.Verdicts = 8, a.Verdicts.KeepAll(8) }),
		"update count":  answer(func(a *Answer) { a.UpdateCount++ }),
		"truncated":     answer(func(a *Answer) { a.Updates = a.Updates[:len(a.Updates)-1] }),
		"bad record":    badUpdate(answer(nil), uRecord, 200),
		"bad op":        badUpdate(answer(nil), uOp, 99),
		"bad field":     badUpdate(answer(nil), uField, 200),
		"wrong kind":    badUpdate(answer(nil), uField, byte(flow.OctetDeltaCount)),
		"short":         answer(nil)[:20],
		"magic":         append([]byte("XXXX"), answer(nil)[4:]...),
		"version":       setByte(answer(nil), aVersion, 9),
		"no updates":    (&Answer{Count: 9, Verdicts: Verdicts(nil).KeepAll(9)}).Append(nil),
		"verdict words": answer(func(a *Answer) { a.Count = 200 }),
	}
	for name, buf := range cases {
		t.Run(name, func(t *testing.T) {
			want, got := testBatch(), testBatch()
			wantN, wantErr := refApply(want, buf)
			var sc Scratch
			gotN, gotErr := Apply(got, buf, &sc)
			if (gotErr == nil) != (wantErr == nil) || gotN != wantN {
				t.Fatalf("Apply = %d, %v; reference = %d, %v", gotN, gotErr, wantN, wantErr)
			}
			if wantErr != nil {
				var pe *PluginError
				if errors.As(wantErr, &pe) != errors.As(gotErr, new(*PluginError)) {
					t.Errorf("error kinds differ: %v vs %v", gotErr, wantErr)
				}
				if !errors.As(wantErr, &pe) && !errors.Is(gotErr, ErrMalformed) && !errors.As(gotErr, new(*VersionError)) {
					t.Errorf("error %v does not wrap ErrMalformed", gotErr)
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
}

// badUpdate sets byte off of the first update entry to v.
func badUpdate(buf []byte, off int, v byte) []byte {
	return setByte(buf, int(le.Uint32(buf[aUpdatesOff:]))+off, v)
}

func setByte(buf []byte, off int, v byte) []byte {
	buf = append([]byte(nil), buf...)
	buf[off] = v
	return buf
}

func TestApplyAnswerInterns(t *testing.T) {
	var u Updates
	for i := range 9 {
		u.SetString(i, flow.SourcePodLabels, `{"app":"web"}`)
	}
	buf := (&Answer{Count: 9, Verdicts: Verdicts(nil).KeepAll(9), Updates: u.Bytes(), UpdateCount: u.Len()}).Append(nil)
	applyWithoutAllocs(t, testBatch(), buf)
}
