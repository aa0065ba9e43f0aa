package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/vmware/go-ipfix/pkg/entities"
	goexporter "github.com/vmware/go-ipfix/pkg/exporter"
	"github.com/vmware/go-ipfix/pkg/registry"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/test/weirtest"
)

// peerUnknown is an enterprise IE nobody has heard of: PEN 99999,
// element 42, 6 bytes; peerUnknownVar is a variable-length one.
var (
	peerUnknown    = flow.IEKey{Enterprise: 99999, Element: 42}
	peerUnknownVar = flow.IEKey{Enterprise: 99999, Element: 43}
)

// peerRecord is what the go-ipfix exporting process sends for record i.
type peerRecord struct {
	src, dst         netip.Addr
	sport            uint16
	start, end       uint32 // flowStart/EndSeconds
	packets, octets  uint64
	revPackets       uint64
	srcPod, srcNS    string
	dstPod, dstNS    string
	srcNode, dstNode string
	clusterIP        netip.Addr
	servicePort      uint16
	servicePortName  string
	policy           string
	ruleAction       uint8
	tcpState         string
	flowType         uint8
	priority         int32  // ingressNetworkPolicyRulePriority: Antrea, no typed field
	opaque           []byte // peerUnknown
	label            string // peerUnknownVar
}

func makePeerRecord(i int) peerRecord {
	return peerRecord{
		src: netip.AddrFrom4([4]byte{10, 244, 1, byte(i)}), dst: netip.AddrFrom4([4]byte{10, 244, 2, byte(i)}),
		sport: uint16(30000 + i), start: 1_780_000_000 + uint32(i), end: 1_780_000_060 + uint32(i),
		packets: uint64(100 + i), octets: uint64(150000 + i), revPackets: uint64(90 + i),
		srcPod: fmt.Sprintf("frontend-%d", i), srcNS: "shop", dstPod: "backend-0", dstNS: "shop-db",
		srcNode: "node-a", dstNode: "node-b", clusterIP: netip.MustParseAddr("10.96.7.7"),
		servicePort: 5432, servicePortName: "shop-db/postgres:pg", policy: "allow-frontend",
		ruleAction: 1, tcpState: "ESTABLISHED", flowType: 2, priority: int32(-i),
		opaque: []byte{0xde, 0xad, 0xbe, 0xef, byte(i), 0x42},
		label:  fmt.Sprintf("weir-peer-%03d", i),
	}
}

// TestGoIPFIXPeer: go-ipfix's exporting process sends Antrea IEs and two
// enterprise IEs weir has never heard of; weir proxies them out through
// export.ipfix, decoding them (and writing JSON lines too) or forwarding
// the raw messages. The unknown IEs come out byte-identical (in the
// template and in every record) and the known ones decode to the values
// sent, with the proxy's original exporter and domain.
func TestGoIPFIXPeer(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "decoded", true: "raw"}[raw], func(t *testing.T) { testGoIPFIXPeer(t, raw) })
	}
}

func testGoIPFIXPeer(t *testing.T, raw bool) {
	registry.LoadRegistry()
	inPort := weirtest.FreePort(t, "udp")
	out := newUDPRecorder(t)
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	jsonlExporter := fmt.Sprintf("- export.jsonl: {path: %q}", jsonl)
	if raw {
		jsonlExporter = ""
	}
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 32, timeout: 50ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "", raw: %v}
  processors:
    - proxy: {}
  exporters:
    - export.ipfix: {address: "127.0.0.1:%d", transport: udp, observation_domain_id: 3}
    %s
`, inPort, raw, out.port(), jsonlExporter))

	ep, err := goexporter.InitExportingProcess(goexporter.ExporterInput{
		CollectorAddress:    fmt.Sprintf("127.0.0.1:%d", inPort),
		CollectorProtocol:   "udp",
		ObservationDomainID: 77,
		TempRefTimeout:      0,
		MaxMsgSize:          1400,
	})
	if err != nil {
		t.Fatalf("go-ipfix exporter: %v", err)
	}
	get := func(name string, pen uint32) *entities.InfoElement {
		ie, err := registry.GetInfoElement(name, pen)
		if err != nil {
			t.Fatalf("go-ipfix registry %s: %v", name, err)
		}
		return ie
	}
	antrea := registry.AntreaEnterpriseID
	ies := []*entities.InfoElement{
		get("sourceIPv4Address", 0), get("destinationIPv4Address", 0), get("sourceTransportPort", 0),
		get("destinationTransportPort", 0), get("protocolIdentifier", 0),
		get("flowStartSeconds", 0), get("flowEndSeconds", 0),
		get("packetDeltaCount", 0), get("octetDeltaCount", 0),
		get("reversePacketDeltaCount", registry.IANAReversedEnterpriseID),
		get("sourcePodName", antrea), get("sourcePodNamespace", antrea), get("destinationPodName", antrea),
		get("destinationPodNamespace", antrea), get("sourceNodeName", antrea), get("destinationNodeName", antrea),
		get("destinationClusterIPv4", antrea), get("destinationServicePort", antrea),
		get("destinationServicePortName", antrea), get("ingressNetworkPolicyName", antrea),
		get("ingressNetworkPolicyRuleAction", antrea), get("tcpState", antrea), get("flowType", antrea),
		get("ingressNetworkPolicyRulePriority", antrea),
		entities.NewInfoElement("weirPeerOpaque", peerUnknown.Element, entities.OctetArray, peerUnknown.Enterprise, 6),
		entities.NewInfoElement("weirPeerLabel", peerUnknownVar.Element, entities.String, peerUnknownVar.Enterprise, entities.VariableLength),
	}
	id := ep.NewTemplateID()
	ts, err := entities.MakeTemplateSet(id, ies)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ep.SendSet(ts); err != nil {
		t.Fatalf("send template: %v", err)
	}
	const n, perSet = 60, 5
	for first := 0; first < n; first += perSet {
		ds := entities.NewSet(false)
		if err := ds.PrepareSet(entities.Data, id); err != nil {
			t.Fatal(err)
		}
		for i := first; i < first+perSet; i++ {
			p := makePeerRecord(i)
			vals := []entities.InfoElementWithValue{
				entities.NewIPAddressInfoElement(ies[0], net.IP(p.src.AsSlice())),
				entities.NewIPAddressInfoElement(ies[1], net.IP(p.dst.AsSlice())),
				entities.NewUnsigned16InfoElement(ies[2], p.sport),
				entities.NewUnsigned16InfoElement(ies[3], 5432),
				entities.NewUnsigned8InfoElement(ies[4], 6),
				entities.NewDateTimeSecondsInfoElement(ies[5], p.start),
				entities.NewDateTimeSecondsInfoElement(ies[6], p.end),
				entities.NewUnsigned64InfoElement(ies[7], p.packets),
				entities.NewUnsigned64InfoElement(ies[8], p.octets),
				entities.NewUnsigned64InfoElement(ies[9], p.revPackets),
				entities.NewStringInfoElement(ies[10], p.srcPod),
				entities.NewStringInfoElement(ies[11], p.srcNS),
				entities.NewStringInfoElement(ies[12], p.dstPod),
				entities.NewStringInfoElement(ies[13], p.dstNS),
				entities.NewStringInfoElement(ies[14], p.srcNode),
				entities.NewStringInfoElement(ies[15], p.dstNode),
				entities.NewIPAddressInfoElement(ies[16], net.IP(p.clusterIP.AsSlice())),
				entities.NewUnsigned16InfoElement(ies[17], p.servicePort),
				entities.NewStringInfoElement(ies[18], p.servicePortName),
				entities.NewStringInfoElement(ies[19], p.policy),
				entities.NewUnsigned8InfoElement(ies[20], p.ruleAction),
				entities.NewStringInfoElement(ies[21], p.tcpState),
				entities.NewUnsigned8InfoElement(ies[22], p.flowType),
				entities.NewSigned32InfoElement(ies[23], p.priority),
				entities.NewOctetArrayInfoElement(ies[24], p.opaque),
				entities.NewStringInfoElement(ies[25], p.label),
			}
			if err := ds.AddRecordV2(vals, id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ep.SendSet(ds); err != nil {
			t.Fatalf("send data: %v", err)
		}
	}
	ep.CloseConnToCollector()
	if raw {
		// Every record copied, none decoded: the template has absolute times.
		w.WaitSample(t, "weir_export_ipfix_raw_records_total", `path="copied"`, n)
		if got := w.Sample(t, "weir_export_ipfix_raw_records_total", `path="decoded"`); got != 0 {
			t.Errorf("%v records decoded, want all copied", got)
		}
	} else {
		w.WaitMetric(t, "weir_source_ipfix_records_total", n)
		// The unknown IEs never rejected the template, and each is counted
		// by its own label.
		for _, ie := range []string{`ie="99999/42"`, `ie="99999/43"`} {
			if !w.HasSample(t, "weir_source_ipfix_unknown_ie_total", ie) {
				t.Errorf("no weir_source_ipfix_unknown_ie_total sample with %s", ie)
			}
		}
	}
	w.Stop(t)

	msgs := out.messages()
	if len(msgs) == 0 {
		t.Fatal("weir sent nothing")
	}
	// The template weir derived declares the unknown IEs exactly as the
	// peer did: enterprise bit + element, length, PEN.
	var all []byte
	for _, m := range msgs {
		all = append(all, m...)
	}
	for _, spec := range [][]byte{
		{0x80, 0x2a, 0x00, 0x06, 0x00, 0x01, 0x86, 0x9f}, // 99999/42, 6 bytes
		{0x80, 0x2b, 0xff, 0xff, 0x00, 0x01, 0x86, 0x9f}, // 99999/43, variable
	} {
		if !bytes.Contains(all, spec) {
			t.Errorf("weir's templates lack the field specifier % x", spec)
		}
	}
	dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
	got := flow.NewBatch(n)
	from := netip.MustParseAddrPort("127.0.0.1:1")
	for _, m := range msgs {
		if _, err := dec.Decode(got, m, from); err != nil {
			t.Errorf("decode weir's output: %v", err)
		}
	}
	if got.Len() != n {
		t.Fatalf("weir sent %d records, want %d", got.Len(), n)
	}
	for i, r := range got.Records {
		p := makePeerRecord(i)
		checkPeerRecord(t, i, r, p)
		// The raw bytes of every unknown IE value are in weir's messages.
		if !bytes.Contains(all, p.opaque) || !bytes.Contains(all, append([]byte{byte(len(p.label))}, p.label...)) {
			t.Errorf("record %d: the unknown IEs' bytes are not in weir's messages verbatim", i)
		}
	}
	if raw {
		return
	}
	if lines := jsonlLines(t, jsonl); len(lines) != n {
		t.Errorf("JSONL has %d lines, want %d", len(lines), n)
	}
}

func checkPeerRecord(t *testing.T, i int, r *flow.Record, p peerRecord) {
	t.Helper()
	type pair struct {
		name      string
		got, want any
	}
	for _, c := range []pair{
		{"sourceIPv4Address", r.SourceAddress, p.src},
		{"destinationIPv4Address", r.DestinationAddress, p.dst},
		{"sourceTransportPort", r.SourceTransportPort, p.sport},
		{"destinationTransportPort", r.DestinationTransportPort, uint16(5432)},
		{"protocolIdentifier", r.ProtocolIdentifier, uint8(6)},
		{"flowStart", r.FlowStart, int64(p.start) * 1e9},
		{"flowEnd", r.FlowEnd, int64(p.end) * 1e9},
		{"packetDeltaCount", r.PacketDeltaCount, p.packets},
		{"octetDeltaCount", r.OctetDeltaCount, p.octets},
		{"reversePacketDeltaCount", r.ReversePacketDeltaCount, p.revPackets},
		{"sourcePodName", r.SourcePodName, p.srcPod},
		{"sourcePodNamespace", r.SourcePodNamespace, p.srcNS},
		{"destinationPodName", r.DestinationPodName, p.dstPod},
		{"destinationPodNamespace", r.DestinationPodNamespace, p.dstNS},
		{"sourceNodeName", r.SourceNodeName, p.srcNode},
		{"destinationNodeName", r.DestinationNodeName, p.dstNode},
		{"destinationClusterIPv4", r.DestinationClusterIP, p.clusterIP},
		{"destinationServicePort", r.DestinationServicePort, p.servicePort},
		{"destinationServicePortName", r.DestinationServicePortName, p.servicePortName},
		{"ingressNetworkPolicyName", r.IngressNetworkPolicyName, p.policy},
		{"ingressNetworkPolicyRuleAction", r.IngressNetworkPolicyRuleAction, p.ruleAction},
		{"tcpState", r.TCPState, p.tcpState},
		{"flowType", r.FlowType, p.flowType},
		{"observationDomainId", r.ObservationDomainID, uint32(3)},
		{"originalObservationDomainId", r.OriginalObservationDomainID, uint32(77)},
		{"originalExporterIPv4Address", r.OriginalExporterAddress, netip.MustParseAddr("127.0.0.1")},
	} {
		if c.got != c.want {
			t.Errorf("record %d: %s = %v, want %v", i, c.name, c.got, c.want)
		}
	}
	prio := r.FindExtra(flow.IEKey{Enterprise: flow.AntreaPEN, Element: 116})
	if prio == nil || ipfix.FormatValue(ipfix.Signed32, prio.Value) != int64(p.priority) {
		t.Errorf("record %d: ingressNetworkPolicyRulePriority = %+v, want %d", i, prio, p.priority)
	}
	if f := r.FindExtra(peerUnknown); f == nil || !bytes.Equal(f.Value, p.opaque) || f.Variable {
		t.Errorf("record %d: unknown IE %s = %+v, want % x fixed-length", i, peerUnknown, f, p.opaque)
	}
	if f := r.FindExtra(peerUnknownVar); f == nil || string(f.Value) != p.label || !f.Variable {
		t.Errorf("record %d: unknown IE %s = %+v, want %q variable-length", i, peerUnknownVar, f, p.label)
	}
}
