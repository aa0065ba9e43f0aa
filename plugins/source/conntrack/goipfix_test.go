package conntrack

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vmware/go-ipfix/pkg/collector"
	"github.com/vmware/go-ipfix/pkg/entities"
	"github.com/vmware/go-ipfix/pkg/registry"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	exportipfix "github.com/weir-flow/weir/plugins/export/ipfix"
)

// Antrea FlowExporter's template (antrea pkg/agent/flowexporter/exporter):
// IANA, reverse IANA and Antrea IEs, per family.
var (
	antreaIANA    = []string{"flowStartSeconds", "flowEndSeconds", "flowEndReason", "sourceTransportPort", "destinationTransportPort", "protocolIdentifier", "packetTotalCount", "octetTotalCount", "packetDeltaCount", "octetDeltaCount"}
	antreaReverse = []string{"reversePacketTotalCount", "reverseOctetTotalCount", "reversePacketDeltaCount", "reverseOctetDeltaCount"}
	antreaAntrea  = []string{"sourcePodName", "sourcePodNamespace", "sourceNodeName", "destinationPodName", "destinationPodNamespace", "destinationNodeName", "destinationServicePort", "destinationServicePortName", "ingressNetworkPolicyName", "ingressNetworkPolicyNamespace", "ingressNetworkPolicyType", "ingressNetworkPolicyRuleName", "ingressNetworkPolicyRuleAction", "egressNetworkPolicyName", "egressNetworkPolicyNamespace", "egressNetworkPolicyType", "egressNetworkPolicyRuleName", "egressNetworkPolicyRuleAction", "tcpState", "flowType", "egressName", "egressIP", "appProtocolName", "httpVals"}
)

func antreaTemplate(v6 bool) []string {
	l := slices.Concat(antreaIANA, antreaReverse, antreaAntrea)
	if v6 {
		return append(l, "sourceIPv6Address", "destinationIPv6Address", "destinationClusterIPv6")
	}
	return append(l, "sourceIPv4Address", "destinationIPv4Address", "destinationClusterIPv4")
}

// buildRecords runs appendRecord on an IPv4 TCP and an IPv6 UDP entry.
func buildRecords(t *testing.T, ctIEs bool) []*flow.Record {
	t.Helper()
	cfg := DefaultConfig()
	cfg.CtIEs = ctIEs
	cfg.PodCIDRs = []string{"10.10.0.0/16"}
	cfg.NodeCIDR = CIDRList{"10.10.1.0/24"}
	s, err := New(cfg, plugin.NopSettings(ID))
	if err != nil {
		t.Fatal(err)
	}
	em := plugintest.NewEmitter(16)
	s.out, s.batch = em, em.NewBatch()
	e4 := entry{key: key{sport: 40000, dport: 80, proto: 6, family: 4, zone: 7},
		packets: 10, octets: 1000, rpackets: 8, roctets: 9000, xpackets: 4, xoctets: 400,
		start: 1_780_000_000e9, changed: 1_780_000_010e9, mark: 0x10, tcpState: 3}
	copy(e4.src[:], []byte{10, 10, 1, 5})
	copy(e4.dst[:], []byte{10, 10, 2, 6})
	e6 := entry{key: key{sport: 5353, dport: 53, proto: 17, family: 6},
		packets: 2, octets: 200, rpackets: 2, roctets: 400, start: 1_780_000_000e9, changed: 1_780_000_001e9}
	e6.src = netip.MustParseAddr("fd00::1").As16()
	e6.dst = netip.MustParseAddr("fd00::2").As16()
	s.appendRecord(&e4, reasonActive, e4.changed)
	s.appendRecord(&e6, reasonIdle, e6.changed)
	s.flush(context.Background())
	return em.Sink.Records()
}

// goipfixCollect sends recs through export.ipfix to a go-ipfix v0.17.0 collecting
// process and returns the data records it decoded.
func goipfixCollect(t *testing.T, recs []*flow.Record, mode collector.DecodingMode) [][]entities.InfoElementWithValue {
	t.Helper()
	registry.LoadRegistry()
	cp, err := collector.InitCollectingProcess(collector.CollectorInput{
		Address: "127.0.0.1:0", Protocol: "tcp", MaxBufferSize: 65535, DecodingMode: mode})
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
	b := flow.NewBatch(len(recs))
	for _, r := range recs {
		b.Append().CopyFrom(r, b)
	}
	if err := exp.Export(ctx, b); err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	var got [][]entities.InfoElementWithValue
	timeout := time.After(10 * time.Second)
	for len(got) < len(recs) {
		select {
		case msg := <-cp.GetMsgChan():
			set := msg.GetSet()
			if set.GetSetType() != entities.Data {
				continue
			}
			for _, r := range set.GetRecords() {
				got = append(got, r.GetOrderedElementList())
			}
		case <-timeout:
			t.Fatalf("go-ipfix decoded %d of %d records", len(got), len(recs))
		}
	}
	return got
}

// TestGoIPFIXCollector: go-ipfix's collecting process, in its default strict
// mode, takes the records export.ipfix sends from source.conntrack, and
// their templates have exactly Antrea FlowExporter's IEs.
func TestGoIPFIXCollector(t *testing.T) {
	recs := buildRecords(t, false)
	if len(recs) != 2 {
		t.Fatalf("built %d records, want 2", len(recs))
	}
	got := goipfixCollect(t, recs, collector.DecodingModeStrict)
	for i, ies := range got {
		var names []string
		values := map[string]entities.InfoElementWithValue{}
		for _, ie := range ies {
			info := ie.GetInfoElement()
			name := info.Name // go-ipfix names reverse IEs "reverse…"
			names = append(names, name)
			values[name] = ie
		}
		want := antreaTemplate(i == 1)
		slices.Sort(names)
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Errorf("record %d template:\n got %v\nwant %v", i, names, want)
		}
		if i == 0 {
			for name, v := range map[string]uint64{"packetDeltaCount": 6, "octetTotalCount": 1000, "reverseOctetDeltaCount": 9000} {
				if got := values[name].GetUnsigned64Value(); got != v {
					t.Errorf("%s = %d, want %d", name, got, v)
				}
			}
			if got := values["flowStartSeconds"].GetUnsigned32Value(); got != 1_780_000_000 {
				t.Errorf("flowStartSeconds = %d", got)
			}
			if got := values["flowEndSeconds"].GetUnsigned32Value(); got != 1_780_000_010 {
				t.Errorf("flowEndSeconds = %d", got)
			}
			if got := values["tcpState"].GetStringValue(); got != "ESTABLISHED" {
				t.Errorf("tcpState = %q", got)
			}
			if got := values["flowType"].GetUnsigned8Value(); got != flowTypeInterNode {
				t.Errorf("flowType = %d, want inter-Node", got)
			}
			if got := values["flowEndReason"].GetUnsigned8Value(); got != reasonActive {
				t.Errorf("flowEndReason = %d", got)
			}
		}
	}
}

// TestGoIPFIXCollectorCtIEs: with ct_ies, a lenient go-ipfix collector keeps
// ctZone and ctMark as unknown Antrea-PEN IEs with their values.
func TestGoIPFIXCollectorCtIEs(t *testing.T) {
	got := goipfixCollect(t, buildRecords(t, true), collector.DecodingModeLenientKeepUnknown)
	var zone, mark []byte
	for _, ie := range got[0] {
		info := ie.GetInfoElement()
		if info.EnterpriseId == flow.AntreaPEN && info.ElementId == IECtZone.Element {
			zone = ie.GetOctetArrayValue()
		}
		if info.EnterpriseId == flow.AntreaPEN && info.ElementId == IECtMark.Element {
			mark = ie.GetOctetArrayValue()
		}
	}
	if !slices.Equal(zone, []byte{0, 7}) || !slices.Equal(mark, []byte{0, 0, 0, 0x10}) {
		t.Errorf("ctZone %x ctMark %x, want 0007 and 00000010", zone, mark)
	}
}
