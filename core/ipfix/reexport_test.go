package ipfix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

var reexportTime = time.Unix(1_700_000_300, 0)

// rawBatch makes a raw record of each message from exporter, stamped as
// the proxy processor stamps records when stamp is set.
func rawBatch(exporter netip.AddrPort, stamp bool, msgs ...[]byte) *flow.Batch {
	b := flow.NewBatch(0)
	for _, m := range msgs {
		r := AppendRaw(b, m, exporter, reexportTime)
		if stamp {
			r.OriginalExporterAddress = exporter.Addr().Unmap()
			r.Present.Add(flow.OriginalExporterAddress)
			r.OriginalObservationDomainID = r.ObservationDomainID
			r.Present.Add(flow.OriginalObservationDomainID)
		}
	}
	return b
}

// reexport re-exports msgs with enc and returns its messages.
func reexport(t testing.TB, enc *Encoder, exporter netip.AddrPort, stamp bool, msgs ...[]byte) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	err := enc.Encode(rawBatch(exporter, stamp, msgs...).Records, reexportTime, func(m []byte) error {
		out = append(out, bytes.Clone(m))
		return nil
	})
	return out, err
}

// decodeExpected decodes msgs as source.ipfix would and stamps the records
// as the proxy processor would.
func decodeExpected(t *testing.T, exporter netip.AddrPort, stamp bool, msgs ...[]byte) *flow.Batch {
	t.Helper()
	d := NewDecoder(DecoderOptions{})
	b := flow.NewBatch(0)
	for _, m := range msgs {
		if _, err := d.Decode(b, m, exporter); err != nil {
			t.Fatalf("decode input: %v", err)
		}
	}
	if stamp {
		for _, r := range b.Records {
			if r.Present.Has(flow.OriginalExporterAddress) {
				continue
			}
			r.OriginalExporterAddress = exporter.Addr().Unmap()
			r.Present.Add(flow.OriginalExporterAddress)
			r.OriginalObservationDomainID = r.ObservationDomainID
			r.Present.Add(flow.OriginalObservationDomainID)
		}
	}
	return b
}

// decodeOutput decodes the re-exporter's messages and checks their headers:
// the encoder's observation domain, size bound, and sequence numbers that
// count the data records before each message (RFC 7011 §3.1).
func decodeOutput(t *testing.T, msgs [][]byte, domain uint32, maxSize int) *flow.Batch {
	t.Helper()
	d := NewDecoder(DecoderOptions{})
	b := flow.NewBatch(0)
	seq := uint32(0)
	for i, m := range msgs {
		if len(m) > maxSize {
			t.Errorf("message %d: %d bytes, more than %d", i, len(m), maxSize)
		}
		if got := binary.BigEndian.Uint32(m[12:]); got != domain {
			t.Errorf("message %d: domain %d, want %d", i, got, domain)
		}
		if got := binary.BigEndian.Uint32(m[8:]); got != seq {
			t.Errorf("message %d: sequence %d, want %d", i, got, seq)
		}
		n, err := d.Decode(b, m, netip.MustParseAddrPort("192.0.2.9:4739"))
		if err != nil {
			t.Fatalf("decode message %d: %v", i, err)
		}
		seq += uint32(n)
	}
	return b
}

// recordKey formats what a record exports (as assertSameRecord compares
// it), to compare batches whatever their order.
func recordKey(r *flow.Record) string {
	var b []byte
	for f := flow.FieldID(0); int(f) < flow.NumFields; f++ {
		if !r.Has(f) {
			continue
		}
		b = append(b, flow.Fields[f].Name...)
		b = append(b, '=')
		switch flow.Fields[f].Kind {
		case flow.KindAddress:
			b = r.Addr(f).Unmap().AppendTo(b)
		case flow.KindString:
			b = append(b, r.String(f)...)
		case flow.KindTime:
			b = fmt.Appendf(b, "%d", int64(r.Uint(f))/1e6)
		default:
			b = fmt.Appendf(b, "%d", r.Uint(f))
		}
		b = append(b, ' ')
	}
	for _, x := range r.Extra {
		b = fmt.Appendf(b, "%d/%d=%x ", x.Enterprise, x.Element, x.Value)
	}
	return string(b)
}

func sameRecords(t *testing.T, got, want *flow.Batch) {
	t.Helper()
	if got.Len() != want.Len() {
		t.Fatalf("re-exported %d records, want %d", got.Len(), want.Len())
	}
	var g, w []string
	for i := range got.Records {
		g = append(g, recordKey(got.Records[i]))
		w = append(w, recordKey(want.Records[i]))
	}
	slices.Sort(g)
	slices.Sort(w)
	for i := range g {
		if g[i] != w[i] {
			t.Fatalf("record %d:\n got %s\nwant %s", i, g[i], w[i])
		}
	}
}

// TestReexport: decoding what the re-exporter sends gives what decoding
// its input gives, with the proxy's stamps; records are copied where their
// meaning cannot change and decoded otherwise.
func TestReexport(t *testing.T) {
	v4 := netip.MustParseAddrPort("10.0.0.1:4739")
	v6 := netip.MustParseAddrPort("[fd00::7]:4739")
	antreaT, antreaD := antreaMessages(t, 30)
	goT, goD := goIPFIXMessages(t, 20, false)
	goT6, goD6 := goIPFIXMessages(t, 20, true)
	fixed := templateRecord(300, ie(8, 4), ie(12, 4), ie(7, 2), ie(11, 2), ie(4, 1), ie(1, 8), ie(152, 8))
	fixedData := set(300, rec(ip("10.1.1.1"), ip("10.2.2.2"), u16(1000), u16(53), u8(17), u64(77), u64(1_700_000_000_000)),
		rec(ip("10.1.1.2"), ip("10.2.2.3"), u16(1001), u16(53), u8(17), u64(78), u64(1_700_000_000_500)))
	proxied := templateRecord(301, ie(8, 4), ie(1, 4), ie(403, 4), ie(405, 4))
	proxiedData := set(301, rec(ip("10.1.1.1"), u32(5), ip("192.0.2.1"), u32(42)))
	delta := templateRecord(302, ie(8, 4), ie(158, 4), ie(159, 4), ie(2, 2))
	deltaData := set(302, rec(ip("10.1.1.1"), u32(2_000_000), u32(1_000_000), u16(3)))
	reduced := templateRecord(303, ie(8, 4), ie(1, 3), eie(4242, 9, 5), ie(82, 0xffff))
	reducedData := set(303, rec(ip("10.1.1.1"), []byte{1, 2, 3}, []byte("abcde"), vstr(string(bytes.Repeat([]byte("x"), 300)))),
		rec(ip("10.1.1.9"), []byte{0, 0, 9}, []byte("fghij"), vstr("eth0")))

	tests := []struct {
		name           string
		exporter       netip.AddrPort
		stamp          bool
		msgs           [][]byte
		copied, decode uint64
	}{
		{"antrea template and data", v4, true, [][]byte{antreaT, antreaD}, 60, 0},
		{"antrea from an IPv6 exporter", v6, true, [][]byte{antreaT, antreaD}, 60, 0},
		{"go-ipfix IPv4", v4, true, [][]byte{goT, goD}, 20, 0},
		{"go-ipfix IPv6", v4, true, [][]byte{goT6, goD6}, 20, 0},
		{"softflowd: sysUpTime times are decoded", v4, true, softflowdMessages(t), 0, 0},
		{"fixed-length template", v4, true, [][]byte{message(7, 1000, set(2, fixed), fixedData)}, 2, 0},
		{"unstamped: no proxy", v4, false, [][]byte{message(7, 1000, set(2, fixed), fixedData)}, 2, 0},
		{"already proxied: the first proxy's values win", v4, true, [][]byte{message(7, 1000, set(2, proxied), proxiedData)}, 1, 0},
		{"delta times are decoded", v4, true, [][]byte{message(7, 1_700_000_000, set(2, delta), deltaData)}, 0, 1},
		{"reduced size, enterprise and long variable fields", v4, true, [][]byte{message(7, 1000, set(2, reduced), reducedData)}, 2, 0},
		{"data before its template is held, then decoded", v4, true, [][]byte{message(7, 1000, fixedData), message(7, 1001, set(2, fixed), fixedData)}, 2, 2},
		{"two domains, same template ID", v4, true, [][]byte{message(7, 1000, set(2, fixed), fixedData), message(8, 1000, set(2, reduced)), message(8, 1000, set(303, reducedData[4:]))}, 0, 0},
	}
	for _, tc := range tests {
		for _, size := range []int{65535, 512} {
			t.Run(fmt.Sprintf("%s/max %d", tc.name, size), func(t *testing.T) {
				stats := new(RawStats)
				enc := NewEncoder(EncoderOptions{ObservationDomainID: 99, MaxMessageSize: size, RawStats: stats})
				out, err := reexport(t, enc, tc.exporter, tc.stamp, tc.msgs...)
				if err != nil {
					t.Fatal(err)
				}
				want := decodeExpected(t, tc.exporter, tc.stamp, tc.msgs...)
				got := decodeOutput(t, out, 99, size)
				sameRecords(t, got, want)
				if n := stats.Copied.Load() + stats.Decoded.Load(); n != uint64(want.Len()) {
					t.Errorf("stats: %d copied + %d decoded, want %d records", stats.Copied.Load(), stats.Decoded.Load(), want.Len())
				}
				if tc.copied > 0 && stats.Copied.Load() != tc.copied {
					t.Errorf("copied %d, want %d", stats.Copied.Load(), tc.copied)
				}
				if tc.decode > 0 && stats.Decoded.Load() != tc.decode {
					t.Errorf("decoded %d, want %d", stats.Decoded.Load(), tc.decode)
				}
				if stats.Messages.Load() != uint64(len(tc.msgs)) || stats.Malformed.Load() != 0 || stats.Dropped.Load() != 0 {
					t.Errorf("stats: %d messages, %d malformed, %d dropped", stats.Messages.Load(), stats.Malformed.Load(), stats.Dropped.Load())
				}
			})
		}
	}
}

// TestReexportMixed: raw and typed records in one batch share the
// encoder's template IDs and sequence numbers.
func TestReexportMixed(t *testing.T) {
	tmpl, data := antreaMessages(t, 5)
	b := rawBatch(testExporter, true, tmpl, data)
	typed := flow.NewBatch(0)
	antreaRecord(typed.Append(), 9, true)
	recs := []*flow.Record{b.Records[0], typed.Records[0], b.Records[1]}
	enc := NewEncoder(EncoderOptions{})
	var out [][]byte
	inputs, records := 0, 0
	if err := enc.Encode(recs, reexportTime, func(m []byte) error {
		out = append(out, bytes.Clone(m))
		inputs += enc.MessageInputs()
		records += enc.MessageRecords()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := decodeOutput(t, out, 0, DefaultMaxMessageSize)
	want := decodeExpected(t, testExporter, true, tmpl, data)
	r := want.Append()
	antreaRecord(r, 9, true)
	sameRecords(t, got, want)
	// The engine's records and the data records, message by message.
	if inputs != len(recs) || records != want.Len() {
		t.Errorf("messages hold %d input records and %d data records, want %d and %d", inputs, records, len(recs), want.Len())
	}
}

// TestReexportMalformed: a message whose header is unusable is reported
// (one record dropped); a malformed set is counted and the rest forwarded.
func TestReexportMalformed(t *testing.T) {
	fixed := templateRecord(300, ie(8, 4), ie(1, 8))
	good := message(7, 1000, set(2, fixed), set(300, rec(ip("10.1.1.1"), u64(5))))
	overrun := append(bytes.Clone(good), 1, 44, 0, 40, 0) // set of 40 bytes in 5
	binary.BigEndian.PutUint16(overrun[2:], uint16(len(overrun)))
	partial := message(7, 1000, set(2, fixed), set(300, rec(ip("10.1.1.1"), u64(5)), []byte{1, 2, 3, 4, 5, 6, 7}))

	stats := new(RawStats)
	enc := NewEncoder(EncoderOptions{RawStats: stats})
	out, err := reexport(t, enc, testExporter, true, []byte{0, 10, 0}, overrun, partial)
	var de *DecodeError
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &de) || de.SetID != 0 {
		t.Fatalf("err = %v, want one header error", err)
	}
	got := decodeOutput(t, out, 0, DefaultMaxMessageSize)
	wantLen(t, got, 2)
	if stats.Messages.Load() != 2 || stats.Malformed.Load() != 1 || stats.Copied.Load() != 2 {
		t.Errorf("stats: %d messages, %d malformed, %d copied", stats.Messages.Load(), stats.Malformed.Load(), stats.Copied.Load())
	}
}

// TestReexportTooLarge: a record that cannot fit a message is counted in
// RawStats.Dropped; the others go out.
func TestReexportTooLarge(t *testing.T) {
	tmpl := templateRecord(300, ie(8, 4), ie(82, 0xffff))
	msg := message(7, 1000, set(2, tmpl), set(300,
		rec(ip("10.1.1.1"), vstr("eth0")),
		rec(ip("10.1.1.2"), vstr(string(bytes.Repeat([]byte("y"), 400)))),
		rec(ip("10.1.1.3"), vstr("eth1"))))
	stats := new(RawStats)
	enc := NewEncoder(EncoderOptions{MaxMessageSize: 256, RawStats: stats})
	out, err := reexport(t, enc, testExporter, true, msg)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeOutput(t, out, 0, 256)
	wantLen(t, got, 2)
	if stats.Copied.Load() != 2 || stats.Dropped.Load() != 1 {
		t.Errorf("stats: %d copied, %d dropped", stats.Copied.Load(), stats.Dropped.Load())
	}
}

// TestReexportTemplateChanges: a redefined template gets a new ID; IDs
// starting over forget every re-export template.
func TestReexportTemplateChanges(t *testing.T) {
	a := templateRecord(300, ie(8, 4), ie(1, 8))
	b := templateRecord(300, ie(8, 4), ie(2, 8))
	msgs := [][]byte{
		message(7, 1000, set(2, a), set(300, rec(ip("10.1.1.1"), u64(5)))),
		message(7, 1001, set(2, b), set(300, rec(ip("10.1.1.2"), u64(6)))),
	}
	enc := NewEncoder(EncoderOptions{})
	enc.nextID = 0xffff // the next template restarts the IDs
	out, err := reexport(t, enc, testExporter, true, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, decodeOutput(t, out, 0, DefaultMaxMessageSize), decodeExpected(t, testExporter, true, msgs...))
	if enc.gen != 1 {
		t.Errorf("gen = %d, want 1 (IDs restarted)", enc.gen)
	}
}

// FuzzReexport feeds arbitrary message streams to the re-exporter: it
// never panics, what it sends decodes without error, and every record the
// decoder finds in the input is sent or counted.
func FuzzReexport(f *testing.F) {
	var stream []byte
	for _, m := range softflowdMessages(f) {
		stream = append(stream, m...)
	}
	f.Add(stream, uint16(65535))
	tmpl, data := antreaMessages(f, 3)
	f.Add(append(bytes.Clone(tmpl), data...), uint16(300))
	tmpl, data = goIPFIXMessages(f, 2, true)
	f.Add(append(bytes.Clone(tmpl), data...), uint16(1400))
	f.Add(message(1, 1000, set(2, templateRecord(256, ie(8, 4), ie(158, 4), ie(82, 0xffff)), templateRecord(257, ie(8, 4), ie(403, 4))),
		set(256, rec(ip("10.0.0.1"), u32(2), vstr("a"))), set(257, rec(ip("10.0.0.1"), ip("10.0.0.2")))), uint16(512))

	f.Fuzz(func(t *testing.T, in []byte, size uint16) {
		var msgs [][]byte
		r := bytes.NewReader(in)
		for {
			m, err := ReadMessage(r, nil)
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			msgs = [][]byte{in}
		}
		// What source.ipfix would decode.
		d := NewDecoder(DecoderOptions{})
		direct := flow.NewBatch(0)
		for _, m := range msgs {
			d.Decode(direct, m, testExporter)
		}

		stats := new(RawStats)
		enc := NewEncoder(EncoderOptions{MaxMessageSize: int(size), RawStats: stats})
		out, _ := reexport(t, enc, testExporter, true, msgs...)
		dec := NewDecoder(DecoderOptions{})
		got := flow.NewBatch(0)
		for i, m := range out {
			if _, err := dec.Decode(got, m, testExporter); err != nil {
				t.Fatalf("decode re-exported message %d: %v", i, err)
			}
		}
		sent := stats.Copied.Load() + stats.Decoded.Load()
		if uint64(got.Len()) != sent {
			t.Fatalf("decoded %d re-exported records, stats say %d sent", got.Len(), sent)
		}
		if sent+stats.Dropped.Load() != uint64(direct.Len()) {
			t.Fatalf("%d sent + %d dropped, but the input holds %d records", sent, stats.Dropped.Load(), direct.Len())
		}
	})
}

// TestReexportSetsExpired: data sets whose template never comes are held
// within the decoder's limits; those pushed out are counted.
func TestReexportSetsExpired(t *testing.T) {
	orphan := message(7, 1000, set(400, rec(ip("10.1.1.1"), u64(5))))
	msgs := make([][]byte, rawPendingSets+3)
	for i := range msgs {
		msgs[i] = orphan
	}
	stats := new(RawStats)
	enc := NewEncoder(EncoderOptions{RawStats: stats})
	out, err := reexport(t, enc, testExporter, true, msgs...)
	if err != nil || len(out) != 0 {
		t.Fatalf("%d messages sent, err %v; want none", len(out), err)
	}
	if got := stats.SetsExpired.Load(); got != 3 {
		t.Errorf("SetsExpired = %d, want 3", got)
	}
}

// TestReexportTemplatesAfterReset: a new TCP connection (Reset) gets the
// re-export templates from EncodeTemplates, so data replayed or sent after
// it decodes on a collector that saw nothing before.
func TestReexportTemplatesAfterReset(t *testing.T) {
	tmpl, data := antreaMessages(t, 4)
	enc := NewEncoder(EncoderOptions{})
	if _, err := reexport(t, enc, testExporter, true, tmpl); err != nil {
		t.Fatal(err)
	}
	enc.Reset()
	var fresh [][]byte
	if err := enc.EncodeTemplates(reexportTime, func(m []byte) error {
		fresh = append(fresh, bytes.Clone(m))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, err := reexport(t, enc, testExporter, true, data)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeOutput(t, append(fresh, out...), 0, DefaultMaxMessageSize)
	want := decodeExpected(t, testExporter, true, tmpl, data) // tmpl holds 4 records too
	want.Records = want.Records[4:]
	sameRecords(t, got, want)
}

// TestDecodedRecordIsNeverRaw: an exporter's record whose first IE has
// the raw message IE's enterprise number and low element bits is encoded
// as a record, not re-exported as a message.
func TestDecodedRecordIsNeverRaw(t *testing.T) {
	in := message(7, 1000, set(2, templateRecord(300, eie(RawPEN, 1, 0xffff), eie(0, 258, 8))),
		set(300, rec(vstr("not a message"), u64(1))))
	b, errs := decodeAll(t, NewDecoder(DecoderOptions{}), in)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	wantLen(t, b, 1)
	if _, _, ok := Raw(b.Records[0]); ok {
		t.Fatal("a decoded record passes for a raw one")
	}
	stats := new(RawStats)
	enc := NewEncoder(EncoderOptions{RawStats: stats})
	var out [][]byte
	if err := enc.Encode(b.Records, reexportTime, func(m []byte) error { out = append(out, bytes.Clone(m)); return nil }); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, decodeOutput(t, out, 0, DefaultMaxMessageSize), b)
	if stats.Messages.Load() != 0 {
		t.Error("re-exported as a raw message")
	}
}

// TestReexportOneSetPerMessage: for go-ipfix's collecting process (Antrea's
// Flow Aggregator), every template set and data set goes in a message of
// its own.
func TestReexportOneSetPerMessage(t *testing.T) {
	tmpl, data := antreaMessages(t, 30)
	enc := NewEncoder(EncoderOptions{OneSetPerMessage: true, MaxMessageSize: 1472})
	out, err := reexport(t, enc, testExporter, true, tmpl, data)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range out {
		if l := int(binary.BigEndian.Uint16(m[headerLen+2:])); headerLen+l != len(m) {
			t.Errorf("message %d: first set of %d bytes in a %d-byte message", i, l, len(m))
		}
	}
	sameRecords(t, decodeOutput(t, out, 0, 1472), decodeExpected(t, testExporter, true, tmpl, data))
}

// TestReexportSessionLimit: a message whose session the limits refuse is
// reported (ErrLimit), not forwarded as nothing.
func TestReexportSessionLimit(t *testing.T) {
	fixed := templateRecord(300, ie(8, 4), ie(1, 8))
	n := DefaultLimits().SessionsPerExporter + 1
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = message(uint32(i), 1000, set(2, fixed), set(300, rec(ip("10.1.1.1"), u64(5))))
	}
	stats := new(RawStats)
	enc := NewEncoder(EncoderOptions{MaxMessageSize: 65535, RawStats: stats})
	out, err := reexport(t, enc, testExporter, true, msgs...)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitSessionsPerExporter {
		t.Fatalf("err = %v, want the last session refused", err)
	}
	wantLen(t, decodeOutput(t, out, 0, 65535), n-1)
	if stats.Messages.Load() != uint64(n-1) {
		t.Errorf("%d messages re-exported, want %d", stats.Messages.Load(), n-1)
	}
}
