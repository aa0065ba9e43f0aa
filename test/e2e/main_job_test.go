package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"github.com/weir-flow/weir/test/weirtest"
)

// referenceFlows runs softflowd on the shared capture straight into nfcapd:
// the reference view of the flows, decoded by a collector nobody on this
// team wrote.
func referenceFlows(t *testing.T, capture string) []nfFlow {
	t.Helper()
	port := weirtest.FreePort(t, "udp")
	ref := startNfcapd(t, port)
	runSoftflowd(t, capture, port)
	time.Sleep(300 * time.Millisecond) // loopback delivery
	ref.stop(t)
	fl := ref.flows(t)
	if len(fl) == 0 {
		t.Fatal("the reference nfcapd stored no flows")
	}
	return fl
}

// TestMainJobMatchesNfcapdReference is issue 2's acceptance test:
// softflowd → weir (filter.protocol tcp → proxy → export.ipfix) → nfcapd
// must list exactly the reference's TCP flows (same 5-tuples, packets,
// bytes and times, as nfdump prints them) and nothing else; the JSONL
// exporter beside it writes one line per TCP flow; tshark decodes weir's
// IPFIX and finds originalExporterIPv4Address on every record; SIGTERM ends
// weir with status 0 and nothing lost.
func TestMainJobMatchesNfcapdReference(t *testing.T) {
	needTools(t, "softflowd", "nfcapd", "nfdump", "tshark")
	capture := weirtest.SharedCapture(t)
	ref := referenceFlows(t, capture)
	var refTCP []nfFlow
	for _, f := range ref {
		if f.Proto == "6" {
			refTCP = append(refTCP, f)
		}
	}
	if len(refTCP) == 0 || len(refTCP) == len(ref) {
		t.Fatalf("reference has %d TCP flows of %d: the capture should mix protocols", len(refTCP), len(ref))
	}

	nfPort, inPort := weirtest.FreePort(t, "udp"), weirtest.FreePort(t, "udp")
	nf := startNfcapd(t, nfPort)
	rec := newUDPRecorder(t) // for tshark
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 64, timeout: 50ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}
  processors:
    - filter.protocol: {protocols: [tcp]}
    - proxy: {}
  exporters:
    - export.ipfix: {address: "127.0.0.1:%d", transport: udp}
    - export.ipfix: {address: "127.0.0.1:%d", transport: udp, observation_domain_id: 7}
    - export.jsonl: {path: %q}
`, inPort, nfPort, rec.port(), jsonl))
	runSoftflowd(t, capture, inPort)
	w.WaitMetric(t, "weir_source_ipfix_records_total", float64(len(ref)))
	w.Stop(t)
	time.Sleep(300 * time.Millisecond)
	nf.stop(t)

	got := nf.flows(t)
	// 5-tuples, packets and bytes: exactly the reference's TCP flows.
	if !slices.Equal(countsOnly(got), countsOnly(refTCP)) {
		t.Errorf("nfcapd behind weir lists %d flows, the reference %d TCP flows", len(got), len(refTCP))
		want := countsOnly(refTCP)
		have := countsOnly(got)
		for _, f := range want {
			if !slices.Contains(have, f) {
				t.Errorf("missing:    %v", f)
			}
		}
		for _, f := range have {
			if !slices.Contains(want, f) {
				t.Errorf("unexpected: %v", f)
			}
		}
	}
	// Times: nfdump 1.7.1 mis-resolves softflowd's flowStart/EndSysUpTime
	// when they wrap below systemInitTimeMilliseconds (it shows the flows
	// 2^32 ms ≈ 49.7 days late, some ending before they start), so the
	// reference's times are not ground truth. The packets are: each flow
	// weir exported must start and end within 3 ms of its first and last
	// packet in the capture (softflowd and IPFIX keep milliseconds), and
	// hold exactly the packets of its 5-tuple in that span.
	truth := capturePackets(t, capture)
	for _, f := range got {
		checkTimes(t, f, truth)
	}
	if len(refTCP) > 0 && refTCP[0].Start != got[0].Start {
		t.Logf("nfdump's reference time %s vs weir's %s for %v: nfdump resolves softflowd's wrapped sysUpTimes 2^32 ms late", refTCP[0].Start, got[0].Start, got[0])
	}

	lines := jsonlLines(t, jsonl)
	if len(lines) != len(refTCP) {
		t.Errorf("JSONL has %d lines, want one per TCP flow (%d)", len(lines), len(refTCP))
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("JSONL line %d: %v", i+1, err)
		}
		if m["protocolIdentifier"] != float64(6) || m["originalExporterIPv4Address"] != "127.0.0.1" {
			t.Errorf("JSONL line %d: protocolIdentifier %v originalExporterIPv4Address %v, want 6 and 127.0.0.1",
				i+1, m["protocolIdentifier"], m["originalExporterIPv4Address"])
		}
	}

	// Nothing accepted was lost: the engine's own summary agrees.
	if in, out := w.StageSummary(t, "exporters[2]"); in != len(refTCP) || out != len(refTCP) {
		t.Errorf("export.jsonl summary in=%d out=%d, want %d", in, out, len(refTCP))
	}

	// tshark decodes what weir sent and sees the proxy's stamp.
	checkTsharkStamps(t, rec, len(refTCP))
}

// checkTsharkStamps decodes what rec recorded with tshark and checks that
// want records carry originalExporterIPv4Address 127.0.0.1.
func checkTsharkStamps(t *testing.T, rec *udpRecorder, want int) {
	t.Helper()
	pcap := filepath.Join(t.TempDir(), "weir-out.pcap")
	rec.writePcap(t, pcap)
	out, err := exec.Command("tshark", "-r", pcap, "-d", fmt.Sprintf("udp.port==%d,cflow", rec.port()),
		"-T", "fields", "-e", "cflow.original_exporter_ipv4_address", "-e", "cflow.od_id", "-E", "occurrence=a", "-E", "separator=;").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	stamps := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Running as user") || strings.TrimSpace(line) == "" {
			continue
		}
		addrs, _, _ := strings.Cut(line, ";")
		for _, a := range strings.Split(addrs, ",") {
			if a == "" {
				continue
			}
			if a != "127.0.0.1" {
				t.Errorf("tshark: originalExporterIPv4Address %q, want 127.0.0.1", a)
			}
			stamps++
		}
	}
	if stamps != want {
		t.Errorf("tshark found originalExporterIPv4Address on %d records, want %d:\n%s", stamps, want, out)
	}
}

// TestMainJobJSONLOneLinePerFlow: without a filter, weir's JSONL has one
// line per flow softflowd exported (the README's main-job demo).
func TestMainJobJSONLOneLinePerFlow(t *testing.T) {
	needTools(t, "softflowd", "nfcapd", "nfdump")
	capture := weirtest.SharedCapture(t)
	ref := referenceFlows(t, capture)
	inPort := weirtest.FreePort(t, "udp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "127.0.0.1:0"}
  processors:
    - proxy: {}
  exporters:
    - export.jsonl: {path: %q}
`, inPort, jsonl))
	runSoftflowd(t, capture, inPort)
	w.WaitMetric(t, "weir_source_ipfix_records_total", float64(len(ref)))
	w.Stop(t)
	lines := jsonlLines(t, jsonl)
	if len(lines) != len(ref) {
		t.Fatalf("JSONL has %d lines, want one per softflowd flow (%d)", len(lines), len(ref))
	}
	// Same flows: compare 5-tuples and counters with the reference.
	key := func(src, sp, dst, dp, proto, pkts, bytes any) string {
		return fmt.Sprint(src, "|", sp, "|", dst, "|", dp, "|", proto, "|", pkts, "|", bytes)
	}
	var want, got []string
	for _, f := range ref {
		sp, dp := f.SrcPort, f.DstPort
		if f.Proto == "1" || f.Proto == "58" {
			// nfdump shows ICMP type.code as the destination port.
			sp, dp = "0", "*"
		}
		want = append(want, key(f.SrcAddr, sp, f.DstAddr, dp, f.Proto, f.Packets, f.Bytes))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		src, dst := m["sourceIPv4Address"], m["destinationIPv4Address"]
		if src == nil {
			src, dst = m["sourceIPv6Address"], m["destinationIPv6Address"]
		}
		num := func(k string) string { return fmt.Sprint(m[k]) }
		sp, dp, proto := num("sourceTransportPort"), num("destinationTransportPort"), num("protocolIdentifier")
		if proto == "1" || proto == "58" {
			sp, dp = "0", "*"
		}
		got = append(got, key(src, sp, dst, dp, proto, num("packetDeltaCount"), num("octetDeltaCount")))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("JSONL flows differ from the reference:\n got %v\nwant %v", got, want)
	}
}

// countsOnly drops the times of flows, keeping 5-tuple, packets, bytes.
func countsOnly(fl []nfFlow) []nfFlow {
	out := make([]nfFlow, len(fl))
	for i, f := range fl {
		f.Start, f.End = "", ""
		out[i] = f
	}
	slices.SortFunc(out, func(a, b nfFlow) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return out
}

// capturePackets reads an Ethernet capture and returns the times of the
// TCP and UDP packets of each directional 5-tuple, keyed like
// tupleKey.
func capturePackets(t *testing.T, path string) map[string][]time.Time {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]time.Time{}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if len(data) < 14 {
			continue
		}
		et, ip := binary.BigEndian.Uint16(data[12:]), data[14:]
		var src, dst netip.Addr
		var proto uint8
		var l4 []byte
		switch {
		case et == 0x0800 && len(ip) >= 20:
			src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
			proto, l4 = ip[9], ip[int(ip[0]&0xf)*4:]
		case et == 0x86dd && len(ip) >= 40:
			src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
			proto, l4 = ip[6], ip[40:]
		default:
			continue
		}
		if (proto != 6 && proto != 17) || len(l4) < 4 {
			continue
		}
		k := tupleKey(fmt.Sprint(proto), src.String(), fmt.Sprint(binary.BigEndian.Uint16(l4)), dst.String(), fmt.Sprint(binary.BigEndian.Uint16(l4[2:])))
		out[k] = append(out[k], ci.Timestamp)
	}
	return out
}

func tupleKey(proto, src, sport, dst, dport string) string {
	return proto + " " + src + ":" + sport + " → " + dst + ":" + dport
}

// checkTimes checks a flow's times against its packets in the capture.
func checkTimes(t *testing.T, f nfFlow, truth map[string][]time.Time) {
	t.Helper()
	const layout = "2006-01-02 15:04:05.000"
	start, err1 := time.Parse(layout, f.Start)
	end, err2 := time.Parse(layout, f.End)
	if err1 != nil || err2 != nil {
		t.Errorf("%v: nfdump times do not parse: %v %v", f, err1, err2)
		return
	}
	// softflowd and IPFIX keep milliseconds, and the way through
	// flowStartSysUpTime and systemInitTimeMilliseconds truncates more than
	// once: 2 ms held for many runs, until one flow started 2.008 ms before
	// its first packet.
	const slack = 3 * time.Millisecond
	var in []time.Time
	for _, ts := range truth[tupleKey(f.Proto, f.SrcAddr, f.SrcPort, f.DstAddr, f.DstPort)] {
		if !ts.Before(start.Add(-slack)) && !ts.After(end.Add(slack)) {
			in = append(in, ts)
		}
	}
	if fmt.Sprint(len(in)) != f.Packets {
		t.Errorf("%v: the capture has %d packets of this 5-tuple in [start-3ms, end+3ms], want %s", f, len(in), f.Packets)
		return
	}
	if d := in[0].Sub(start).Abs(); d > slack {
		t.Errorf("%v: starts %v from its first packet (%s)", f, d, in[0].UTC().Format(layout))
	}
	if d := in[len(in)-1].Sub(end).Abs(); d > slack {
		t.Errorf("%v: ends %v from its last packet (%s)", f, d, in[len(in)-1].UTC().Format(layout))
	}
}
