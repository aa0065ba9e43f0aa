package ipfix

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// antreaRecord fills r with an Antrea-like flow (used by tests and
// benchmarks).
func antreaRecord(r *flow.Record, i int, v6 bool) {
	if v6 {
		r.SetAddr(flow.SourceAddress, netip.MustParseAddr("fd00:10:244:1::5"))
		r.SetAddr(flow.DestinationAddress, netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 2, 15: byte(i)}))
	} else {
		r.SetAddr(flow.SourceAddress, netip.AddrFrom4([4]byte{10, 244, 1, byte(i)}))
		r.SetAddr(flow.DestinationAddress, netip.AddrFrom4([4]byte{10, 244, 2, byte(i * 7)}))
	}
	r.SetUint(flow.SourceTransportPort, uint64(30000+i))
	r.SetUint(flow.DestinationTransportPort, 8080)
	r.SetUint(flow.ProtocolIdentifier, 6)
	r.SetUint(flow.FlowStart, uint64(time.Unix(1_700_000_000, 123_000_000).UnixNano()))
	r.SetUint(flow.FlowEnd, uint64(time.Unix(1_700_000_060, 456_000_000).UnixNano()))
	r.SetUint(flow.FlowEndReason, 2)
	r.SetUint(flow.PacketDeltaCount, uint64(10+i))
	r.SetUint(flow.OctetDeltaCount, uint64(1500*(10+i)))
	r.SetUint(flow.ReversePacketDeltaCount, uint64(8+i))
	r.SetUint(flow.ReverseOctetDeltaCount, uint64(900*(8+i)))
	r.SetString(flow.SourcePodNamespace, "default")
	r.SetString(flow.SourcePodName, "frontend-7d9c8b6f5-x2x9p")
	r.SetString(flow.DestinationPodNamespace, "backend")
	r.SetString(flow.DestinationPodName, "api-5f6d7c8b9-qw3er")
}

func TestRoundTrip(t *testing.T) {
	longLabel := string(bytes.Repeat([]byte("k"), 300))
	tests := []struct {
		name  string
		build func(b *flow.Batch) []*flow.Record
	}{
		{"antrea v4", func(b *flow.Batch) []*flow.Record {
			var rs []*flow.Record
			for i := 0; i < 40; i++ {
				r := b.Append()
				antreaRecord(r, i, false)
				rs = append(rs, r)
			}
			return rs
		}},
		{"mixed v4 v6 and extras", func(b *flow.Batch) []*flow.Record {
			var rs []*flow.Record
			for i := 0; i < 25; i++ {
				r := b.Append()
				antreaRecord(r, i, i%2 == 1)
				if i%3 == 0 {
					r.Extra = append(r.Extra,
						flow.Field{Enterprise: 0, Element: 56, Value: b.CopyBytes([]byte{1, 2, 3, 4, 5, 6})},            // sourceMacAddress
						flow.Field{Enterprise: 99999, Element: 7, Variable: true, Value: b.CopyBytes([]byte("opaque"))}, // unknown PEN
						flow.Field{Enterprise: 0, Element: 82, Variable: true},                                          // empty interfaceName
					)
				}
				if i%5 == 0 {
					r.SetString(flow.SourcePodLabels, longLabel)
					r.SetAddr(flow.DestinationClusterIP, netip.MustParseAddr("::ffff:10.96.0.10"))
				}
				rs = append(rs, r)
			}
			return rs
		}},
		{"minimal", func(b *flow.Batch) []*flow.Record {
			r := b.Append()
			r.SetUint(flow.ProtocolIdentifier, 17)
			return []*flow.Record{r}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := flow.NewBatch(0)
			recs := tt.build(in)
			enc := NewEncoder(EncoderOptions{ObservationDomainID: 7})
			dec := NewDecoder(DecoderOptions{})
			out := flow.NewBatch(0)
			msgs := 0
			err := enc.Encode(recs, time.Unix(1_700_000_100, 0), func(m []byte) error {
				msgs++
				if len(m) > DefaultMaxMessageSize {
					t.Errorf("message of %d bytes exceeds %d", len(m), DefaultMaxMessageSize)
				}
				if _, err := dec.Decode(out, m, testExporter); err != nil {
					t.Errorf("decode: %v", err)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if out.Len() != len(recs) {
				t.Fatalf("decoded %d records from %d messages, want %d", out.Len(), msgs, len(recs))
			}
			for i, want := range recs {
				assertSameRecord(t, i, out.Records[i], want)
				if got := out.Records[i].ObservationDomainID; got != 7 {
					t.Errorf("record %d domain %d, want 7", i, got)
				}
				if got := out.Records[i].Exporter; got != testExporter {
					t.Errorf("record %d exporter %v", i, got)
				}
			}
		})
	}
}

// assertSameRecord compares the exported content of two records: typed
// fields (addresses unmapped, times at millisecond resolution) and Extra.
func assertSameRecord(t *testing.T, i int, got, want *flow.Record) {
	t.Helper()
	for f := flow.FieldID(0); int(f) < flow.NumFields; f++ {
		if got.Has(f) != want.Has(f) {
			t.Errorf("record %d field %s: present %v, want %v", i, flow.Fields[f].Name, got.Has(f), want.Has(f))
			continue
		}
		switch flow.Fields[f].Kind {
		case flow.KindAddress:
			if g, w := got.Addr(f), want.Addr(f).Unmap(); g != w {
				t.Errorf("record %d %s = %v, want %v", i, flow.Fields[f].Name, g, w)
			}
		case flow.KindString:
			if g, w := got.String(f), want.String(f); g != w {
				t.Errorf("record %d %s = %q, want %q", i, flow.Fields[f].Name, g, w)
			}
		case flow.KindTime:
			if g, w := int64(got.Uint(f)), int64(want.Uint(f))/1e6*1e6; g != w {
				t.Errorf("record %d %s = %d, want %d", i, flow.Fields[f].Name, g, w)
			}
		default:
			if g, w := got.Uint(f), want.Uint(f); g != w {
				t.Errorf("record %d %s = %d, want %d", i, flow.Fields[f].Name, g, w)
			}
		}
	}
	if len(got.Extra) != len(want.Extra) {
		t.Errorf("record %d: %d extra IEs, want %d", i, len(got.Extra), len(want.Extra))
		return
	}
	for j := range want.Extra {
		g, w := got.Extra[j], want.Extra[j]
		if g.Key() != w.Key() || g.Variable != w.Variable || !bytes.Equal(g.Value, w.Value) {
			t.Errorf("record %d extra %d = %+v, want %+v", i, j, g, w)
		}
	}
}
