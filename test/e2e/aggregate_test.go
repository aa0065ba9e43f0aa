package e2e

// The aggregate processor end to end: two go-ipfix exporting processes with
// Antrea's FlowExporter template act as the source and the destination
// Node; weir runs source.ipfix → aggregate → export.jsonl and export.ipfix;
// tshark decodes what export.ipfix sent.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/go-ipfix/pkg/entities"
	"github.com/vmware/go-ipfix/pkg/exporter"
	"github.com/vmware/go-ipfix/pkg/registry"
	"github.com/weir-flow/weir/test/weirtest"
)

// antreaTemplate is the IE list of Antrea's FlowExporter (IPv4).
var antreaTemplate = []struct {
	name string
	pen  uint32
}{
	{"flowStartSeconds", 0}, {"flowEndSeconds", 0}, {"flowEndReason", 0},
	{"sourceTransportPort", 0}, {"destinationTransportPort", 0}, {"protocolIdentifier", 0},
	{"packetTotalCount", 0}, {"octetTotalCount", 0}, {"packetDeltaCount", 0}, {"octetDeltaCount", 0},
	{"sourceIPv4Address", 0}, {"destinationIPv4Address", 0},
	{"reversePacketTotalCount", registry.IANAReversedEnterpriseID}, {"reverseOctetTotalCount", registry.IANAReversedEnterpriseID},
	{"reversePacketDeltaCount", registry.IANAReversedEnterpriseID}, {"reverseOctetDeltaCount", registry.IANAReversedEnterpriseID},
	{"sourcePodName", antreaPEN}, {"sourcePodNamespace", antreaPEN}, {"sourceNodeName", antreaPEN},
	{"destinationPodName", antreaPEN}, {"destinationPodNamespace", antreaPEN}, {"destinationNodeName", antreaPEN},
	{"destinationClusterIPv4", antreaPEN}, {"destinationServicePort", antreaPEN}, {"destinationServicePortName", antreaPEN},
	{"ingressNetworkPolicyName", antreaPEN}, {"ingressNetworkPolicyNamespace", antreaPEN}, {"ingressNetworkPolicyRuleAction", antreaPEN},
	{"egressNetworkPolicyName", antreaPEN}, {"egressNetworkPolicyNamespace", antreaPEN}, {"egressNetworkPolicyRuleAction", antreaPEN},
	{"tcpState", antreaPEN}, {"flowType", antreaPEN},
}

var loadRegistry sync.Once

// node is one Node's FlowExporter.
type node struct {
	ep   *exporter.ExportingProcess
	ies  []*entities.InfoElement
	name string
}

func newNode(t *testing.T, addr, name string, domain uint32) *node {
	t.Helper()
	ep, err := exporter.InitExportingProcess(exporter.ExporterInput{
		CollectorAddress: addr, CollectorProtocol: "udp", ObservationDomainID: domain, TempRefTimeout: 3600,
	})
	if err != nil {
		t.Fatalf("go-ipfix exporter: %v", err)
	}
	t.Cleanup(ep.CloseConnToCollector)
	n := &node{ep: ep, name: name}
	loadRegistry.Do(registry.LoadRegistry)
	for _, ie := range antreaTemplate {
		e, err := registry.GetInfoElement(ie.name, ie.pen)
		if err != nil {
			t.Fatalf("registry: %s: %v", ie.name, err)
		}
		n.ies = append(n.ies, e)
	}
	tmpl, err := entities.MakeTemplateSet(256, n.ies)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ep.SendSet(tmpl); err != nil {
		t.Fatalf("send template: %v", err)
	}
	return n
}

// conn is one record of a connection as a Node sees it.
type conn struct {
	sport          uint16
	flowType       uint8
	srcPod, dstPod string
	egressAction   uint8
	start, end     uint32
	pkts, octs     uint64 // totals
	dPkts, dOcts   uint64 // deltas
	reason         uint8
	tcpState       string
}

func (n *node) send(t *testing.T, c conn) {
	t.Helper()
	values := map[string]any{
		"flowStartSeconds": c.start, "flowEndSeconds": c.end, "flowEndReason": c.reason,
		"sourceTransportPort": c.sport, "destinationTransportPort": uint16(8080), "protocolIdentifier": uint8(6),
		"packetTotalCount": c.pkts, "octetTotalCount": c.octs, "packetDeltaCount": c.dPkts, "octetDeltaCount": c.dOcts,
		"sourceIPv4Address": net.ParseIP("10.10.1.5").To4(), "destinationIPv4Address": net.ParseIP("10.10.2.7").To4(),
		"reversePacketTotalCount": c.pkts / 2, "reverseOctetTotalCount": c.octs / 2,
		"reversePacketDeltaCount": c.dPkts / 2, "reverseOctetDeltaCount": c.dOcts / 2,
		"sourcePodName": c.srcPod, "sourcePodNamespace": "", "sourceNodeName": "",
		"destinationPodName": c.dstPod, "destinationPodNamespace": "", "destinationNodeName": "",
		"destinationClusterIPv4": net.IPv4zero.To4(), "destinationServicePort": uint16(0), "destinationServicePortName": "",
		"ingressNetworkPolicyName": "", "ingressNetworkPolicyNamespace": "", "ingressNetworkPolicyRuleAction": uint8(0),
		"egressNetworkPolicyName": "", "egressNetworkPolicyNamespace": "", "egressNetworkPolicyRuleAction": c.egressAction,
		"tcpState": c.tcpState, "flowType": c.flowType,
	}
	if c.srcPod != "" {
		values["sourcePodNamespace"], values["sourceNodeName"] = "ns-a", n.name
		values["egressNetworkPolicyName"] = "allow-out"
	}
	if c.dstPod != "" {
		values["destinationPodNamespace"], values["destinationNodeName"] = "ns-b", n.name
		values["ingressNetworkPolicyName"] = "allow-in"
	}
	elems := make([]entities.InfoElementWithValue, len(n.ies))
	for i, e := range n.ies {
		switch v := values[e.Name].(type) {
		case uint8:
			elems[i] = entities.NewUnsigned8InfoElement(e, v)
		case uint16:
			elems[i] = entities.NewUnsigned16InfoElement(e, v)
		case uint32:
			elems[i] = entities.NewDateTimeSecondsInfoElement(e, v)
		case uint64:
			elems[i] = entities.NewUnsigned64InfoElement(e, v)
		case string:
			elems[i] = entities.NewStringInfoElement(e, v)
		case net.IP:
			elems[i] = entities.NewIPAddressInfoElement(e, v)
		default:
			t.Fatalf("no value for %s", e.Name)
		}
	}
	rec := entities.NewDataRecordFromElements(256, elems)
	if _, _, err := n.ep.SendDataRecords(256, []entities.Record{rec}, nil); err != nil {
		t.Fatalf("send data: %v", err)
	}
}

// waitLines waits until the JSONL file has at least n lines and returns
// them decoded.
func waitLines(t *testing.T, path string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		lines := jsonlLinesIfAny(path)
		if len(lines) >= n {
			var out []map[string]any
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("bad JSON line %q: %v", l, err)
				}
				out = append(out, m)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d JSONL lines, want %d:\n%s", len(lines), n, strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsonlLinesIfAny(path string) []string {
	data, _ := os.ReadFile(path) // not there yet: no lines
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func bySport(recs []map[string]any, sport int) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if int(num(r["sourceTransportPort"])) == sport {
			out = append(out, r)
		}
	}
	return out
}

func num(v any) float64 { f, _ := v.(float64); return f }

// TestAggregateAntreaNodes: halves in either order become one record with
// both Pods; flows needing no correlation and egress-denied flows are not
// held back; a later update's deltas add up to the totals; SIGTERM exports
// every live flow, the lone half included; tshark decodes the output with
// the Antrea aggregation IEs, by name with deploy/wireshark/weir.lua.
func TestAggregateAntreaNodes(t *testing.T) {
	needTools(t, "tshark")
	inPort := weirtest.FreePort(t, "udp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	rec := newUDPRecorder(t)
	// Long timeouts: anything that comes out before SIGTERM was not held.
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 64, timeout: 20ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "127.0.0.1:0"}
  processors:
    - aggregate: {active_timeout: 1h, inactive_timeout: 2h, correlation_timeout: 1h}
  exporters:
    - export.jsonl: {path: %q}
    - export.ipfix: {address: "127.0.0.1:%d", transport: udp}
`, inPort, jsonl, rec.port()))
	addr := fmt.Sprintf("127.0.0.1:%d", inPort)
	src, dst := newNode(t, addr, "node-1", 1), newNode(t, addr, "node-2", 2)

	first := conn{start: 1000, end: 1010, pkts: 10, octs: 1000, dPkts: 10, dOcts: 1000, reason: 2, tcpState: "ESTABLISHED", flowType: 2}
	a := first
	a.sport = 40001
	a.srcPod = "client"
	src.send(t, a) // A: source half first
	time.Sleep(200 * time.Millisecond)
	a.srcPod, a.dstPod = "", "server"
	dst.send(t, a)
	b := first
	b.sport, b.dstPod = 40002, "server"
	dst.send(t, b) // B: destination half first
	time.Sleep(200 * time.Millisecond)
	b.srcPod, b.dstPod = "client", ""
	src.send(t, b)
	c := first
	c.sport, c.flowType, c.srcPod, c.dstPod = 40003, 1, "client", "server" // C: intra-Node
	src.send(t, c)
	d := first
	d.sport, d.srcPod, d.egressAction = 40004, "client", 2 // D: inter-Node, dropped by an egress rule
	src.send(t, d)
	recs := waitLines(t, jsonl, 4)
	for _, sport := range []int{40001, 40002} {
		got := bySport(recs, sport)
		if len(got) != 1 {
			t.Fatalf("flow %d: %d records, want one correlated record", sport, len(got))
		}
		r := got[0]
		if r["sourcePodName"] != "client" || r["destinationPodName"] != "server" || r["sourceNodeName"] != "node-1" ||
			r["destinationNodeName"] != "node-2" || r["egressNetworkPolicyName"] != "allow-out" || r["ingressNetworkPolicyName"] != "allow-in" {
			t.Errorf("flow %d lacks a side's fields: %v", sport, r)
		}
		for _, k := range []string{"octetDeltaCountFromSourceNode", "octetDeltaCountFromDestinationNode", "octetTotalCountFromSourceNode", "octetDeltaCount"} {
			if num(r[k]) != 1000 {
				t.Errorf("flow %d: %s = %v, want 1000", sport, k, r[k])
			}
		}
		if num(r["throughput"]) != 800 || num(r["originalFlowsPresent"]) != 2 {
			t.Errorf("flow %d: throughput %v (want 800 bit/s), originalFlowsPresent %v (want 2)", sport, r["throughput"], r["originalFlowsPresent"])
		}
	}
	for _, sport := range []int{40003, 40004} {
		if got := bySport(recs, sport); len(got) != 1 || num(got[0]["octetDeltaCount"]) != 1000 {
			t.Errorf("flow %d held back or wrong: %v", sport, got)
		}
	}

	// A second interval of A, and E, a half whose other half never comes.
	a2 := conn{sport: 40001, start: 1000, end: 1030, pkts: 25, octs: 4000, dPkts: 15, dOcts: 3000, reason: 2, tcpState: "ESTABLISHED", flowType: 2}
	a2.srcPod = "client"
	src.send(t, a2)
	a2.srcPod, a2.dstPod = "", "server"
	a2.pkts, a2.octs, a2.dPkts, a2.dOcts = 26, 4100, 16, 3100
	dst.send(t, a2)
	e := first
	e.sport, e.srcPod = 40005, "client"
	src.send(t, e)
	w.WaitMetric(t, "weir_stage_records_held_total", 5) // A2 ×2, E, and B's, A's first halves
	w.Stop(t)

	recs = waitLines(t, jsonl, 6)
	aRecs := bySport(recs, 40001)
	if len(aRecs) != 2 {
		t.Fatalf("flow A: %d records, want 2", len(aRecs))
	}
	last := aRecs[1]
	if num(last["flowEndReason"]) != 4 {
		t.Errorf("flow A at SIGTERM: flowEndReason %v, want 4 (forced end)", last["flowEndReason"])
	}
	for _, side := range []struct{ delta, total string }{
		{"octetDeltaCountFromSourceNode", "octetTotalCountFromSourceNode"},
		{"octetDeltaCountFromDestinationNode", "octetTotalCountFromDestinationNode"},
	} {
		if sum := num(aRecs[0][side.delta]) + num(last[side.delta]); sum != num(last[side.total]) {
			t.Errorf("flow A: %s sums to %v over two intervals, total is %v", side.delta, sum, last[side.total])
		}
	}
	if eRecs := bySport(recs, 40005); len(eRecs) != 1 || eRecs[0]["sourcePodName"] != "client" || num(eRecs[0]["flowEndReason"]) != 4 {
		t.Errorf("lone half at SIGTERM: %v", eRecs)
	}

	// tshark decodes export.ipfix's output: the template declares the
	// Antrea aggregation IEs (PEN 56506), and RFC 7015's IEs have values.
	pcap := filepath.Join(t.TempDir(), "aggregate.pcap")
	rec.writePcap(t, pcap)
	// An aggregated Antrea record has 61 IEs, over tshark's default cap of
	// 60 template fields (cflow.max_template_fields; 0 lifts it).
	out, err := exec.Command("tshark", "-o", "cflow.max_template_fields:0", "-r", pcap, "-d", fmt.Sprintf("udp.port==%d,cflow", rec.port()),
		"-T", "fields", "-e", "cflow.template_ipfix_field_pen", "-e", "cflow.template_ipfix_field_type_enterprise",
		"-e", "cflow.original_flows_present", "-E", "occurrence=a", "-E", "separator=;").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"56506"} {
		if !strings.Contains(text, want) {
			t.Errorf("tshark output lacks %s:\n%s", want, text)
		}
	}
	types := map[string]bool{}
	presents := 0
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(line, ";")
		if len(f) != 3 {
			continue
		}
		for _, ty := range strings.Split(f[1], ",") {
			types[ty] = true
		}
		for _, p := range strings.Split(f[2], ",") {
			if p != "" {
				presents++
			}
		}
	}
	for _, ie := range []string{"121", "123", "129", "131", "145", "150", "151", "152"} { // octetTotalCountFromSourceNode … flowEndSecondsFromDestinationNode
		if !types[ie] {
			t.Errorf("tshark: no template field of Antrea type %s:\n%s", ie, text)
		}
	}
	if presents != len(recs) {
		t.Errorf("tshark decoded originalFlowsPresent in %d records, want %d", presents, len(recs))
	}
	checkTsharkNames(t, pcap, rec.port(), recs)
}

// TestAggregateOrphanHalf: a half whose other half never comes is exported
// after correlation_timeout, counted as uncorrelated.
func TestAggregateOrphanHalf(t *testing.T) {
	inPort := weirtest.FreePort(t, "udp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 64, timeout: 20ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "127.0.0.1:0"}
  processors:
    - aggregate: {correlation_timeout: 300ms}
  exporters:
    - export.jsonl: {path: %q}
`, inPort, jsonl))
	dst := newNode(t, fmt.Sprintf("127.0.0.1:%d", inPort), "node-2", 2)
	dst.send(t, conn{sport: 40100, dstPod: "server", flowType: 2, start: 1, end: 2, pkts: 1, octs: 60, dPkts: 1, dOcts: 60, reason: 2})
	recs := waitLines(t, jsonl, 1)
	if recs[0]["destinationPodName"] != "server" || (recs[0]["sourcePodName"] != nil && recs[0]["sourcePodName"] != "") || num(recs[0]["octetDeltaCountFromDestinationNode"]) != 60 {
		t.Errorf("orphan half: %v", recs[0])
	}
	w.WaitMetric(t, "weir_aggregate_correlations_total", 1)
	if !w.HasSample(t, "weir_aggregate_correlations_total", `reason="uncorrelated"`) {
		t.Error("orphan not counted as uncorrelated")
	}
	w.Stop(t)
}
