package icmpprobe_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vmware/go-ipfix/pkg/collector"
	"github.com/vmware/go-ipfix/pkg/entities"
	"github.com/vmware/go-ipfix/pkg/registry"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	exportipfix "github.com/weir-flow/weir/plugins/export/ipfix"
	"github.com/weir-flow/weir/plugins/source/icmpprobe"
	"github.com/weir-flow/weir/plugins/source/internal/netnstest"
)

// localIENames are the Weir-local IEs of a probe record with replies, by
// the names core/ipfix gives them.
var localIENames = map[flow.IEKey]string{
	icmpprobe.IEMinimumRTT: "minimumRttMilliseconds",
	icmpprobe.IEMeanRTT:    "meanRttMilliseconds",
	icmpprobe.IEMaximumRTT: "maximumRttMilliseconds",
	icmpprobe.IELastRTT:    "lastRttMilliseconds",
	icmpprobe.IELost:       "lostPacketDeltaCount",
	icmpprobe.IELastReply:  "lastReplyMilliseconds",
}

// loopbackRecords probes 127.0.0.1 and ::1 in a namespace of its own and
// returns one record with replies per target.
func loopbackRecords(t *testing.T) []*flow.Record {
	t.Helper()
	ns := netnstest.New(t, "w18")
	_, recs, _ := probe(t, ns, fastConfig("127.0.0.1", "::1"), time.Second)
	var out []*flow.Record
	for _, target := range []string{"127.0.0.1", "::1"} {
		for _, r := range byTarget(recs)[target] {
			if r.ReversePacketDeltaCount > 0 && r.FindExtra(icmpprobe.IEMinimumRTT) != nil {
				out = append(out, r)
				break
			}
		}
	}
	if len(out) != 2 {
		t.Fatalf("%d records with replies for 127.0.0.1 and ::1 in %d records", len(out), len(recs))
	}
	return out
}

// TestIPFIXNames: core/ipfix names every Extra IE of a probe record, and the
// float64 RTTs read back as the values measured.
func TestIPFIXNames(t *testing.T) {
	for k, name := range localIENames {
		info, ok := ipfix.LookupIE(k)
		if !ok || info.Name != name {
			t.Errorf("LookupIE(%v) = %+v, %v; want %s", k, info, ok, name)
		}
		if got, _, ok := ipfix.LookupIEByName(name); !ok || got != k {
			t.Errorf("LookupIEByName(%s) = %v, %v; want %v", name, got, ok, k)
		}
	}
	for _, k := range []flow.IEKey{icmpprobe.IEICMPTypeCodeIPv4, icmpprobe.IEICMPTypeCodeIPv6} {
		if _, ok := ipfix.LookupIE(k); !ok {
			t.Errorf("IANA IE %v unknown", k)
		}
	}
}

// TestGoIPFIXCollector: a go-ipfix v0.17.0 collecting process in strict
// mode, taught the Weir-local IEs from ipfix.LocalIEs, decodes the records
// export.ipfix sends by name, with the values the source measured.
func TestGoIPFIXCollector(t *testing.T) {
	recs := loopbackRecords(t)
	ipfix.LookupIE(flow.IEKey{}) // core/ipfix loads (and resets) go-ipfix's registry first
	for k, info := range ipfix.LocalIEs() {
		typ := entities.IEDataType(info.Type) // DataType mirrors entities.IEDataType
		if err := registry.PutInfoElement(*entities.NewInfoElement(info.Name, k.Element, typ, k.Enterprise, info.Length), k.Enterprise); err != nil && !strings.Contains(err.Error(), "already") {
			t.Fatal(err)
		}
	}
	cp, err := collector.InitCollectingProcess(collector.CollectorInput{
		Address: "127.0.0.1:0", Protocol: "tcp", MaxBufferSize: 65535, DecodingMode: collector.DecodingModeStrict})
	if err != nil {
		t.Fatal(err)
	}
	go cp.Start()
	defer cp.Stop()
	for cp.GetAddress() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	exp, err := exportipfix.New(&exportipfix.Config{Address: cp.GetAddress().String(), Transport: "tcp", OneSetPerMessage: true,
		DialTimeout: 5 * time.Second, MaxBackoff: time.Second}, plugin.NopSettings(exportipfix.ID))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := exp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	b := flow.NewBatch(len(recs))
	for _, r := range recs {
		b.Append().CopyFrom(r, b)
	}
	if err := exp.Export(ctx, b); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for i := 0; i < len(recs); {
		select {
		case msg := <-cp.GetMsgChan():
			set := msg.GetSet()
			if set.GetSetType() != entities.Data {
				continue
			}
			for _, gr := range set.GetRecords() {
				r := recs[i]
				i++
				got := map[string]entities.InfoElementWithValue{}
				for _, ie := range gr.GetOrderedElementList() {
					got[ie.GetInfoElement().Name] = ie
				}
				for k, name := range localIENames {
					ie, ok := got[name]
					if !ok {
						t.Errorf("%s: go-ipfix did not decode %s (has %v)", r.DestinationAddress, name, keys(got))
						continue
					}
					switch k {
					case icmpprobe.IELost:
						if v := ie.GetUnsigned64Value(); v != u64(r, k) {
							t.Errorf("%s: %s = %d, want %d", r.DestinationAddress, name, v, u64(r, k))
						}
					case icmpprobe.IELastReply:
						if v := ie.GetUnsigned64Value(); v != u64(r, k) || v == 0 {
							t.Errorf("%s: %s = %d, want %d", r.DestinationAddress, name, v, u64(r, k))
						}
					default:
						want, _ := f64(r, k)
						if v := ie.GetFloat64Value(); v != want || v <= 0 || v > 1000 {
							t.Errorf("%s: %s = %v ms, want %v", r.DestinationAddress, name, v, want)
						}
					}
				}
				code, want := "icmpTypeCodeIPv4", uint16(0x0800)
				if r.DestinationAddress.Is6() {
					code, want = "icmpTypeCodeIPv6", 0x8000
				}
				if v := got[code].GetUnsigned16Value(); v != want {
					t.Errorf("%s: %s = %#x, want %#x", r.DestinationAddress, code, v, want)
				}
				if v := got["reversePacketDeltaCount"].GetUnsigned64Value(); v != r.ReversePacketDeltaCount || v == 0 {
					t.Errorf("%s: reversePacketDeltaCount = %d, want %d", r.DestinationAddress, v, r.ReversePacketDeltaCount)
				}
			}
		case <-timeout:
			t.Fatalf("go-ipfix decoded %d of %d records", i, len(recs))
		}
	}
}

func keys(m map[string]entities.InfoElementWithValue) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTshark: tshark, which knows no Weir-local IE, dissects the records as
// Antrea-PEN (56506) enterprise elements 32010–32015 with the values the
// source measured, and decodes the IANA icmpTypeCode IEs.
func TestTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark is needed (scripts/install-deps.sh installs it)")
	}
	recs := loopbackRecords(t)
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{})
	var msgs [][]byte
	if err := enc.Encode(recs, time.Now(), func(m []byte) error { msgs = append(msgs, bytes.Clone(m)); return nil }); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "probe.pcap")
	writeUDPPcap(t, path, msgs)
	out, err := exec.Command("tshark", "-r", path, "-d", "udp.port==4739,cflow", "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	flows := tsharkFlows(string(out))
	for _, r := range recs {
		f, ok := flows[r.DestinationAddress.String()]
		if !ok {
			t.Errorf("tshark shows no flow to %s:\n%s", r.DestinationAddress, out)
			continue
		}
		for k := range localIENames {
			want := hex.EncodeToString(r.FindExtra(k).Value)
			if got := f["56506/"+strconv.Itoa(int(k.Element))]; got != want {
				t.Errorf("%s: tshark shows Antrea-PEN element %d = %q, want %s", r.DestinationAddress, k.Element, got, want)
			}
		}
		if r.DestinationAddress.Is4() && f["icmp"] != "0x0800" || r.DestinationAddress.Is6() && f["icmp"] != "128" {
			t.Errorf("%s: tshark shows ICMP type %q, want echo request", r.DestinationAddress, f["icmp"])
		}
	}
}

// tsharkFlows reads `tshark -V` cflow output into one map per flow, keyed
// by destination address: "PEN/element" → hex value, "icmp" → ICMP type.
func tsharkFlows(text string) map[string]map[string]string {
	flows := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "Flow "):
			cur = map[string]string{}
		case cur == nil:
		case strings.HasPrefix(l, "DstAddr: "):
			flows[strings.TrimPrefix(l, "DstAddr: ")] = cur
		case strings.HasPrefix(l, "ICMP Type: "), strings.HasPrefix(l, "IPv6 ICMP Type: "):
			cur["icmp"] = l[strings.Index(l, ": ")+2:]
		case strings.HasPrefix(l, "Enterprise Private entry: (Project Antrea) Type "):
			rest := strings.TrimPrefix(l, "Enterprise Private entry: (Project Antrea) Type ")
			el, val, ok := strings.Cut(rest, ": Value (hex bytes): ")
			if ok {
				cur["56506/"+el] = strings.ReplaceAll(val, " ", "")
			}
		}
	}
	return flows
}

// writeUDPPcap writes msgs as IPv4/UDP datagrams to port 4739 (IPFIX) in a
// raw-IP pcap.
func writeUDPPcap(t *testing.T, path string, msgs [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: []byte{127, 0, 0, 1}, DstIP: []byte{127, 0, 0, 1}}
		udp := &layers.UDP{SrcPort: 50000, DstPort: 4739}
		_ = udp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(m)); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(data), Length: len(data)}, data); err != nil {
			t.Fatal(err)
		}
	}
}
