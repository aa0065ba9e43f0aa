package conntrack

import (
	"net/netip"
	"slices"
	"testing"

	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
)

// TestDecoderMatchesTiMo: on a real table (TCP, UDP, ICMP, IPv4 and IPv6,
// zone and mark set), Weir's dump decoder reads what ti-mo/conntrack reads.
func TestDecoderMatchesTiMo(t *testing.T) {
	tp := newTopo(t, true)
	var conn *ct.Conn
	if err := inNetNS(tp.pathB, func() (err error) { conn, err = ct.Dial(nil); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, p := range []uint8{6, 17, 6, 17} {
		src, dst := netip.AddrFrom4([4]byte{10, 20, 0, byte(i)}), netip.MustParseAddr("10.20.1.1")
		if i >= 2 {
			src, dst = netip.AddrFrom16([16]byte{0xfd, 0x20, 15: byte(i)}), netip.MustParseAddr("fd20::1")
		}
		f := ct.NewFlow(p, 0, src, dst, uint16(1000+i), 443, 600, uint32(0x100+i))
		f.Zone = uint16(i)
		if err := conn.Create(f); err != nil {
			t.Fatal(err)
		}
	}
	udpEcho(t, tp, tp.b4, 3, 50)
	udpEcho(t, tp, tp.b6, 2, 60)
	httpGet(t, tp, tp.b4, httpServer(t, tp, tp.b4, 3000))
	sh(t, "ip", "netns", "exec", tp.a, "ping", "-c", "2", "-i", "0.2", tp.b4.String())

	timo, err := conn.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []ctFlow
	for i := range timo {
		var f ctFlow
		fromTiMo(&timo[i], &f)
		f.key.zone = timo[i].Zone
		want = append(want, f)
	}
	var d *dumper
	if err := inNetNS(tp.pathB, func() (err error) { d, err = newDumper(); return err }); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var got []ctFlow
	if err := d.dump(dumpRequest{family: netfilter.ProtoUnspec, proto: -1, zone: -1}, func(f *ctFlow) { got = append(got, *f) }); err != nil {
		t.Fatal(err)
	}
	cmp := func(a, b ctFlow) int {
		for i := range a.key.src {
			if a.key.src[i] != b.key.src[i] {
				return int(a.key.src[i]) - int(b.key.src[i])
			}
		}
		return int(a.key.sport) - int(b.key.sport)
	}
	slices.SortFunc(want, cmp)
	slices.SortFunc(got, cmp)
	if len(got) < 8 || len(got) != len(want) {
		t.Fatalf("decoded %d entries, ti-mo %d (want ≥ 8)", len(got), len(want))
	}
	for i := range got {
		// The table moves between the two dumps only in counters of live
		// connections, which are idle here.
		if got[i] != want[i] {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// FuzzDecodeFlow: any bytes decode or are refused, never a panic, and a
// decoded tuple has a family.
func FuzzDecodeFlow(f *testing.F) {
	flow := ct.NewFlow(6, 0, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1234, 80, 60, 7)
	attrs := []netfilter.Attribute{
		{Type: ctaTupleOrig, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaTupleIP, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaIPv4Src, Data: flow.TupleOrig.IP.SourceAddress.AsSlice()},
				{Type: ctaIPv4Dst, Data: flow.TupleOrig.IP.DestinationAddress.AsSlice()},
			}},
			{Type: ctaTupleProto, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaProtoNum, Data: []byte{6}},
				{Type: ctaProtoSrc, Data: netfilter.Uint16Bytes(1234)},
				{Type: ctaProtoDst, Data: netfilter.Uint16Bytes(80)},
			}},
		}},
		{Type: ctaCountersOrig, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaCountersPackets, Data: netfilter.Uint64Bytes(3)},
			{Type: ctaCountersBytes, Data: netfilter.Uint64Bytes(180)},
		}},
		{Type: ctaMark, Data: netfilter.Uint32Bytes(7)},
		{Type: ctaZone, Data: netfilter.Uint16Bytes(2)},
	}
	seed, err := netfilter.MarshalAttributes(attrs)
	if err != nil {
		f.Fatal(err)
	}
	var got ctFlow
	if !decodeFlow(seed, &got) || !got.tupleOK || got.key.dport != 80 || got.packets != 3 || got.mark != 7 || got.key.zone != 2 {
		f.Fatalf("seed decodes to %+v", got)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{4, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c ctFlow
		if decodeFlow(b, &c) && c.tupleOK && c.key.family != 4 && c.key.family != 6 {
			t.Fatalf("tuple without a family: %+v", c)
		}
	})
}
