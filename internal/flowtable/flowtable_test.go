package flowtable

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

func TestColumns(t *testing.T) {
	cols := Columns(true)
	names := Names(cols)
	for _, want := range []string{
		"flowStartSeconds", "flowEndSeconds", "exporterIPAddress", "exporterTransportPort", "observationDomainId",
		"sourceIPAddress", "destinationIPAddress", "originalExporterIPAddress", "destinationClusterIP",
		"flowStartMilliseconds", "octetDeltaCount", "reversePacketDeltaCount",
		"sourcePodNamespace", "sourcePodName", "ingressNetworkPolicyRuleAction", "egressNodeName", "destinationPodLabels",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("no column %s in %v", want, names)
		}
	}
	if len(Columns(false)) != len(cols)-2 {
		t.Error("Columns(false) should only leave out the two seconds columns")
	}
	seen := map[string]bool{}
	for _, c := range cols {
		if seen[c.Name] {
			t.Errorf("duplicate column %s", c.Name)
		}
		seen[c.Name] = true
		switch c.Name {
		case "sourcePodNamespace", "ingressNetworkPolicyName", "sourceNodeName":
			if !c.LowCardinality {
				t.Errorf("%s should be LowCardinality", c.Name)
			}
		case "sourcePodName", "sourcePodLabels":
			if c.LowCardinality {
				t.Errorf("%s should not be LowCardinality", c.Name)
			}
		}
	}
}

func TestValues(t *testing.T) {
	b := flow.NewBatch(1)
	r := b.Append()
	r.Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
	r.ObservationDomainID = 9
	r.SetUint(flow.FlowEnd, 1_800_000_000_123_456_789)
	r.SetAddr(flow.SourceAddress, netip.MustParseAddr("10.0.0.1"))
	r.SourcePodName = "web-0"
	want := map[string]string{
		"exporterIPAddress": "192.0.2.1", "exporterTransportPort": "4739", "observationDomainId": "9",
		"flowEndSeconds": "1800000000", "flowEndMilliseconds": "1800000000123", "sourceIPAddress": "10.0.0.1",
		"sourcePodName": "web-0",
	}
	for _, c := range Columns(true) {
		w, ok := want[c.Name]
		if !ok {
			continue
		}
		var got string
		switch c.Kind {
		case flow.KindAddress:
			got = c.Addr(r).String()
		case flow.KindString:
			got = c.String(r)
		default:
			got = uintString(c.Uint(r))
		}
		if got != w {
			t.Errorf("%s = %s, want %s", c.Name, got, w)
		}
	}
}

func uintString(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}
