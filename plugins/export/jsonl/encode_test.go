package jsonl

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

// randomRecord fills r from rng: any subset of the typed fields, IPv4,
// IPv4-mapped and IPv6 addresses, strings with quotes, control bytes and
// invalid UTF-8, times from before 1970 to after 9999, and verbatim IEs of
// known types (right and wrong lengths) and unknown ones.
func randomRecord(rng *rand.Rand, b *flow.Batch) *flow.Record {
	r := b.Append()
	if rng.IntN(4) > 0 {
		var a [16]byte
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		switch rng.IntN(3) {
		case 0:
			r.Exporter = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), uint16(rng.Uint32()))
		case 1:
			r.Exporter = netip.AddrPortFrom(netip.AddrFrom16(netip.AddrFrom4([4]byte(a[:4])).As16()), uint16(rng.Uint32()))
		default:
			r.Exporter = netip.AddrPortFrom(netip.AddrFrom16(a), uint16(rng.Uint32()))
		}
	}
	r.ObservationDomainID = rng.Uint32()
	strs := []string{"", "web-0", `a"b\c`, "node\n1\x01\x7f", "caf\xc3\xa9", "bad\xff\xfeutf8", "\u2028x", `{"app":"web"}`}
	for i := range flow.Fields {
		if rng.IntN(2) == 0 {
			continue
		}
		f := flow.FieldID(i)
		switch flow.Fields[i].Kind {
		case flow.KindAddress:
			var a [16]byte
			for j := range a {
				a[j] = byte(rng.Uint32())
			}
			switch rng.IntN(4) {
			case 0:
				r.SetAddr(f, netip.AddrFrom4([4]byte(a[:4])))
			case 1:
				r.SetAddr(f, netip.AddrFrom16(netip.AddrFrom4([4]byte(a[:4])).As16()))
			case 2:
				r.SetAddr(f, netip.AddrFrom16(a))
			default:
				r.SetAddr(f, netip.IPv6Unspecified())
			}
		case flow.KindString:
			r.SetString(f, strs[rng.IntN(len(strs))])
		case flow.KindTime:
			var ns int64
			switch rng.IntN(4) {
			case 0:
				ns = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano() + rng.Int64N(int64(400*24*time.Hour))
			case 1:
				ns = -rng.Int64N(1 << 62)
			case 2:
				ns = rng.Int64()
			default:
				ns = int64(rng.IntN(3)) - 1
			}
			r.SetUint(f, uint64(ns))
		default:
			r.SetUint(f, rng.Uint64()>>rng.IntN(64))
		}
	}
	extras := []flow.Field{
		{Element: 60, Value: []byte{4}},                                               // ipVersion, unsigned8
		{Element: 60, Value: []byte{1, 2, 3}},                                         // wrong length
		{Element: 210, Value: []byte{0, 0, 0}},                                        // paddingOctets
		{Element: 56, Value: []byte{0, 0x1b, 0x21, 0xa, 0xb, 0xc}},                    // sourceMacAddress
		{Element: 82, Value: []byte("eth0\x01\"")},                                    // interfaceName, string
		{Element: 150, Value: binary.BigEndian.AppendUint32(nil, 1_700_000_000)},      // flowStartSeconds
		{Element: 156, Value: binary.BigEndian.AppendUint64(nil, 0xe8a1b2c3d4e5f607)}, // flowStartNanoseconds
		{Element: 18, Value: []byte{10, 0, 0, 1}},                                     // bgpNextHopIPv4Address
		{Element: 63, Value: netip.MustParseAddr("2001:db8::1").AsSlice()},            // ipNextHopIPv6Address
		{Enterprise: 99999, Element: 42, Value: []byte{0xde, 0xad}},
		{Enterprise: 56506, Element: 145, Value: binary.BigEndian.AppendUint64(nil, 12345)}, // throughput
	}
	for range rng.IntN(4) {
		x := extras[rng.IntN(len(extras))]
		x.Value = b.CopyBytes(x.Value)
		r.Extra = append(r.Extra, x)
	}
	return r
}

// TestEncoderMatchesReference checks the fast encoder against the one it
// replaced, byte for byte, on random records, with and without Extra, and
// that every line is valid JSON.
func TestEncoderMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 1))
	b := flow.NewBatch(1)
	for _, extra := range []bool{false, true} {
		e := Encoder{Extra: extra}
		for i := range 20000 {
			b.Reset()
			r := randomRecord(rng, b)
			want := refAppendRecord(nil, r, extra)
			got := e.Append(nil, r)
			if !bytes.Equal(got, want) {
				t.Fatalf("record %d (extra %v):\n got %s\nwant %s", i, extra, got, want)
			}
			if !json.Valid(got) {
				t.Fatalf("record %d: not JSON: %s", i, got)
			}
		}
	}
}

// TestEncoderCaches checks the encoder's remembered texts (exporter and
// domain head, each time field's second) against the reference on runs of
// records that share them, change one, or come back to an older one.
func TestEncoderCaches(t *testing.T) {
	exps := []netip.AddrPort{
		{},
		netip.MustParseAddrPort("192.0.2.1:4739"),
		netip.MustParseAddrPort("192.0.2.1:4740"),
		netip.MustParseAddrPort("[::ffff:192.0.2.1]:4739"),
		netip.MustParseAddrPort("[2001:db8::1]:4739"),
		netip.MustParseAddrPort("[fe80::1%eth0]:4739"),
	}
	t0 := time.Date(2026, 11, 27, 23, 59, 59, 0, time.UTC).UnixNano()
	times := []int64{
		t0, t0 + 999_999_999, t0 + 1e9, t0 + 1e9 + 1, t0 - 1, t0 + 12_345_678,
		0, -1, -1e9, -1e9 - 1, 999_999, 1e6,
		time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixNano(),
		time.Date(1677, 9, 21, 0, 12, 44, 0, time.UTC).UnixNano(),
		math.MinInt64, math.MinInt64 + 1e9, math.MaxInt64, math.MaxInt64 - 1e9,
	}
	rng := rand.New(rand.NewPCG(15, 2))
	b := flow.NewBatch(1)
	e := Encoder{Extra: true}
	for i := range 20000 {
		b.Reset()
		r := b.Append()
		r.Exporter = exps[rng.IntN(len(exps))]
		r.ObservationDomainID = uint32(rng.IntN(3))
		r.SetUint(flow.FlowStart, uint64(times[rng.IntN(len(times))]))
		if rng.IntN(4) > 0 { // the sum may wrap: still a time
			r.SetUint(flow.FlowEnd, uint64(times[rng.IntN(len(times))]+rng.Int64N(3e9)))
		}
		r.SetUint(flow.OctetDeltaCount, rng.Uint64()>>rng.IntN(64))
		want := refAppendRecord(nil, r, true)
		if got := e.Append(nil, r); !bytes.Equal(got, want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestEncoderAllocs checks that steady-state encoding allocates nothing.
func TestEncoderAllocs(t *testing.T) {
	batch := plugintest.MixedBatch(256)
	for _, r := range batch.Records {
		r.Extra = append(r.Extra, flow.Field{Element: 60, Value: []byte{4}})
	}
	e := Encoder{Extra: true}
	buf := make([]byte, 0, 1<<20)
	allocs := testing.AllocsPerRun(20, func() {
		buf = buf[:0]
		for _, r := range batch.Records {
			buf = e.Append(buf, r)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch, want 0", allocs)
	}
}

func FuzzEncoder(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		b := flow.NewBatch(1)
		r := randomRecord(rng, b)
		var e Encoder
		e.Extra = true
		got := e.Append(nil, r)
		if want := refAppendRecord(nil, r, true); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkEncoder encodes Antrea-like records as the ingest bench sends
// them (IPv4 5-tuple, times, six counters, two Pod names).
func BenchmarkEncoder(b *testing.B) {
	batch := antreaBatch(256)
	e := Encoder{Extra: true}
	buf := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, r := range batch.Records {
			buf = e.Append(buf, r)
			buf = append(buf, '\n')
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/record")
}

// BenchmarkReferenceEncoder is the encoder before issue 15 on the same
// records, for the ratio.
func BenchmarkReferenceEncoder(b *testing.B) {
	batch := antreaBatch(256)
	buf := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, r := range batch.Records {
			buf = refAppendRecord(buf, r, true)
			buf = append(buf, '\n')
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/record")
}

func antreaBatch(n int) *flow.Batch {
	b := flow.NewBatch(n)
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		r := b.Append()
		r.Exporter = netip.MustParseAddrPort("127.0.0.1:42024")
		r.ObservationDomainID = 1
		r.SetAddr(flow.SourceAddress, netip.AddrFrom4([4]byte{10, 244, byte(i / 200), byte(i)}))
		r.SetAddr(flow.DestinationAddress, netip.AddrFrom4([4]byte{10, 96, 0, byte(i % 7)}))
		r.SetUint(flow.SourceTransportPort, uint64(40000+i))
		r.SetUint(flow.DestinationTransportPort, 8080)
		r.SetUint(flow.ProtocolIdentifier, 6)
		r.SetUint(flow.FlowStart, uint64(t0.UnixNano()))
		r.SetUint(flow.FlowEnd, uint64(t0.Add(time.Duration(i)*time.Second).UnixNano()))
		r.SetUint(flow.PacketDeltaCount, 1)
		r.SetUint(flow.OctetDeltaCount, uint64(1500+i))
		r.SetUint(flow.PacketTotalCount, uint64(100+i))
		r.SetUint(flow.OctetTotalCount, uint64(150000+i))
		r.SetUint(flow.ReversePacketDeltaCount, 1)
		r.SetUint(flow.ReverseOctetDeltaCount, uint64(900+i))
		r.SetString(flow.SourcePodName, "frontend-7d9c6b-00001")
		r.SetString(flow.DestinationPodName, "backend-1")
	}
	return b
}
