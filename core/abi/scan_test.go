package abi

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

// TestFilter checks that the filter loop decodes the records as Record
// does and sets the verdicts keep returns, in both layouts, on the fast
// path (scalar fields in columns) and the general one.
func TestFilter(t *testing.T) {
	masks := map[string]Mask{
		"blocks":          MaskOf(0, flow.ProtocolIdentifier, flow.SourceTransportPort),
		"columns/scalar":  MaskOf(FlagColumns, flow.ProtocolIdentifier, flow.SourceTransportPort, flow.DestinationTransportPort, flow.IngressInterface, flow.FlowEnd, flow.OctetDeltaCount),
		"columns/one":     MaskOf(FlagColumns, flow.ProtocolIdentifier),
		"columns/nopres":  MaskOf(FlagColumns|FlagNoPresence, flow.ProtocolIdentifier, flow.SourceTransportPort, flow.FlowEnd),
		"columns/general": MaskOf(FlagColumns|FlagExporter, flow.ProtocolIdentifier, flow.SourceAddress, flow.SourcePodName),
	}
	for name, m := range masks {
		for _, n := range []int{1, 63, 64, 65, 200} {
			t.Run(fmt.Sprintf("%s/n=%d", name, n), func(t *testing.T) {
				src := fullBatch(n)
				for i, r := range src.Records {
					r.ProtocolIdentifier = uint8(i * 7)
					r.Present.Add(flow.ProtocolIdentifier)
					if i%3 == 0 {
						r.Present.Remove(flow.SourceTransportPort)
						r.SourceTransportPort = 0
					}
				}
				buf := AppendBatchMask(nil, src, m)
				v, err := ParseBatch(buf)
				if err != nil {
					t.Fatal(err)
				}
				var d, d2 Decoder
				var r flow.Record
				i := 0
				verdicts := Verdicts(nil).KeepAll(n)
				err = d.Filter(&v, &r, func(r *flow.Record) bool {
					var want flow.Record
					if err := d2.Record(&v, i, &want); err != nil {
						t.Fatal(err)
					}
					got := project(r, m)
					equalRecords(t, i, &got, &want)
					i++
					return r.ProtocolIdentifier%2 == 0
				}, verdicts)
				if err != nil {
					t.Fatal(err)
				}
				if i != n {
					t.Fatalf("keep called %d times for %d records", i, n)
				}
				for j := range n {
					if want := src.Records[j].ProtocolIdentifier%2 == 0; verdicts.Keep(j) != want {
						t.Fatalf("record %d: verdict %v, want %v", j, verdicts.Keep(j), want)
					}
				}
			})
		}
	}
}

func TestColumn(t *testing.T) {
	src := plugintest.MixedBatch(10)
	m := MaskOf(FlagColumns, flow.ProtocolIdentifier, flow.DestinationTransportPort, flow.FlowEnd)
	buf := AppendBatchMask(nil, src, m)
	if got, want := len(buf)-BatchHeaderSize, ColumnsSize(m, 10); got < want {
		t.Fatalf("buffer holds %d bytes of columns, ColumnsSize says %d", got, want)
	}
	v, err := ParseBatch(buf)
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	protos := d.Column(&v, flow.ProtocolIdentifier)
	ports := d.Column(&v, flow.DestinationTransportPort)
	pres := d.PresenceColumn(&v)
	if len(protos) != 10 || len(ports) != 20 || len(pres) != 160 {
		t.Fatalf("column sizes %d %d %d", len(protos), len(ports), len(pres))
	}
	for i, r := range src.Records {
		if protos[i] != r.ProtocolIdentifier || le.Uint16(ports[2*i:]) != r.DestinationTransportPort {
			t.Errorf("record %d: columns %d %d, record %d %d", i, protos[i], le.Uint16(ports[2*i:]), r.ProtocolIdentifier, r.DestinationTransportPort)
		}
		if got := (flow.FieldSet{le.Uint64(pres[16*i:]), le.Uint64(pres[16*i+8:])}); got != project(r, m).Present {
			t.Errorf("record %d: presence %v", i, got)
		}
	}
	if d.Column(&v, flow.SourceTransportPort) != nil {
		t.Error("a column outside the mask is not nil")
	}
	plain, _ := ParseBatch(AppendBatchMask(nil, src, MaskOf(0, flow.ProtocolIdentifier)))
	if plain.Columnar() || d.Column(&plain, flow.ProtocolIdentifier) != nil {
		t.Error("record blocks give a column")
	}
	// Columns start 8-byte aligned, whatever the widths before them.
	for _, f := range []flow.FieldID{flow.ProtocolIdentifier, flow.DestinationTransportPort, flow.FlowEnd} {
		off := uintptr(unsafe.Pointer(&d.Column(&v, f)[0])) - uintptr(unsafe.Pointer(&buf[0]))
		if off%8 != 0 {
			t.Errorf("%s column at offset %d", f, off)
		}
	}
}

func TestParseColumnsErrors(t *testing.T) {
	good := AppendBatchMask(nil, plugintest.MixedBatch(4), MaskOf(FlagColumns, flow.ProtocolIdentifier, flow.FlowEnd))
	for name, edit := range map[string]func([]byte){
		"columns overlap data": func(b []byte) { le.PutUint32(b[hDataOff:], BatchHeaderSize+8) },
		"unaligned columns":    func(b []byte) { le.PutUint32(b[hRecordsOff:], BatchHeaderSize+4) },
		"count too large":      func(b []byte) { le.PutUint32(b[hCount:], 1<<30) },
	} {
		t.Run(name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			edit(b)
			if _, err := ParseBatch(b); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestNoPresence checks the columnar layout without the presence column:
// 16 bytes a record fewer, every field of the mask reads as present and
// an absent one as zero.
func TestNoPresence(t *testing.T) {
	src := plugintest.MixedBatch(70)
	src.Records[3].Present.Remove(flow.DestinationTransportPort)
	src.Records[3].DestinationTransportPort = 0
	fields := []flow.FieldID{flow.ProtocolIdentifier, flow.DestinationTransportPort, flow.FlowEnd, flow.SourcePodName}
	with, without := MaskOf(FlagColumns, fields...), MaskOf(FlagColumns|FlagNoPresence, fields...)
	if got, want := ColumnsSize(with, 70)-ColumnsSize(without, 70), 70*16; got != want {
		t.Fatalf("presence column costs %d bytes, want %d", got, want)
	}
	buf := AppendBatchMask(nil, src, without)
	v, err := ParseBatch(buf)
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	if d.PresenceColumn(&v) != nil {
		t.Error("a presence column without one")
	}
	got := flow.NewBatch(0)
	if err := d.Decode(buf, got); err != nil {
		t.Fatal(err)
	}
	for i, r := range src.Records {
		want := project(r, with)
		want.Present = without.Fields
		equalRecords(t, i, got.Records[i], &want)
	}
}

// TestDecoderParse checks that Parse reuses the last view only for a
// batch of the same shape, and still refuses a bad one after a good one.
func TestDecoderParse(t *testing.T) {
	m := MaskOf(FlagColumns, flow.ProtocolIdentifier, flow.SourcePodName)
	var d Decoder
	for k, n := range []int{5, 5, 7} {
		src := plugintest.MixedBatch(n)
		src.Records[n-1].SourcePodName = strings.Repeat("x", n)
		buf := AppendBatchMask(nil, src, m)
		if d.Same(buf) {
			t.Errorf("batch %d: same as a refused one", k)
		}
		if _, err := d.Parse(buf); err != nil {
			t.Fatal(err)
		}
		if !d.Same(buf) {
			t.Errorf("batch %d: not the same as itself", k)
		}
		// The second time, from the cache.
		v, err := d.Parse(buf)
		if err != nil {
			t.Fatal(err)
		}
		var r flow.Record
		if err := d.Record(v, n-1, &r); err != nil || r.SourcePodName != src.Records[n-1].SourcePodName || v.Len() != n {
			t.Fatalf("n=%d: record %+v, %v", n, r.SourcePodName, err)
		}
		bad := append([]byte(nil), buf...)
		bad[0] ^= 0xff
		if _, err := d.Parse(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("n=%d: bad magic after a good batch: %v", n, err)
		}
	}
}

// TestEncoderReuse checks that an Encoder gives AppendBatchMask's bytes
// whatever masks and sizes came before.
func TestEncoderReuse(t *testing.T) {
	masks := []Mask{
		MaskOf(FlagColumns|FlagNoPresence, flow.ProtocolIdentifier),
		MaskOf(FlagColumns, flow.ProtocolIdentifier, flow.SourceTransportPort),
		MaskOf(0, flow.ProtocolIdentifier, flow.SourcePodName),
		All,
	}
	var e Encoder
	for k := range 12 {
		m, n := masks[k%len(masks)], []int{3, 64, 3}[k%3]
		b := plugintest.MixedBatch(n)
		if got, want := e.Append(nil, b, m), AppendBatchMask(nil, b, m); !slices.Equal(got, want) {
			t.Fatalf("step %d (mask %+v, %d records): encodings differ", k, m, n)
		}
	}
}
