package aggregate

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// A flow's metadata is everything of its first record (of each side, for an
// inter-Node Antrea flow) that is neither Flow Key, counter, time nor one of
// the fields merged per record: the exporter, Pod/Node/Service names,
// policies, labels, and every IE Weir has no typed field for. It is encoded
// into one string and interned, so flows between the same Pods under the
// same policies share it. Items, big endian:
//
//	'E' addr[16] port[2] domain[4] v4[1]         exporter and observation domain
//	'U' field[1] value[8]                         typed unsigned field
//	'A' field[1] v4[1] addr[16]                   typed address field
//	'S' field[1] len[2] bytes                     typed string field
//	'X' enterprise[4] element[2] var[1] len[2] v  IE without a typed field

// merged are typed fields the aggregation itself sets.
var merged = func() (s flow.FieldSet) {
	for _, f := range []flow.FieldID{
		flow.SourceAddress, flow.DestinationAddress, flow.SourceTransportPort, flow.DestinationTransportPort,
		flow.ProtocolIdentifier, flow.TCPControlBits, flow.FlowEndReason, flow.FlowStart, flow.FlowEnd,
		flow.OctetDeltaCount, flow.PacketDeltaCount, flow.OctetTotalCount, flow.PacketTotalCount,
		flow.ReverseOctetDeltaCount, flow.ReversePacketDeltaCount, flow.ReverseOctetTotalCount,
		flow.ReversePacketTotalCount, flow.TCPState,
	} {
		s.Add(f)
	}
	return s
}()

// computed reports whether an IE is one the aggregation writes (so an
// input's copy is not kept): Antrea's per-side counters, throughputs and
// per-side flowEndSeconds, and RFC 7015's originalFlows*.
func computed(k flow.IEKey) bool {
	switch k.Enterprise {
	case flow.AntreaPEN:
		return (k.Element >= ieFromSourceNode && k.Element < ieFromDestinationNode+8) ||
			(k.Element >= ieThroughput && k.Element <= ieFlowEndSecondsFromSourceNode+1)
	case flow.IANA:
		return k.Element >= ieOriginalFlowsPresent && k.Element <= ieOriginalFlowsCompleted
	}
	return false
}

// appendMeta encodes r's metadata onto dst.
func appendMeta(dst []byte, r *flow.Record) []byte {
	a := r.Exporter.Addr().As16()
	dst = append(dst, 'E')
	dst = append(dst, a[:]...)
	dst = binary.BigEndian.AppendUint16(dst, r.Exporter.Port())
	dst = binary.BigEndian.AppendUint32(dst, r.ObservationDomainID)
	dst = append(dst, b2u(r.Exporter.Addr().Is4()))
	present := r.PresentSet()
	for f, ok := present.Next(0); ok; f, ok = present.Next(f + 1) {
		if merged.Has(f) {
			continue
		}
		switch f.Info().Kind {
		case flow.KindString:
			s := r.String(f)
			if len(s) > 0xffff {
				s = s[:0xffff]
			}
			dst = append(dst, 'S', byte(f))
			dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
			dst = append(dst, s...)
		case flow.KindAddress:
			ad := r.Addr(f)
			b := ad.As16()
			dst = append(dst, 'A', byte(f), b2u(ad.Is4()))
			dst = append(dst, b[:]...)
		default:
			dst = append(dst, 'U', byte(f))
			dst = binary.BigEndian.AppendUint64(dst, r.Uint(f))
		}
	}
	for i := range r.Extra {
		x := &r.Extra[i]
		if computed(x.Key()) {
			continue
		}
		v := x.Value
		if len(v) > 0xffff {
			v = v[:0xffff]
		}
		dst = append(dst, 'X')
		dst = binary.BigEndian.AppendUint32(dst, x.Enterprise)
		dst = binary.BigEndian.AppendUint16(dst, x.Element)
		dst = append(dst, b2u(x.Variable))
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// decodeMeta sets r's fields from an encoded metadata string m. With
// overlay, it fills only what r lacks (the other Node's half: Antrea's
// correlation keeps existing values and takes the new non-zero ones).
// Strings point into m, which is immutable; IE values are copied into b.
func decodeMeta(r *flow.Record, m string, overlay bool, b *flow.Batch) {
	for i := 0; i < len(m); {
		switch m[i] {
		case 'E':
			if !overlay {
				var a [16]byte
				copy(a[:], m[i+1:i+17])
				ad := netip.AddrFrom16(a)
				if m[i+23] == 1 {
					ad = ad.Unmap()
				}
				r.Exporter = netip.AddrPortFrom(ad, be16(m, i+17))
				r.ObservationDomainID = be32(m, i+19)
			}
			i += 24
		case 'U':
			f := flow.FieldID(m[i+1])
			v := be64(m, i+2)
			if !overlay || (v != 0 && !r.Has(f)) {
				r.SetUint(f, v)
			}
			i += 10
		case 'A':
			f := flow.FieldID(m[i+1])
			var a [16]byte
			copy(a[:], m[i+3:i+19])
			ad := netip.AddrFrom16(a)
			if m[i+2] == 1 {
				ad = ad.Unmap()
			}
			if !overlay || !r.Has(f) {
				r.SetAddr(f, ad)
			}
			i += 19
		case 'S':
			f := flow.FieldID(m[i+1])
			n := int(be16(m, i+2))
			if !overlay || r.String(f) == "" {
				r.SetString(f, m[i+4:i+4+n])
			}
			i += 4 + n
		case 'X':
			k := flow.IEKey{Enterprise: be32(m, i+1), Element: be16(m, i+5)}
			variable := m[i+7] == 1
			n := int(be16(m, i+8))
			if !overlay || r.FindExtra(k) == nil {
				r.Extra = append(r.Extra, flow.Field{Enterprise: k.Enterprise, Element: k.Element, Variable: variable,
					Value: b.CopyBytes(bytesOf(m[i+10 : i+10+n]))})
			}
			i += 10 + n
		default:
			return // not reached: m is only ever what appendMeta wrote
		}
	}
}

func be16(s string, i int) uint16 { return uint16(s[i])<<8 | uint16(s[i+1]) }
func be32(s string, i int) uint32 { return uint32(be16(s, i))<<16 | uint32(be16(s, i+2)) }
func be64(s string, i int) uint64 { return uint64(be32(s, i))<<32 | uint64(be32(s, i+4)) }

// bytesOf views s as bytes, read-only, without copying.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
