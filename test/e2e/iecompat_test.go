package e2e

// The Antrea upgrade problem (issue 5) end to end: go-ipfix exporting
// processes with an old and a new Antrea IE set send over loopback UDP to a
// listener that decodes with core/ipfix and runs enrich.iecompat with the
// shipped shims, in all four upgrade orders.
//
// A "pipeline version" is what its consumers expect and the shims it is
// configured with:
//   - old pipeline: consumers expect the old IE set (destinationClusterIPv4);
//     shims: configs/shims/antrea-destination-service-ip.yaml, so exporters
//     may upgrade first.
//   - new pipeline: consumers expect the new IE set (destinationServiceIPv4,
//     egressNodeName for Egress traffic, 4-byte rule priorities); shims: every
//     file in configs/shims, so the pipeline may upgrade first.
//
// In every order: every record arrives, nothing panics, every IE the exporter
// sent is still in the record with its value (typed or verbatim; a widened
// integer keeps its value), an IE no registry knows is kept byte for byte and
// counted, and the pipeline's consumers find the IEs they expect.

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmware/go-ipfix/pkg/entities"
	"github.com/vmware/go-ipfix/pkg/exporter"
	"github.com/vmware/go-ipfix/pkg/registry"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/plugins/enrich/iecompat"
	"github.com/weir-flow/weir/test/weirtest"
)

// compatIE is one IE of an exporter's template and its value in record i.
type compatIE struct {
	name   string
	pen    uint32
	id     uint16
	typ    entities.IEDataType
	length uint16
	value  func(i int) any // uint8…uint64, int32, string, net.IP or seconds (uint32 for dateTimeSeconds)
}

const (
	antreaPEN   = 56506
	futureIE    = 250 // an Antrea IE no registry knows yet
	compatFlows = 24
)

func ip4(s string) net.IP { return net.ParseIP(s).To4() }

// commonIEs are in both IE sets.
func commonIEs() []compatIE {
	return []compatIE{
		{"sourceIPv4Address", 0, 8, entities.Ipv4Address, 4, func(i int) any { return ip4(fmt.Sprintf("10.10.0.%d", i+1)) }},
		{"destinationIPv4Address", 0, 12, entities.Ipv4Address, 4, func(i int) any { return ip4("10.10.1.1") }},
		{"sourceTransportPort", 0, 7, entities.Unsigned16, 2, func(i int) any { return uint16(40000 + i) }},
		{"destinationTransportPort", 0, 11, entities.Unsigned16, 2, func(i int) any { return uint16(8080) }},
		{"protocolIdentifier", 0, 4, entities.Unsigned8, 1, func(i int) any { return uint8(6) }},
		{"packetDeltaCount", 0, 2, entities.Unsigned64, 8, func(i int) any { return uint64(10 + i) }},
		{"octetDeltaCount", 0, 1, entities.Unsigned64, 8, func(i int) any { return uint64(1500 * (10 + i)) }},
		{"flowStartSeconds", 0, 150, entities.DateTimeSeconds, 4, func(i int) any { return uint32(1_780_000_000 + i) }},
		{"flowEndSeconds", 0, 151, entities.DateTimeSeconds, 4, func(i int) any { return uint32(1_780_000_060 + i) }},
		{"sourcePodName", antreaPEN, 101, entities.String, 65535, func(i int) any { return fmt.Sprintf("client-%d", i) }},
		{"sourcePodNamespace", antreaPEN, 100, entities.String, 65535, func(i int) any { return "default" }},
		{"destinationPodName", antreaPEN, 103, entities.String, 65535, func(i int) any { return "server-0" }},
		{"destinationPodNamespace", antreaPEN, 102, entities.String, 65535, func(i int) any { return "web" }},
		{"sourceNodeName", antreaPEN, 104, entities.String, 65535, func(i int) any { return "node-a" }},
		{"destinationServicePort", antreaPEN, 108, entities.Unsigned16, 2, func(i int) any { return uint16(80) }},
		{"flowType", antreaPEN, 137, entities.Unsigned8, 1, func(i int) any { return uint8(2) }},
		{"tcpState", antreaPEN, 136, entities.String, 65535, func(i int) any { return "ESTABLISHED" }},
		// Antrea sends every IE of its template; Egress IEs are empty when
		// the flow went through no Egress (odd records here).
		{"egressName", antreaPEN, 153, entities.String, 65535, func(i int) any { return egressOf(i) }},
	}
}

func egressOf(i int) string {
	if i%2 == 0 {
		return "egress-a"
	}
	return ""
}

// oldIEs is an Antrea exporter built before go-ipfix v0.9.0 (and, for the
// rule priority, before v0.5.1): destinationClusterIPv4, a 2-byte unsigned16
// rule priority, no egressNodeName.
func oldIEs() []compatIE {
	return append(commonIEs(),
		compatIE{"destinationClusterIPv4", antreaPEN, 106, entities.Ipv4Address, 4, func(i int) any { return ip4("10.96.0.10") }},
		compatIE{"ingressNetworkPolicyRulePriority", antreaPEN, 116, entities.Unsigned16, 2, func(i int) any { return uint16(100 + i) }},
	)
}

// newIEs is an exporter built with go-ipfix v0.17.0 after the
// destinationClusterIP deprecation: destinationServiceIPv4 instead of
// destinationClusterIPv4, egressNodeName, clusterId, a 4-byte signed32 rule
// priority, and an IE from a future registry.
func newIEs() []compatIE {
	return append(commonIEs(),
		compatIE{"destinationServiceIPv4", antreaPEN, 168, entities.Ipv4Address, 4, func(i int) any { return ip4("10.96.0.10") }},
		compatIE{"ingressNetworkPolicyRulePriority", antreaPEN, 116, entities.Signed32, 4, func(i int) any { return int32(100 + i) }},
		compatIE{"egressNodeName", antreaPEN, 157, entities.String, 65535, func(i int) any {
			if egressOf(i) != "" {
				return "egress-node-1"
			}
			return ""
		}},
		compatIE{"clusterId", antreaPEN, 158, entities.String, 65535, func(i int) any { return "cluster-a" }},
		compatIE{"futureAntreaIE", antreaPEN, futureIE, entities.String, 65535, func(i int) any { return fmt.Sprintf("future-%d", i) }},
	)
}

func infoElement(t *testing.T, ie compatIE) *entities.InfoElement {
	t.Helper()
	if e, err := registry.GetInfoElement(ie.name, ie.pen); err == nil && e.DataType == ie.typ && e.Len == ie.length {
		return e
	}
	// Not in this registry, or an older definition (the 2-byte priority).
	return entities.NewInfoElement(ie.name, ie.id, ie.typ, ie.pen, ie.length)
}

func elementWithValue(t *testing.T, e *entities.InfoElement, v any) entities.InfoElementWithValue {
	t.Helper()
	switch v := v.(type) {
	case uint8:
		return entities.NewUnsigned8InfoElement(e, v)
	case uint16:
		return entities.NewUnsigned16InfoElement(e, v)
	case uint64:
		return entities.NewUnsigned64InfoElement(e, v)
	case int32:
		return entities.NewSigned32InfoElement(e, v)
	case uint32:
		return entities.NewDateTimeSecondsInfoElement(e, v)
	case string:
		return entities.NewStringInfoElement(e, v)
	case net.IP:
		return entities.NewIPAddressInfoElement(e, v)
	}
	t.Fatalf("no go-ipfix element for %T", v)
	return nil
}

// exportFlows sends compatFlows records with ies from a go-ipfix exporting
// process to addr, under templateID in observation domain domain.
func exportFlows(t *testing.T, addr string, domain uint32, templateID uint16, ies []compatIE) {
	t.Helper()
	ep, err := exporter.InitExportingProcess(exporter.ExporterInput{
		CollectorAddress:    addr,
		CollectorProtocol:   "udp",
		ObservationDomainID: domain,
		TempRefTimeout:      1,
	})
	if err != nil {
		t.Fatalf("go-ipfix exporter: %v", err)
	}
	defer ep.CloseConnToCollector()
	sendFlows(t, ep, templateID, ies)
}

func sendFlows(t *testing.T, ep *exporter.ExportingProcess, templateID uint16, ies []compatIE) {
	t.Helper()
	elems := make([]*entities.InfoElement, len(ies))
	for i, ie := range ies {
		elems[i] = infoElement(t, ie)
	}
	tmpl, err := entities.MakeTemplateSet(templateID, elems)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ep.SendSet(tmpl); err != nil {
		t.Fatalf("send template: %v", err)
	}
	for i := 0; i < compatFlows; i++ {
		values := make([]entities.InfoElementWithValue, len(ies))
		for j, ie := range ies {
			values[j] = elementWithValue(t, elems[j], ie.value(i))
		}
		// SendDataRecords, not SendSet: go-ipfix checks data sets against
		// the first definition of a template ID, and a redefinition is
		// what TestIECompatTemplateRedefined is about.
		rec := entities.NewDataRecordFromElements(templateID, values)
		if _, _, err := ep.SendDataRecords(templateID, []entities.Record{rec}, nil); err != nil {
			t.Fatalf("send data: %v", err)
		}
	}
}

// collector is a loopback UDP listener decoding with core/ipfix.
type collector struct {
	conn *net.UDPConn
	dec  *ipfix.Decoder
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadBuffer(4 << 20); err != nil {
		t.Logf("SetReadBuffer: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &collector{conn: conn, dec: ipfix.NewDecoder(ipfix.DecoderOptions{})}
}

func (c *collector) addr() string { return c.conn.LocalAddr().String() }

// receive decodes messages into b until it holds want records or 10 s pass.
func (c *collector) receive(t *testing.T, b *flow.Batch, want int) {
	t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(10 * time.Second)
	for b.Len() < want {
		if err := c.conn.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("received %d of %d records: %v", b.Len(), want, err)
		}
		if _, err := c.dec.Decode(b, buf[:n], from); err != nil {
			t.Fatalf("decode message from %v: %v", from, err)
		}
	}
}

// pipelineShims builds enrich.iecompat with the given shipped shim files.
func pipelineShims(t *testing.T, files ...string) *iecompat.Shims {
	t.Helper()
	cfg := &iecompat.Config{Files: files}
	set := plugin.NopSettings(iecompat.ID)
	set.BaseDir = weirtest.RepoRoot()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(context.Background(), weirtest.RepoRoot()); err != nil {
		t.Fatal(err)
	}
	s, err := iecompat.New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkSent asserts that r still carries every IE of ies with record i's
// value. widened allows a verbatim integer re-encoded wider.
func checkSent(t *testing.T, r *flow.Record, i int, ies []compatIE) {
	t.Helper()
	for _, ie := range ies {
		want := ie.value(i)
		key := flow.IEKey{Enterprise: ie.pen, Element: ie.id}
		switch ie.id {
		case 150, 151: // flowStartSeconds / flowEndSeconds become FlowStart / FlowEnd
			if ie.pen == 0 {
				f := flow.FlowStart
				if ie.id == 151 {
					f = flow.FlowEnd
				}
				if got := r.Uint(f); got != uint64(want.(uint32))*1e9 {
					t.Errorf("record %d: %s = %d ns, want %d s", i, ie.name, got, want)
				}
				continue
			}
		}
		if f, typed := flow.FieldByIE(key); typed {
			var ok bool
			switch w := want.(type) {
			case uint8:
				ok = r.Uint(f) == uint64(w)
			case uint16:
				ok = r.Uint(f) == uint64(w)
			case uint64:
				ok = r.Uint(f) == w
			case string:
				ok = r.String(f) == w
			case net.IP:
				a, _ := netip.AddrFromSlice(w)
				ok = r.Addr(f) == a
			}
			if !ok {
				t.Errorf("record %d: typed %s lost or changed (want %v)", i, ie.name, want)
			}
			continue
		}
		fld := r.FindExtra(key)
		if fld == nil {
			if s, isString := want.(string); isString && s == "" {
				continue // a zero-length value carries nothing; the codec may omit it
			}
			t.Errorf("record %d: verbatim %s (%v) lost", i, ie.name, key)
			continue
		}
		switch w := want.(type) {
		case string:
			if string(fld.Value) != w {
				t.Errorf("record %d: %s = %q, want %q", i, ie.name, fld.Value, w)
			}
		case net.IP:
			if !net.IP(fld.Value).Equal(w) {
				t.Errorf("record %d: %s = %v, want %v", i, ie.name, net.IP(fld.Value), w)
			}
		case uint16, int32:
			// Integers compare by value: a shim may have widened them.
			var got int64
			for _, c := range fld.Value {
				got = got<<8 | int64(c)
			}
			if fmt.Sprint(got) != fmt.Sprint(w) {
				t.Errorf("record %d: %s = %d (% x), want %v", i, ie.name, got, fld.Value, w)
			}
		default:
			t.Fatalf("no check for %T", w)
		}
	}
}

func TestIECompatUpgradeOrders(t *testing.T) {
	shipped, err := filepath.Glob(filepath.Join(weirtest.RepoRoot(), "configs", "shims", "antrea-*.yaml"))
	if err != nil || len(shipped) < 3 {
		t.Fatalf("shipped shims: %v %v", shipped, err)
	}
	var newFiles []string
	for _, f := range shipped {
		rel, _ := filepath.Rel(weirtest.RepoRoot(), f)
		newFiles = append(newFiles, rel)
	}
	oldFiles := []string{"configs/shims/antrea-destination-service-ip.yaml"}

	type pipeline struct {
		name   string
		files  []string
		expect func(t *testing.T, r *flow.Record, i int)
	}
	oldPipeline := pipeline{"old pipeline", oldFiles, func(t *testing.T, r *flow.Record, i int) {
		if r.DestinationClusterIP != netip.MustParseAddr("10.96.0.10") {
			t.Errorf("record %d: old consumers need destinationClusterIPv4, got %v", i, r.DestinationClusterIP)
		}
	}}
	newPipeline := pipeline{"new pipeline", newFiles, func(t *testing.T, r *flow.Record, i int) {
		if f := r.FindExtra(flow.IEKey{Enterprise: antreaPEN, Element: 168}); f == nil || !net.IP(f.Value).Equal(ip4("10.96.0.10")) {
			t.Errorf("record %d: new consumers need destinationServiceIPv4, got %+v", i, f)
		}
		if f := r.FindExtra(flow.IEKey{Enterprise: antreaPEN, Element: 116}); f == nil || len(f.Value) != 4 {
			t.Errorf("record %d: new consumers need a 4-byte ingressNetworkPolicyRulePriority, got %+v", i, f)
		}
		if egressOf(i) != "" && r.EgressNodeName == "" {
			t.Errorf("record %d: Egress traffic without egressNodeName", i)
		}
		if egressOf(i) == "" && r.EgressNodeName != "" {
			t.Errorf("record %d: egressNodeName %q on traffic without Egress", i, r.EgressNodeName)
		}
	}}
	type exporterVersion struct {
		name string
		ies  func() []compatIE
	}
	oldExporter := exporterVersion{"old exporter", oldIEs}
	newExporter := exporterVersion{"new exporter", newIEs}

	for _, tc := range []struct {
		exp  exporterVersion
		pipe pipeline
	}{
		{oldExporter, oldPipeline},
		{newExporter, oldPipeline},
		{oldExporter, newPipeline},
		{newExporter, newPipeline},
	} {
		t.Run(tc.exp.name+" to "+tc.pipe.name, func(t *testing.T) {
			c := newCollector(t)
			shims := pipelineShims(t, tc.pipe.files...)
			ies := tc.exp.ies()
			exportFlows(t, c.addr(), 7, 256, ies)
			b := flow.NewBatch(compatFlows)
			c.receive(t, b, compatFlows)
			if err := shims.Process(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			if b.Len() != compatFlows {
				t.Fatalf("%d records after the shims, want %d", b.Len(), compatFlows)
			}
			for _, r := range b.Records {
				// Records arrive in order over loopback; index by port.
				i := int(r.SourceTransportPort) - 40000
				if i < 0 || i >= compatFlows {
					t.Fatalf("unexpected record %+v", r)
				}
				if r.ObservationDomainID != 7 {
					t.Errorf("record %d: observation domain %d", i, r.ObservationDomainID)
				}
				checkSent(t, r, i, ies)
				tc.pipe.expect(t, r, i)
			}
			unknown := c.dec.Stats().UnknownIEs.Load()
			if tc.exp.name == "new exporter" && unknown == 0 {
				t.Error("the future IE was not counted as unknown")
			}
		})
	}
}

// TestIECompatTemplateRedefined upgrades an exporter in place: the same
// exporting process (same transport session) redefines template 256 with
// the new IE set. Records after the redefinition decode with the new
// template only: no stale field, nothing lost.
func TestIECompatTemplateRedefined(t *testing.T) {
	c := newCollector(t)
	ep, err := exporter.InitExportingProcess(exporter.ExporterInput{
		CollectorAddress:    c.addr(),
		CollectorProtocol:   "udp",
		ObservationDomainID: 3,
		// No template refresh during the test: go-ipfix would resend its
		// first definition of template 256.
		TempRefTimeout: 3600,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.CloseConnToCollector()
	shims := pipelineShims(t, "configs/shims/antrea-destination-service-ip.yaml", "configs/shims/antrea-rule-priority.yaml", "configs/shims/antrea-egress-node-name.yaml")

	sendFlows(t, ep, 256, oldIEs())
	before := flow.NewBatch(compatFlows)
	c.receive(t, before, compatFlows)
	sendFlows(t, ep, 256, newIEs())
	after := flow.NewBatch(compatFlows)
	c.receive(t, after, compatFlows)

	for _, b := range []*flow.Batch{before, after} {
		if err := shims.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range before.Records {
		i := int(r.SourceTransportPort) - 40000
		checkSent(t, r, i, oldIEs())
		if r.FindExtra(flow.IEKey{Enterprise: antreaPEN, Element: futureIE}) != nil || r.Has(flow.EgressNodeName) && egressOf(i) == "" {
			t.Errorf("record %d decoded with IEs of the later template", i)
		}
	}
	for _, r := range after.Records {
		i := int(r.SourceTransportPort) - 40000
		checkSent(t, r, i, newIEs())
		// 106 was not in the new template: what the record has comes from
		// the shim (derived from 168), not from the old template.
		if r.DestinationClusterIP != netip.MustParseAddr("10.96.0.10") {
			t.Errorf("record %d: destinationClusterIPv4 %v", i, r.DestinationClusterIP)
		}
		if f := r.FindExtra(flow.IEKey{Enterprise: antreaPEN, Element: 116}); f == nil || binary.BigEndian.Uint32(f.Value) != uint32(100+i) {
			t.Errorf("record %d: rule priority %+v", i, f)
		}
	}
}
