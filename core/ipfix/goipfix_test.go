package ipfix

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vmware/go-ipfix/pkg/entities"
	"github.com/vmware/go-ipfix/pkg/registry"

	"github.com/weir-flow/weir/core/flow"
)

// goIPFIXMessages builds, with go-ipfix as the reference exporting process,
// a template message and a data message of n records (IPv4 or IPv6 5-tuple,
// seconds times, counters, reverse counters, Antrea strings and numbers, an
// Antrea IE without a typed field, and two IEs of an unregistered PEN).
func goIPFIXMessages(t testing.TB, n int, v6 bool) (tmpl, data []byte) {
	t.Helper()
	loadRegistry() // registry.LoadRegistry has run
	get := func(name string, pen uint32) *entities.InfoElement {
		ie, err := registry.GetInfoElement(name, pen)
		if err != nil {
			t.Fatal(err)
		}
		return ie
	}
	src, dst := "sourceIPv4Address", "destinationIPv4Address"
	if v6 {
		src, dst = "sourceIPv6Address", "destinationIPv6Address"
	}
	ies := []*entities.InfoElement{
		get(src, 0), get(dst, 0), get("sourceTransportPort", 0), get("destinationTransportPort", 0),
		get("protocolIdentifier", 0), get("flowStartSeconds", 0), get("flowEndSeconds", 0),
		get("packetDeltaCount", 0), get("octetDeltaCount", 0),
		get("reversePacketDeltaCount", registry.IANAReversedEnterpriseID),
		get("sourcePodName", registry.AntreaEnterpriseID), get("destinationPodNamespace", registry.AntreaEnterpriseID),
		get("destinationClusterIPv4", registry.AntreaEnterpriseID), get("flowType", registry.AntreaEnterpriseID),
		get("ingressNetworkPolicyRulePriority", registry.AntreaEnterpriseID),
		entities.NewInfoElement("weirTestCounter", 1, entities.Unsigned32, 4242, 4),
		entities.NewInfoElement("weirTestLabel", 2, entities.String, 4242, entities.VariableLength),
	}
	const id = 300
	ts, err := entities.MakeTemplateSet(id, ies)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl, err = goIPFIXMessage(ts, 5, 1_700_000_100); err != nil {
		t.Fatal(err)
	}
	ds := entities.NewSet(false)
	if err := ds.PrepareSet(entities.Data, id); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		s, d := net.IPv4(10, 1, 0, byte(i)).To4(), net.IPv4(10, 2, 0, byte(i)).To4()
		if v6 {
			s, d = net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8::2")
			d[15] = byte(i)
		}
		vals := []entities.InfoElementWithValue{
			entities.NewIPAddressInfoElement(ies[0], s),
			entities.NewIPAddressInfoElement(ies[1], d),
			entities.NewUnsigned16InfoElement(ies[2], uint16(40000+i)),
			entities.NewUnsigned16InfoElement(ies[3], 443),
			entities.NewUnsigned8InfoElement(ies[4], 6),
			entities.NewDateTimeSecondsInfoElement(ies[5], 1_700_000_000),
			entities.NewDateTimeSecondsInfoElement(ies[6], uint32(1_700_000_050+i)),
			entities.NewUnsigned64InfoElement(ies[7], uint64(10+i)),
			entities.NewUnsigned64InfoElement(ies[8], uint64(1000+i)),
			entities.NewUnsigned64InfoElement(ies[9], uint64(7+i)),
			entities.NewStringInfoElement(ies[10], "frontend-abc"),
			entities.NewStringInfoElement(ies[11], "backend"),
			entities.NewIPAddressInfoElement(ies[12], net.IPv4(10, 96, 0, 10).To4()),
			entities.NewUnsigned8InfoElement(ies[13], 2),
			entities.NewSigned32InfoElement(ies[14], -1),
			entities.NewUnsigned32InfoElement(ies[15], uint32(0xabcd0000+i)),
			entities.NewStringInfoElement(ies[16], "team=weir"),
		}
		if err := ds.AddRecordV2(vals, id); err != nil {
			t.Fatal(err)
		}
	}
	if data, err = goIPFIXMessage(ds, 5, 1_700_000_100); err != nil {
		t.Fatal(err)
	}
	return tmpl, data
}

// goIPFIXMessage frames a go-ipfix set as a message, as go-ipfix's
// exporter.CreateIPFIXMsg does (that package is not imported: it pulls DTLS
// dependencies Weir does not need).
func goIPFIXMessage(s entities.Set, domain, exportTime uint32) ([]byte, error) {
	s.UpdateLenInHeader()
	body := append([]byte(nil), s.GetHeaderBuffer()...)
	for _, r := range s.GetRecords() {
		buf, err := r.GetBuffer()
		if err != nil {
			return nil, err
		}
		body = append(body, buf...)
	}
	return message(domain, exportTime, body), nil
}

func TestGoIPFIXInterop(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			tmpl, data := goIPFIXMessages(t, 20, v6)
			d := NewDecoder(DecoderOptions{})
			var unknown []flow.IEKey
			d.UnknownIE(func(k flow.IEKey) { unknown = append(unknown, k) })
			b, errs := decodeAll(t, d, tmpl, data)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			wantLen(t, b, 20)
			if len(unknown) != 2 || unknown[0] != (flow.IEKey{Enterprise: 4242, Element: 1}) {
				t.Errorf("unknown IEs %v", unknown)
			}
			for i, r := range b.Records {
				wantSrc := netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})
				wantDst := netip.AddrFrom4([4]byte{10, 2, 0, byte(i)})
				if v6 {
					wantSrc = netip.MustParseAddr("2001:db8::1")
					a := netip.MustParseAddr("2001:db8::2").As16()
					a[15] = byte(i)
					wantDst = netip.AddrFrom16(a)
				}
				if r.SourceAddress != wantSrc || r.DestinationAddress != wantDst || r.SourceTransportPort != uint16(40000+i) ||
					r.DestinationTransportPort != 443 || r.ProtocolIdentifier != 6 {
					t.Errorf("record %d 5-tuple %v %v %d %d %d", i, r.SourceAddress, r.DestinationAddress, r.SourceTransportPort, r.DestinationTransportPort, r.ProtocolIdentifier)
				}
				if r.FlowStart != 1_700_000_000e9 || r.FlowEnd != int64(1_700_000_050+i)*1e9 {
					t.Errorf("record %d times %d %d", i, r.FlowStart, r.FlowEnd)
				}
				if r.PacketDeltaCount != uint64(10+i) || r.OctetDeltaCount != uint64(1000+i) || r.ReversePacketDeltaCount != uint64(7+i) {
					t.Errorf("record %d counters %d %d %d", i, r.PacketDeltaCount, r.OctetDeltaCount, r.ReversePacketDeltaCount)
				}
				if r.SourcePodName != "frontend-abc" || r.DestinationPodNamespace != "backend" || r.FlowType != 2 ||
					r.DestinationClusterIP != netip.MustParseAddr("10.96.0.10") {
					t.Errorf("record %d antrea %q %q %d %v", i, r.SourcePodName, r.DestinationPodNamespace, r.FlowType, r.DestinationClusterIP)
				}
				if r.ObservationDomainID != 5 {
					t.Errorf("record %d domain %d", i, r.ObservationDomainID)
				}
				if len(r.Extra) != 3 {
					t.Fatalf("record %d extra %+v", i, r.Extra)
				}
				prio, ctr, lbl := r.Extra[0], r.Extra[1], r.Extra[2]
				if prio.Enterprise != flow.AntreaPEN || FormatValue(Signed32, prio.Value) != int64(-1) {
					t.Errorf("record %d priority %+v", i, prio)
				}
				if ctr.Enterprise != 4242 || ctr.Element != 1 || ctr.Variable || FormatValue(Unsigned32, ctr.Value) != uint64(0xabcd0000+i) {
					t.Errorf("record %d counter %+v", i, ctr)
				}
				if lbl.Enterprise != 4242 || lbl.Element != 2 || !lbl.Variable || string(lbl.Value) != "team=weir" {
					t.Errorf("record %d label %+v", i, lbl)
				}
			}
			// Re-encode with ours and decode again: the same values, Extra
			// byte-identical.
			enc := NewEncoder(EncoderOptions{ObservationDomainID: 5})
			d2 := NewDecoder(DecoderOptions{})
			out := flow.NewBatch(0)
			if err := enc.Encode(b.Records, time.Unix(1_700_000_200, 0), func(m []byte) error {
				_, err := d2.Decode(out, m, testExporter)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			wantLen(t, out, 20)
			for i := range b.Records {
				assertSameRecord(t, i, out.Records[i], b.Records[i])
			}
		})
	}
}
