package ipfix

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// fiveTuple is a v4 template: src, dst, sport, dport, proto, octets, packets.
var fiveTuple = []spec{ie(8, 4), ie(12, 4), ie(7, 2), ie(11, 2), ie(4, 1), ie(1, 8), ie(2, 8)}

func fiveTupleRec(src, dst string, sport, dport uint16, proto uint8, octets, packets uint64) []byte {
	return rec(ip(src), ip(dst), u16(sport), u16(dport), u8(proto), u64(octets), u64(packets))
}

func TestDecodeFeatures(t *testing.T) {
	const domain = 7
	tests := []struct {
		name  string
		msgs  [][]byte
		check func(t *testing.T, b *flow.Batch, d *Decoder)
	}{
		{
			name: "several templates per set and several sets per message",
			msgs: [][]byte{message(domain, 1000,
				set(2, templateRecord(256, fiveTuple...), templateRecord(257, ie(4, 1), ie(2, 4))),
				set(256, fiveTupleRec("10.0.0.1", "10.0.0.2", 1, 2, 6, 100, 1), fiveTupleRec("10.0.0.3", "10.0.0.4", 3, 4, 17, 200, 2)),
				set(257, rec(u8(1), u32(9))),
			)},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 3)
				r := b.Records[1]
				if r.SourceAddress != netip.MustParseAddr("10.0.0.3") || r.DestinationTransportPort != 4 || r.ProtocolIdentifier != 17 || r.OctetDeltaCount != 200 || r.PacketDeltaCount != 2 {
					t.Errorf("record 1 = %+v", r)
				}
				if r := b.Records[2]; r.ProtocolIdentifier != 1 || r.PacketDeltaCount != 9 || r.Has(flow.SourceAddress) {
					t.Errorf("record 2 = %+v", r)
				}
				if got := d.Stats().Templates.Load(); got != 2 {
					t.Errorf("templates = %d, want 2", got)
				}
			},
		},
		{
			name: "variable-length IEs with 1- and 3-byte lengths",
			msgs: [][]byte{message(domain, 1000,
				set(2, templateRecord(256, ie(4, 1), eie(flow.AntreaPEN, 101, 0xffff), eie(flow.AntreaPEN, 143, 0xffff), ie(82, 0xffff))),
				set(256, rec(u8(6), vstr("pod-a"), vstr(strings.Repeat("x", 300)), vstr("eth0")), rec(u8(17), vstr(""), vstr("{}"), vstr(""))),
			)},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 2)
				r := b.Records[0]
				if r.SourcePodName != "pod-a" || len(r.SourcePodLabels) != 300 {
					t.Errorf("strings = %q, %d bytes", r.SourcePodName, len(r.SourcePodLabels))
				}
				if x := r.FindExtra(flow.IEKey{Element: 82}); x == nil || string(x.Value) != "eth0" || !x.Variable {
					t.Errorf("interfaceName extra = %+v", x)
				}
				r = b.Records[1]
				if r.SourcePodName != "" || !r.Present.Has(flow.SourcePodName) || r.SourcePodLabels != "{}" {
					t.Errorf("record 1 = %q %v %q", r.SourcePodName, r.Present.Has(flow.SourcePodName), r.SourcePodLabels)
				}
			},
		},
		{
			name: "reduced-size encoding",
			msgs: [][]byte{message(domain, 1000,
				set(2, templateRecord(256, ie(1, 1), ie(2, 2), ie(85, 4), ie(86, 3), ie(10, 2), ie(7, 1), ie(11, 8))),
				set(256, rec(u8(200), u16(60000), u32(4000000000), []byte{1, 2, 3}, u16(7), u8(80), u64(443))),
			)},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 1)
				r := b.Records[0]
				if r.OctetDeltaCount != 200 || r.PacketDeltaCount != 60000 || r.OctetTotalCount != 4000000000 || r.PacketTotalCount != 0x010203 ||
					r.IngressInterface != 7 || r.SourceTransportPort != 80 || r.DestinationTransportPort != 443 {
					t.Errorf("record = %+v", r)
				}
			},
		},
		{
			name: "typed IEs with unexpected lengths go to Extra",
			msgs: [][]byte{message(domain, 1000,
				set(2, templateRecord(256, ie(8, 3), ie(12, 16), ie(1, 9), ie(4, 1))),
				set(256, rec([]byte{10, 0, 0}, ip("2001:db8::1"), make([]byte, 9), u8(6))),
			)},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 1)
				r := b.Records[0]
				if r.Has(flow.SourceAddress) || r.Has(flow.DestinationAddress) || r.Has(flow.OctetDeltaCount) || r.ProtocolIdentifier != 6 {
					t.Errorf("typed fields set from malformed lengths: %+v", r)
				}
				if len(r.Extra) != 3 || len(r.Extra[0].Value) != 3 || r.Extra[1].Element != 12 || len(r.Extra[2].Value) != 9 {
					t.Errorf("extra = %+v", r.Extra)
				}
			},
		},
		{
			name: "IPv6 and Antrea addresses",
			msgs: [][]byte{message(domain, 1000,
				set(2, templateRecord(256, ie(27, 16), ie(28, 16), ie(404, 16), eie(flow.AntreaPEN, 107, 16)),
					templateRecord(257, ie(8, 4), ie(12, 4), ie(403, 4), eie(flow.AntreaPEN, 106, 4))),
				set(256, rec(ip("2001:db8::1"), ip("2001:db8::2"), ip("2001:db8::3"), ip("fd00::10"))),
				set(257, rec(ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"), ip("10.96.0.10"))),
			)},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 2)
				r := b.Records[0]
				if r.SourceAddress.String() != "2001:db8::1" || r.DestinationAddress.String() != "2001:db8::2" ||
					r.OriginalExporterAddress.String() != "2001:db8::3" || r.DestinationClusterIP.String() != "fd00::10" {
					t.Errorf("v6 record = %+v", r)
				}
				r = b.Records[1]
				if r.SourceAddress.String() != "10.0.0.1" || r.OriginalExporterAddress.String() != "10.0.0.3" || r.DestinationClusterIP.String() != "10.96.0.10" || !r.Has(flow.DestinationClusterIP) {
					t.Errorf("v4 record = %+v", r)
				}
				if len(r.Extra) != 0 {
					t.Errorf("extra = %+v", r.Extra)
				}
			},
		},
		{
			name: "enterprise IEs with an unregistered PEN",
			msgs: [][]byte{message(domain, 1000,
				set(2, templateRecord(256, ie(4, 1), eie(12345, 1, 4), eie(12345, 2, 0xffff), eie(flow.ReversePEN, 1, 8))),
				set(256, rec(u8(6), u32(0xdeadbeef), vstr("hello"), u64(77))),
			)},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 1)
				r := b.Records[0]
				if r.ReverseOctetDeltaCount != 77 {
					t.Errorf("reverseOctetDeltaCount = %d", r.ReverseOctetDeltaCount)
				}
				x := r.FindExtra(flow.IEKey{Enterprise: 12345, Element: 1})
				y := r.FindExtra(flow.IEKey{Enterprise: 12345, Element: 2})
				if x == nil || x.Variable || string(x.Value) != "\xde\xad\xbe\xef" || y == nil || !y.Variable || string(y.Value) != "hello" {
					t.Errorf("extra = %+v", r.Extra)
				}
				if got := d.Stats().UnknownIEs.Load(); got != 2 {
					t.Errorf("unknown IEs = %d, want 2", got)
				}
			},
		},
		{
			name: "set padding",
			msgs: [][]byte{message(domain, 1000,
				set(2, templateRecord(256, fiveTuple...), []byte{0, 0}),
				set(256, fiveTupleRec("10.0.0.1", "10.0.0.2", 1, 2, 6, 100, 1), []byte{0, 0, 0}),
				set(2, templateRecord(257, ie(4, 1), ie(82, 0xffff)), make([]byte, 8)),
				set(257, rec(u8(6), vstr("a")), rec(u8(17), vstr("")), []byte{0}),
			)},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 3)
			},
		},
		{
			name: "templates are scoped per observation domain",
			msgs: [][]byte{
				message(1, 1000, set(2, templateRecord(256, ie(4, 1)))),
				message(2, 1000, set(2, templateRecord(256, ie(7, 2)))),
				message(1, 1000, set(256, rec(u8(6)))),
				message(2, 1000, set(256, rec(u16(80)))),
			},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 2)
				if r := b.Records[0]; r.ProtocolIdentifier != 6 || r.ObservationDomainID != 1 || r.Has(flow.SourceTransportPort) {
					t.Errorf("domain 1 record = %+v", r)
				}
				if r := b.Records[1]; r.SourceTransportPort != 80 || r.ObservationDomainID != 2 || r.Has(flow.ProtocolIdentifier) {
					t.Errorf("domain 2 record = %+v", r)
				}
			},
		},
		{
			name: "template redefinition replaces the old one",
			msgs: [][]byte{
				message(domain, 1000, set(2, templateRecord(256, ie(4, 1))), set(256, rec(u8(6)))),
				message(domain, 1000, set(2, templateRecord(256, ie(7, 2))), set(256, rec(u16(80)))),
			},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 2)
				if b.Records[1].SourceTransportPort != 80 || b.Records[1].Has(flow.ProtocolIdentifier) {
					t.Errorf("record = %+v", b.Records[1])
				}
			},
		},
		{
			name: "withdrawal of one template and of all",
			msgs: [][]byte{
				message(domain, 1000, set(2, templateRecord(256, ie(4, 1)), templateRecord(257, ie(4, 1))), set(3, optionsTemplateRecord(258, 1, ie(143, 4), ie(160, 8)))),
				message(domain, 1000, set(2, rec(u16(256), u16(0)))),
				message(domain, 1000, set(256, rec(u8(1))), set(257, rec(u8(2)))), // 256 held
				message(domain, 1000, set(2, rec(u16(2), u16(0)))),
				message(domain, 1000, set(257, rec(u8(3))), set(258, rec(u32(1), u64(5)))), // 257 held, 258 still known
			},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 1)
				st := d.Stats()
				if b.Records[0].ProtocolIdentifier != 2 || st.Withdrawals.Load() != 2 || st.PendingHeld.Load() != 2 || st.OptionsRecords.Load() != 1 {
					t.Errorf("record %+v, withdrawals %d, held %d, options %d", b.Records[0], st.Withdrawals.Load(), st.PendingHeld.Load(), st.OptionsRecords.Load())
				}
			},
		},
		{
			name: "options records are consumed, not emitted",
			msgs: [][]byte{message(domain, 1000,
				set(3, optionsTemplateRecord(300, 1, ie(143, 4), ie(160, 8), ie(82, 0xffff))),
				set(300, rec(u32(1), u64(5), vstr("eth0")), rec(u32(2), u64(6), vstr(""))),
			)},
			check: func(t *testing.T, b *flow.Batch, d *Decoder) {
				wantLen(t, b, 0)
				if got := d.Stats().OptionsRecords.Load(); got != 2 {
					t.Errorf("options records = %d, want 2", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(DecoderOptions{})
			b, errs := decodeAll(t, d, tt.msgs...)
			if len(errs) > 0 {
				t.Fatalf("decode errors: %v", errs)
			}
			for _, r := range b.Records {
				if r.Exporter != testExporter {
					t.Errorf("exporter = %v", r.Exporter)
				}
			}
			tt.check(t, b, d)
		})
	}
}

func wantLen(t *testing.T, b *flow.Batch, n int) {
	t.Helper()
	if b.Len() != n {
		t.Fatalf("decoded %d records, want %d", b.Len(), n)
	}
}

func TestSessionsPerExporterPort(t *testing.T) {
	d := NewDecoder(DecoderOptions{})
	b := flow.NewBatch(0)
	a1 := netip.MustParseAddrPort("10.0.0.1:1000")
	a2 := netip.MustParseAddrPort("10.0.0.1:1001")
	if _, err := d.Decode(b, message(0, 1, set(2, templateRecord(256, ie(4, 1)))), a1); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.Decode(b, message(0, 1, set(256, rec(u8(6)))), a2); n != 0 {
		t.Errorf("other port decoded %d records with a1's template", n)
	}
	if n, _ := d.Decode(b, message(0, 1, set(256, rec(u8(6)))), a1); n != 1 {
		t.Errorf("a1 decoded %d records, want 1", n)
	}
	d.CloseSession(a1)
	if n, _ := d.Decode(b, message(0, 1, set(256, rec(u8(6)))), a1); n != 0 {
		t.Errorf("closed session decoded %d records", n)
	}
	if got := d.Stats().PendingHeld.Load(); got != 2 {
		t.Errorf("held = %d, want 2", got)
	}
}

func TestTimeForms(t *testing.T) {
	const export = 1_700_000_100 // header export time, seconds
	start := time.Date(2023, 11, 14, 22, 13, 20, 123456789, time.UTC)
	end := start.Add(90*time.Second + 987654321)
	ntp := func(tm time.Time) []byte {
		sec := uint32(tm.Unix() + ntpEpochOffset)
		frac := uint32((uint64(tm.Nanosecond()) << 32) / 1e9)
		return rec(u32(sec), u32(frac))
	}
	ntpMicro := func(tm time.Time) []byte { // RFC 7011 §6.1.9: low 11 bits zero
		v := ntp(tm.Truncate(time.Microsecond))
		v[6] &^= 0x07
		v[7] = 0
		return v
	}
	const initMs = 1_699_990_000_000 // systemInitTimeMilliseconds
	upStart := uint32(start.UnixMilli() - initMs)
	upEnd := uint32(end.UnixMilli() - initMs)
	tests := []struct {
		name               string
		specs              []spec
		values             []byte
		options            [][]byte // sets sent after the data set
		wantStart, wantEnd int64
		approximated       uint64
	}{
		{"seconds", []spec{ie(150, 4), ie(151, 4)}, rec(u32(uint32(start.Unix())), u32(uint32(end.Unix()))), nil,
			start.Truncate(time.Second).UnixNano(), end.Truncate(time.Second).UnixNano(), 0},
		{"milliseconds", []spec{ie(152, 8), ie(153, 8)}, rec(u64(uint64(start.UnixMilli())), u64(uint64(end.UnixMilli()))), nil,
			start.Truncate(time.Millisecond).UnixNano(), end.Truncate(time.Millisecond).UnixNano(), 0},
		{"microseconds", []spec{ie(154, 8), ie(155, 8)}, rec(ntpMicro(start), ntpMicro(end)), nil,
			start.Truncate(time.Microsecond).UnixNano(), end.Truncate(time.Microsecond).UnixNano(), 0},
		{"nanoseconds", []spec{ie(156, 8), ie(157, 8)}, rec(ntp(start), ntp(end)), nil,
			start.UnixNano(), end.UnixNano(), 0},
		{"delta microseconds", []spec{ie(158, 4), ie(159, 4)}, rec(u32(5_000_000), u32(250)), nil,
			export*1e9 - 5e9, export*1e9 - 250e3, 0},
		{"sysUpTime with init time in the record", []spec{ie(22, 4), ie(21, 4), ie(160, 8)}, rec(u32(upStart), u32(upEnd), u64(initMs)), nil,
			start.Truncate(time.Millisecond).UnixNano(), end.Truncate(time.Millisecond).UnixNano(), 0},
		{"sysUpTime with init time in a later options set", []spec{ie(22, 4), ie(21, 4)}, rec(u32(upStart), u32(upEnd)),
			[][]byte{set(3, optionsTemplateRecord(400, 1, ie(143, 4), ie(160, 8))), set(400, rec(u32(1), u64(initMs)))},
			start.Truncate(time.Millisecond).UnixNano(), end.Truncate(time.Millisecond).UnixNano(), 0},
		{"sysUpTime without init time", []spec{ie(22, 4), ie(21, 4)}, rec(u32(1000), u32(3500)), nil,
			export*1e9 - 2500e6, export * 1e9, 1},
		{"finest form wins", []spec{ie(150, 4), ie(156, 8), ie(151, 4)}, rec(u32(uint32(start.Unix())), ntp(start), u32(uint32(end.Unix()))), nil,
			start.UnixNano(), end.Truncate(time.Second).UnixNano(), 0},
		{"reduced-size milliseconds", []spec{ie(152, 4)}, rec(u32(123456)), nil, 123456e6, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sets := [][]byte{set(2, templateRecord(256, tt.specs...)), set(256, tt.values)}
			sets = append(sets, tt.options...)
			d := NewDecoder(DecoderOptions{})
			b, errs := decodeAll(t, d, message(0, export, sets...))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			wantLen(t, b, 1)
			r := b.Records[0]
			if r.FlowStart != tt.wantStart || !r.Has(flow.FlowStart) {
				t.Errorf("start = %v, want %v", time.Unix(0, r.FlowStart).UTC(), time.Unix(0, tt.wantStart).UTC())
			}
			if tt.wantEnd != 0 && (r.FlowEnd != tt.wantEnd || !r.Has(flow.FlowEnd)) {
				t.Errorf("end = %v, want %v", time.Unix(0, r.FlowEnd).UTC(), time.Unix(0, tt.wantEnd).UTC())
			}
			if tt.wantEnd == 0 && r.Has(flow.FlowEnd) {
				t.Errorf("end present")
			}
			for _, x := range r.Extra {
				if x.Enterprise == 0 && x.Element != 160 && (x.Element >= 150 && x.Element <= 159 || x.Element == 21 || x.Element == 22) {
					t.Errorf("time IE %d kept in Extra", x.Element)
				}
			}
			if got := d.Stats().TimesApproximated.Load(); got != tt.approximated {
				t.Errorf("approximated = %d, want %d", got, tt.approximated)
			}
		})
	}
}

func TestPending(t *testing.T) {
	tmpl := set(2, templateRecord(256, fiveTuple...))
	data := func(n int) []byte {
		var rs [][]byte
		for i := 0; i < n; i++ {
			rs = append(rs, fiveTupleRec("10.0.0.1", "10.0.0.2", uint16(i), 80, 6, 100, 1))
		}
		return set(256, rs...)
	}
	t.Run("data before template is decoded when the template arrives", func(t *testing.T) {
		d := NewDecoder(DecoderOptions{})
		b := flow.NewBatch(0)
		n1, err := d.Decode(b, message(0, 1000, data(2)), testExporter)
		if err != nil || n1 != 0 {
			t.Fatalf("first message: %d records, %v", n1, err)
		}
		n2, err := d.Decode(b, message(0, 1001, tmpl, data(3)), testExporter)
		if err != nil || n2 != 5 || b.Len() != 5 {
			t.Fatalf("second message: %d records (batch %d), %v", n2, b.Len(), err)
		}
		// Held records come first: they are older.
		if b.Records[0].SourceTransportPort != 0 || b.Records[1].SourceTransportPort != 1 || b.Records[2].SourceTransportPort != 0 {
			t.Errorf("order: %d %d %d", b.Records[0].SourceTransportPort, b.Records[1].SourceTransportPort, b.Records[2].SourceTransportPort)
		}
		st := d.Stats()
		if st.PendingHeld.Load() != 1 || st.PendingDecoded.Load() != 1 || st.PendingExpired.Load() != 0 || st.Records.Load() != 5 {
			t.Errorf("held %d decoded %d expired %d records %d", st.PendingHeld.Load(), st.PendingDecoded.Load(), st.PendingExpired.Load(), st.Records.Load())
		}
	})
	t.Run("expired by TTL", func(t *testing.T) {
		clk := newClock()
		d := NewDecoder(DecoderOptions{PendingTTL: 10 * time.Second, Now: clk.Now})
		b := flow.NewBatch(0)
		d.Decode(b, message(0, 1000, data(1)), testExporter)
		clk.Advance(11 * time.Second)
		d.Expire()
		if n, _ := d.Decode(b, message(0, 1011, tmpl), testExporter); n != 0 {
			t.Errorf("expired set decoded: %d records", n)
		}
		if got := d.Stats().PendingExpired.Load(); got != 1 {
			t.Errorf("expired = %d, want 1", got)
		}
	})
	t.Run("overflow drops the oldest", func(t *testing.T) {
		d := NewDecoder(DecoderOptions{PendingSets: 2})
		b := flow.NewBatch(0)
		for i := 0; i < 3; i++ {
			d.Decode(b, message(0, 1000, data(i+1)), testExporter)
		}
		n, _ := d.Decode(b, message(0, 1000, tmpl), testExporter)
		if n != 2+3 {
			t.Errorf("decoded %d records, want 5 (the two newest sets)", n)
		}
		if got := d.Stats().PendingExpired.Load(); got != 1 {
			t.Errorf("expired = %d, want 1", got)
		}
	})
	t.Run("byte limit", func(t *testing.T) {
		d := NewDecoder(DecoderOptions{PendingBytes: 100})
		b := flow.NewBatch(0)
		d.Decode(b, message(0, 1000, data(4)), testExporter) // 116 bytes: never held
		d.Decode(b, message(0, 1000, data(2)), testExporter)
		d.Decode(b, message(0, 1000, data(3)), testExporter) // evicts the 2-record set
		n, _ := d.Decode(b, message(0, 1000, tmpl), testExporter)
		if n != 3 || d.Stats().PendingExpired.Load() != 2 {
			t.Errorf("decoded %d, expired %d; want 3 and 2", n, d.Stats().PendingExpired.Load())
		}
	})
	t.Run("template TTL", func(t *testing.T) {
		clk := newClock()
		d := NewDecoder(DecoderOptions{TemplateTTL: time.Minute, Now: clk.Now})
		b := flow.NewBatch(0)
		d.Decode(b, message(0, 1000, tmpl), testExporter)
		clk.Advance(2 * time.Minute)
		if n, _ := d.Decode(b, message(0, 1000, data(1)), testExporter); n != 0 {
			t.Errorf("expired template used: %d records", n)
		}
	})
}

func TestMalformed(t *testing.T) {
	tmpl := set(2, templateRecord(256, fiveTuple...))
	good := set(256, fiveTupleRec("10.0.0.1", "10.0.0.2", 1, 2, 6, 100, 1))
	withLength := func(m []byte, n int) []byte {
		m = append([]byte(nil), m...)
		m[2], m[3] = byte(n>>8), byte(n)
		return m
	}
	tests := []struct {
		name     string
		msg      []byte
		want     int    // records decoded from this message
		reason   string // substring of the error
		malSets  uint64
		malMsgs  uint64
		noHeader bool
	}{
		{"short header", []byte{0, 10, 0, 16}, 0, "shorter than the 16-byte header", 0, 1, true},
		{"version 9", append([]byte{0, 9}, message(0, 1, good)[2:]...), 0, "version 9, want 10", 0, 1, true},
		{"length longer than datagram", withLength(message(0, 1, good, good), 200), 2, "exceeds the", 0, 1, false},
		{"length shorter than datagram", withLength(message(0, 1, good, good), 16+len(good)), 1, "trailing bytes ignored", 0, 1, false},
		{"length shorter than header", withLength(message(0, 1, good), 10), 0, "shorter than header", 0, 1, true},
		{"set length below 4", message(0, 1, good, []byte{1, 0, 0, 2}), 1, "set length 2", 1, 1, false},
		{"zero-length set", message(0, 1, good, []byte{1, 0, 0, 0}, good), 1, "set length 0", 1, 1, false},
		{"empty set", message(0, 1, []byte{1, 0, 0, 4}, good), 1, "empty set", 1, 0, false},
		{"set overruns the message", message(0, 1, good, []byte{1, 0, 0, 200, 1, 2}), 1, "overruns the message", 1, 1, false},
		{"truncated set header", message(0, 1, good, []byte{1, 0}), 1, "shorter than a set header", 0, 1, false},
		{"reserved set ID", message(0, 1, set(5, []byte{1, 2, 3, 4}), good), 1, "reserved set ID 5", 1, 0, false},
		{"data set shorter than record", message(0, 1, set(256, []byte{1, 2, 3}), good), 1, "data set shorter than record", 1, 0, false},
		{"template overruns its set", message(0, 1, set(2, templateRecord(300, ie(4, 1), ie(7, 2))[:8]), good), 1, "overruns its set", 1, 0, false},
		{"absurd field count", message(0, 1, set(2, rec(u16(300), u16(60000), u32(0x00040001))), good), 1, "with 60000 fields overruns", 1, 0, false},
		{"template ID below 256", message(0, 1, set(2, templateRecord(200, ie(4, 1))), good), 1, "template ID 200 below 256", 1, 0, false},
		{"options scope count zero", message(0, 1, set(3, optionsTemplateRecord(300, 0, ie(4, 1))), good), 1, "scope field count 0", 1, 0, false},
		{"zero-length template", message(0, 1, set(2, templateRecord(300, ie(4, 0))), good), 1, "zero-length records", 1, 0, false},
		{"enterprise field overruns", message(0, 1, set(2, rec(u16(300), u16(1), u16(0x8001), u16(4))), good), 1, "overruns its set", 1, 0, false},
		{"variable length overruns record", message(0, 1,
			set(2, templateRecord(301, ie(4, 1), ie(82, 0xffff))),
			set(301, rec(u8(6), vstr("ok")), rec(u8(6), []byte{200, 'x'})), good), 2, "partial record", 1, 0, false},
		{"fixed run after a variable field overruns record", message(0, 1,
			set(2, templateRecord(302, ie(4, 1), ie(82, 0xffff), ie(7, 2), ie(8, 4))),
			set(302, rec(u8(6), vstr("ok"), u16(80), u32(1)), rec(u8(17), vstr("xyz"), u16(53), u8(1), u8(2))), good), 2, "partial record", 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(DecoderOptions{})
			b := flow.NewBatch(0)
			if _, err := d.Decode(b, message(0, 1, tmpl), testExporter); err != nil {
				t.Fatal(err)
			}
			n, err := d.Decode(b, tt.msg, testExporter)
			if n != tt.want {
				t.Errorf("decoded %d records, want %d", n, tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not mention %q", err, tt.reason)
			}
			if de.Exporter != testExporter {
				t.Errorf("error exporter = %v", de.Exporter)
			}
			st := d.Stats()
			if st.MalformedSets.Load() != tt.malSets || st.MalformedMessages.Load() != tt.malMsgs {
				t.Errorf("malformed sets %d messages %d, want %d %d", st.MalformedSets.Load(), st.MalformedMessages.Load(), tt.malSets, tt.malMsgs)
			}
			// Later messages still decode.
			if n, err := d.Decode(b, message(0, 2, good), testExporter); n != 1 || err != nil {
				t.Errorf("next message: %d records, %v", n, err)
			}
		})
	}
}

// TestRuns checks the layout the data loop relies on: every fixed-length
// field lies within its run, and a run ends at a variable-length field.
func TestRuns(t *testing.T) {
	var tm template
	compile(&tm, []fieldSpec{
		{flow.IEKey{Element: 4}, 1}, {flow.IEKey{Element: 8}, 4}, {flow.IEKey{Element: 82}, variableLength},
		{flow.IEKey{Element: 7}, 2}, {flow.IEKey{Element: 1}, 8}, {flow.IEKey{Element: 83}, variableLength},
		{flow.IEKey{Element: 84}, variableLength}, {flow.IEKey{Element: 5}, 0}, {flow.IEKey{Element: 11}, 2},
	}, nil)
	type layout struct {
		begins   bool
		pos, run uint32
	}
	want := []layout{{true, 0, 5}, {false, 1, 0}, {}, {true, 0, 10}, {false, 2, 0}, {}, {}, {true, 0, 2}, {false, 0, 0}}
	for i, o := range tm.ops {
		if got := (layout{o.begins, o.pos, o.run}); got != want[i] {
			t.Errorf("op %d (IE %d): %+v, want %+v", i, o.elem, got, want[i])
		}
	}
}

func TestDecodeErrorFormat(t *testing.T) {
	e := &DecodeError{Exporter: netip.MustParseAddrPort("10.0.0.1:4739"), Domain: 7, Offset: 52, SetID: 256, Reason: "data set shorter than record"}
	if got, want := e.Error(), "decode set 256 at offset 52 from 10.0.0.1:4739 (domain 7): data set shorter than record"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	e = &DecodeError{Exporter: netip.MustParseAddrPort("[2001:db8::1]:4739"), Reason: "version 9, want 10"}
	if got, want := e.Error(), "decode message at offset 0 from [2001:db8::1]:4739 (domain 0): version 9, want 10"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSeveralErrorsJoined(t *testing.T) {
	d := NewDecoder(DecoderOptions{})
	b := flow.NewBatch(0)
	msg := message(3, 1,
		set(2, templateRecord(256, ie(4, 1))),
		set(5, []byte{0, 0, 0, 0}),
		set(256, rec(u8(6))),
		set(2, templateRecord(7, ie(4, 1))),
	)
	n, err := d.Decode(b, msg, testExporter)
	if n != 1 {
		t.Errorf("decoded %d, want 1", n)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("error %v: want two joined errors", err)
	}
	for _, e := range joined.Unwrap() {
		var de *DecodeError
		if !errors.As(e, &de) || de.Domain != 3 {
			t.Errorf("error %v", e)
		}
	}
}

func TestUnknownIEHook(t *testing.T) {
	d := NewDecoder(DecoderOptions{})
	var got []flow.IEKey
	d.UnknownIE(func(k flow.IEKey) { got = append(got, k) })
	msg := message(0, 1, set(2, templateRecord(256, ie(4, 1), eie(4242, 9, 2), ie(60000&0x7fff, 1))))
	decodeAll(t, d, msg, msg) // a refresh does not count again
	want := []flow.IEKey{{Enterprise: 4242, Element: 9}, {Element: 60000 & 0x7fff}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("hook saw %v, want %v", got, want)
	}
	if n := d.Stats().UnknownIEs.Load(); n != 2 {
		t.Errorf("UnknownIEs = %d", n)
	}
}

func TestDecodeRandomBytes(t *testing.T) {
	d := NewDecoder(DecoderOptions{})
	b := flow.NewBatch(0)
	seed := uint64(1)
	next := func() byte {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return byte(seed)
	}
	for i := 0; i < 2000; i++ {
		m := make([]byte, int(next())*4)
		for j := range m {
			m[j] = next()
		}
		if len(m) >= 4 && i%2 == 0 {
			m[0], m[1] = 0, 10 // get past the version check
			m[2], m[3] = byte(len(m)>>8), byte(len(m))
		}
		d.Decode(b, m, testExporter)
		b.Reset()
	}
	// A good message still decodes after all that.
	n, err := d.Decode(b, message(99, 1, set(2, templateRecord(256, ie(4, 1))), set(256, rec(u8(6)))), testExporter)
	if n != 1 || err != nil {
		t.Errorf("good message: %d records, %v", n, err)
	}
}

// TestIntern: equal values share one string, whether the cache in front
// of the intern table holds them or they collide there (5,000 names in
// 1,024 slots), and every value comes back as it was.
func TestIntern(t *testing.T) {
	d := NewDecoder(DecoderOptions{})
	first := map[string]string{}
	for round := range 2 {
		for i := range 5000 {
			v := fmt.Sprintf("pod-%d-%s", i, strings.Repeat("x", i%13))
			got := d.intern([]byte(v))
			if got != v {
				t.Fatalf("intern(%q) = %q", v, got)
			}
			if round == 0 {
				first[v] = got
			} else if unsafe.StringData(first[v]) != unsafe.StringData(got) {
				t.Fatalf("intern(%q) returned a new copy the second time", v)
			}
		}
	}
	if d.intern(nil) != "" || d.intern([]byte{}) != "" {
		t.Error("empty value not interned as \"\"")
	}
}

// TestInternBounded: the intern table holds at most internBytes of
// strings, and values longer than internMaxLen are decoded but not kept.
func TestInternBounded(t *testing.T) {
	d := NewDecoder(DecoderOptions{})
	for i := range 2 * internBytes / internMaxLen {
		v := fmt.Sprintf("%0*d", internMaxLen, i)
		if got := d.intern([]byte(v)); got != v {
			t.Fatalf("intern returned %d bytes, want %d", len(got), len(v))
		}
		if d.strBytes > internBytes {
			t.Fatalf("after %d values the table holds %d bytes, over %d", i+1, d.strBytes, internBytes)
		}
	}
	long := strings.Repeat("y", internMaxLen+1)
	if got := d.intern([]byte(long)); got != long {
		t.Fatal("a long value changed")
	}
	if _, ok := d.strs[long]; ok {
		t.Error("a value longer than internMaxLen was kept in the table")
	}
}
