package pcap_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/source/pcap"
)

// softflowdCapture is the project's real capture, made by
// test/testdata/make-capture.sh. The expectations below describe that
// file; regenerate them with it.
const softflowdCapture = "../../../test/testdata/softflowd-ipfix.pcap"

// replay runs a source over path to the end and returns what it emitted.
func replay(t *testing.T, cfg pcap.Config) (*pcap.Source, []*flow.Record, *prometheus.Registry) {
	t.Helper()
	set := plugin.NopSettings(pcap.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	s, err := pcap.New(&cfg, set)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	em := plugintest.NewEmitter(256)
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatalf("Start: %v", err)
	}
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("replay did not finish")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return s, em.Sink.Records(), reg
}

func TestReplaySoftflowdCapture(t *testing.T) {
	for name, ports := range map[string][]int{"any_port": nil, "port_39165": {39165}} {
		t.Run(name, func(t *testing.T) {
			_, recs, _ := replay(t, pcap.Config{Path: softflowdCapture, Ports: ports})
			// tshark -d udp.port==39165,cflow lists 33 flows in the two
			// messages softflowd sent.
			if len(recs) != 33 {
				t.Fatalf("got %d records, want the 33 flows softflowd exported", len(recs))
			}
			exporter := netip.MustParseAddrPort("127.0.0.1:46099")
			var big *flow.Record
			protos := map[uint8]int{}
			for _, r := range recs {
				if r.Exporter != exporter {
					t.Errorf("record from %v, want exporter %v", r.Exporter, exporter)
				}
				if r.FlowStart == 0 || r.FlowEnd < r.FlowStart {
					t.Errorf("record %v→%v has times %d..%d", r.SourceAddress, r.DestinationAddress, r.FlowStart, r.FlowEnd)
				}
				protos[r.ProtocolIdentifier]++
				if r.SourceAddress == netip.MustParseAddr("10.78.0.2") && r.OctetDeltaCount == 20561 {
					big = r
				}
			}
			if protos[6] == 0 || protos[17] == 0 || protos[1] == 0 || protos[58] == 0 {
				t.Errorf("protocols %v: want TCP, UDP, ICMP and ICMPv6 flows", protos)
			}
			if big == nil {
				t.Fatal("missing the 20561-byte HTTP response flow 10.78.0.2:8080 → 10.78.0.1")
			}
			if big.SourceTransportPort != 8080 || big.DestinationAddress != netip.MustParseAddr("10.78.0.1") ||
				big.PacketDeltaCount != 7 || big.ProtocolIdentifier != 6 {
				t.Errorf("HTTP response flow = %v:%d → %v:%d proto %d, %d packets; want 10.78.0.2:8080 → 10.78.0.1, TCP, 7 packets",
					big.SourceAddress, big.SourceTransportPort, big.DestinationAddress, big.DestinationTransportPort,
					big.ProtocolIdentifier, big.PacketDeltaCount)
			}
		})
	}
}

// testRecords builds records and the IPFIX messages that carry them.
func testMessages(t testing.TB, n int) ([]*flow.Record, [][]byte) {
	t.Helper()
	b := flow.NewBatch(n)
	for i := 0; i < n; i++ {
		r := plugintest.Record(b, "192.0.2.1", "198.51.100.2", 6, uint16(1000+i), 443, uint64(i+1), uint64(100*(i+1)))
		r.SetUint(flow.FlowStart, uint64(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()))
		r.SetUint(flow.FlowEnd, uint64(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC).UnixNano()))
		r.Extra = append(r.Extra, flow.Field{Enterprise: 99999, Element: 42, Value: []byte{0xde, 0xad, byte(i)}})
	}
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: 7, MaxMessageSize: 1400})
	var msgs [][]byte
	if err := enc.Encode(b.Records, time.Unix(1767323045, 0), func(m []byte) error {
		msgs = append(msgs, bytes.Clone(m))
		return nil
	}); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b.Records, msgs
}

var (
	exporter4 = netip.MustParseAddrPort("192.0.2.10:50000")
	exporter6 = netip.MustParseAddrPort("[2001:db8::10]:50001")
)

// udp builds an IPv4 or IPv6 UDP packet (no link layer).
func udp(src netip.AddrPort, dport uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	return ipPacket(src.Addr(), 17, u)
}

func ipPacket(src netip.Addr, proto uint8, l4 []byte) []byte {
	if src.Is4() {
		ip := make([]byte, 20, 20+len(l4))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[8], ip[9] = 64, proto
		s := src.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], []byte{127, 0, 0, 1})
		return append(ip, l4...)
	}
	ip := make([]byte, 40, 40+len(l4))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6], ip[7] = proto, 64
	s := src.As16()
	copy(ip[8:], s[:])
	ip[39] = 1
	return append(ip, l4...)
}

// frame wraps an IP packet in a link-layer header of type lt.
func frame(lt uint32, ip []byte) []byte {
	v6 := ip[0]>>4 == 6
	et := []byte{0x08, 0x00}
	if v6 {
		et = []byte{0x86, 0xdd}
	}
	switch lt {
	case 1: // Ethernet
		return append(append(make([]byte, 12), et...), ip...)
	case 1 | vlanMarker: // Ethernet with a VLAN tag (a test-only marker)
		h := append(make([]byte, 12), 0x81, 0x00, 0x00, 0x05)
		return append(append(h, et...), ip...)
	case 113: // Linux SLL
		h := make([]byte, 14)
		return append(append(h, et...), ip...)
	case 276: // Linux SLL2
		h := append(append([]byte{}, et...), make([]byte, 18)...)
		return append(h, ip...)
	case 0: // BSD loopback, host order
		fam := uint32(2)
		if v6 {
			fam = 30
		}
		h := binary.LittleEndian.AppendUint32(nil, fam)
		return append(h, ip...)
	case 108: // OpenBSD loopback, network order
		fam := uint32(2)
		if v6 {
			fam = 24
		}
		return append(binary.BigEndian.AppendUint32(nil, fam), ip...)
	}
	return ip // raw
}

type packet struct {
	ts   time.Time
	data []byte
}

// writePcap writes a classic pcap file by hand, so that link types gopacket
// cannot represent (SLL2 = 276) can be written too.
func writePcap(t testing.TB, lt uint32, pkts []packet) string {
	t.Helper()
	var buf bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], lt)
	buf.Write(hdr)
	for _, p := range pkts {
		rh := make([]byte, 16)
		binary.LittleEndian.PutUint32(rh[0:], uint32(p.ts.Unix()))
		binary.LittleEndian.PutUint32(rh[4:], uint32(p.ts.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rh[8:], uint32(len(p.data)))
		binary.LittleEndian.PutUint32(rh[12:], uint32(len(p.data)))
		buf.Write(rh)
		buf.Write(p.data)
	}
	path := filepath.Join(t.TempDir(), "capture.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sameRecords(t *testing.T, got, want []*flow.Record, from netip.AddrPort) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Exporter != from || g.ObservationDomainID != 7 {
			t.Errorf("record %d: exporter %v domain %d, want %v domain 7", i, g.Exporter, g.ObservationDomainID, from)
		}
		if g.SourceAddress != w.SourceAddress || g.DestinationAddress != w.DestinationAddress ||
			g.SourceTransportPort != w.SourceTransportPort || g.DestinationTransportPort != w.DestinationTransportPort ||
			g.ProtocolIdentifier != w.ProtocolIdentifier || g.PacketDeltaCount != w.PacketDeltaCount ||
			g.OctetDeltaCount != w.OctetDeltaCount || g.FlowStart != w.FlowStart || g.FlowEnd != w.FlowEnd {
			t.Errorf("record %d = %+v\nwant %+v", i, *g, *w)
		}
		f := g.FindExtra(flow.IEKey{Enterprise: 99999, Element: 42})
		if f == nil || !bytes.Equal(f.Value, w.Extra[0].Value) {
			t.Errorf("record %d: unknown IE 99999/42 = %v, want %x", i, f, w.Extra[0].Value)
		}
	}
}

// vlanMarker marks a test case's link type as Ethernet with a VLAN tag; it
// is outside the 16 bits a pcap link type uses, so it clashes with none.
const vlanMarker = 1 << 20

func TestLinkTypes(t *testing.T) {
	want, msgs := testMessages(t, 40)
	cases := []struct {
		name string
		lt   uint32
	}{
		{"ethernet", 1}, {"ethernet_vlan", 1 | vlanMarker}, {"linux_sll", 113}, {"linux_sll2", 276},
		{"raw", 101}, {"ipv4_ipv6_linktype", 228}, {"null", 0}, {"loop", 108},
	}
	for _, c := range cases {
		for _, from := range []netip.AddrPort{exporter4, exporter6} {
			lt := c.lt &^ vlanMarker
			if c.lt == 228 && from.Addr().Is6() {
				lt = 229
			}
			t.Run(c.name+"/"+from.Addr().String(), func(t *testing.T) {
				var pkts []packet
				ts := time.Unix(1767323045, 0)
				for _, m := range msgs {
					pkts = append(pkts, packet{ts, frame(c.lt, udp(from, 4739, m))})
					ts = ts.Add(time.Millisecond)
				}
				path := writePcap(t, lt, pkts)
				_, got, _ := replay(t, pcap.Config{Path: path, Ports: []int{4739}})
				sameRecords(t, got, want, from)
			})
		}
	}
}

func TestPcapng(t *testing.T) {
	want, msgs := testMessages(t, 10)
	path := filepath.Join(t.TempDir(), "capture.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		data := frame(1, udp(exporter6, 4739, m))
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1767323045, 0), CaptureLength: len(data), Length: len(data)}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, got, _ := replay(t, pcap.Config{Path: path})
	sameRecords(t, got, want, exporter6)
}

func TestSkippedPackets(t *testing.T) {
	want, msgs := testMessages(t, 5)
	good := frame(1, udp(exporter4, 4739, msgs[0]))
	tcp := frame(1, ipPacket(exporter4.Addr(), 6, make([]byte, 40)))
	frag := frame(1, udp(exporter4, 4739, msgs[0]))
	frag[14+6] = 0x20 // more fragments
	truncated := good[:len(good)-10]
	dns := frame(1, udp(exporter4, 53, []byte("not an ipfix message at all")))
	otherPort := frame(1, udp(exporter4, 9999, msgs[0]))
	arp := append(append(make([]byte, 12), 0x08, 0x06), make([]byte, 28)...)
	ts := time.Unix(1767323045, 0)
	pkts := []packet{{ts, tcp}, {ts, frag}, {ts, truncated}, {ts, dns}, {ts, arp}, {ts, otherPort}, {ts, good}}
	path := writePcap(t, 1, pkts)

	t.Run("ports", func(t *testing.T) {
		s, got, reg := replay(t, pcap.Config{Path: path, Ports: []int{4739}})
		sameRecords(t, got, want, exporter4)
		skipped := s.Skipped()
		for reason, n := range map[string]uint64{"not_udp": 1, "fragment": 1, "truncated": 1, "port": 2, "link_type": 1} {
			if skipped[reason] != n {
				t.Errorf("skipped[%s] = %d, want %d (all: %v)", reason, skipped[reason], n, skipped)
			}
		}
		if n := metric(t, reg, "weir_source_pcap_packets_total"); n != 7 {
			t.Errorf("weir_source_pcap_packets_total = %v, want 7", n)
		}
	})
	t.Run("any_port", func(t *testing.T) {
		// Without ports, UDP payloads that are not IPFIX are skipped, and
		// IPFIX to any port is taken: here the message to port 9999 is a
		// copy of the first, so its records come twice.
		s, got, _ := replay(t, pcap.Config{Path: path})
		if len(got) != 2*len(want) {
			t.Fatalf("got %d records, want %d", len(got), 2*len(want))
		}
		if n := s.Skipped()["not_ipfix"]; n != 1 {
			t.Errorf("skipped[not_ipfix] = %d, want 1", n)
		}
	})
}

// metric returns the value of the counter name.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name)
}

func TestMalformedMessagesKeepGoodRecords(t *testing.T) {
	want, msgs := testMessages(t, 20)
	ts := time.Unix(1767323045, 0)
	lying := bytes.Clone(msgs[0])
	binary.BigEndian.PutUint16(lying[18:], 0xfff0) // first set overruns the message
	garbage := []byte{0x00, 0x0a, 0x00, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xff, 0xff, 0x00, 0x02}
	var pkts []packet
	for _, p := range [][]byte{garbage, lying} {
		pkts = append(pkts, packet{ts, frame(1, udp(exporter4, 4739, p))})
	}
	for _, m := range msgs {
		pkts = append(pkts, packet{ts, frame(1, udp(exporter4, 4739, m))})
	}
	_, got, reg := replay(t, pcap.Config{Path: writePcap(t, 1, pkts), Ports: []int{4739}})
	sameRecords(t, got, want, exporter4)
	if n := metric(t, reg, "weir_source_pcap_malformed_messages_total"); n < 2 {
		t.Errorf("weir_source_pcap_malformed_messages_total = %v, want ≥ 2", n)
	}
}

func TestCapturePace(t *testing.T) {
	_, msgs := testMessages(t, 1)
	t0 := time.Unix(1767323045, 0)
	pkts := []packet{
		{t0, frame(1, udp(exporter4, 4739, msgs[0]))},
		{t0.Add(400 * time.Millisecond), frame(1, udp(exporter4, 4739, msgs[0]))},
	}
	path := writePcap(t, 1, pkts)
	for _, c := range []struct {
		speed float64
		min   time.Duration
	}{{1, 400 * time.Millisecond}, {4, 100 * time.Millisecond}} {
		start := time.Now()
		_, got, _ := replay(t, pcap.Config{Path: path, Speed: c.speed})
		if len(got) != 2 {
			t.Errorf("speed %v: got %d records, want 2", c.speed, len(got))
		}
		if d := time.Since(start); d < c.min {
			t.Errorf("speed %v: replay took %v, want at least %v (capture pace)", c.speed, d, c.min)
		}
	}
}

func TestShutdownMidReplay(t *testing.T) {
	_, msgs := testMessages(t, 1)
	t0 := time.Unix(1767323045, 0)
	pkts := []packet{
		{t0, frame(1, udp(exporter4, 4739, msgs[0]))},
		{t0.Add(time.Hour), frame(1, udp(exporter4, 4739, msgs[0]))},
	}
	s, err := pcap.New(&pcap.Config{Path: writePcap(t, 1, pkts), Speed: 1}, plugin.NopSettings(pcap.ID))
	if err != nil {
		t.Fatal(err)
	}
	em := plugintest.NewEmitter(256)
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	// The first record is emitted at the batch timeout, before the hour
	// of waiting for the second.
	deadline := time.Now().Add(5 * time.Second)
	for em.Sink.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Shutdown")
	}
	if em.Sink.Len() != 1 {
		t.Errorf("got %d records, want the 1 before the pause", em.Sink.Len())
	}
}

func TestNewErrors(t *testing.T) {
	notCapture := filepath.Join(t.TempDir(), "x.pcap")
	os.WriteFile(notCapture, []byte("hello world, not a capture"), 0o644)
	for name, cfg := range map[string]pcap.Config{
		"missing file": {Path: filepath.Join(t.TempDir(), "nope.pcap")},
		"not capture":  {Path: notCapture},
		"invalid":      {Path: ""},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := pcap.New(&cfg, plugin.NopSettings(pcap.ID)); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestBaseDir(t *testing.T) {
	set := plugin.NopSettings(pcap.ID)
	set.BaseDir = "../../../test/testdata"
	s, err := pcap.New(&pcap.Config{Path: "softflowd-ipfix.pcap"}, set)
	if err != nil {
		t.Fatalf("relative path against BaseDir: %v", err)
	}
	s.Shutdown(context.Background())
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		s, err := pcap.New(&pcap.Config{Path: softflowdCapture}, plugin.NopSettings(pcap.ID))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
