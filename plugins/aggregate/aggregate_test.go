package aggregate

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

// harness drives an Aggregate with a fake clock and an emitter into a sink.
type harness struct {
	t   *testing.T
	a   *Aggregate
	now time.Time
	out *plugintest.Emitter
	reg *prometheus.Registry
	got []*flow.Record // records that left Process, in order
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(cfg)
	}
	h := &harness{t: t, now: time.Unix(1_800_000_000, 0), out: plugintest.NewEmitter(256), reg: prometheus.NewRegistry()}
	set := plugin.NopSettings(ID)
	set.Metrics = h.reg
	a, err := New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	a.clock = func() time.Time { return h.now }
	a.epoch = h.now
	a.SetEmitter(h.out)
	h.a = a
	return h
}

// process runs one batch of records through Process and keeps what stays.
func (h *harness) process(recs ...func(b *flow.Batch)) {
	h.t.Helper()
	b := flow.NewBatch(len(recs))
	for _, f := range recs {
		f(b)
	}
	if err := h.a.Process(context.Background(), b); err != nil {
		h.t.Fatal(err)
	}
	keep := flow.NewBatch(0)
	for _, r := range b.Records {
		c := keep.Append()
		c.CopyFrom(r, keep)
		h.got = append(h.got, c)
	}
}

// advance moves the clock and runs the timeouts.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.now = h.now.Add(d)
	if err := h.a.sweep(context.Background(), false); err != nil {
		h.t.Fatal(err)
	}
}

// all is every record out: in place from Process, then emitted.
func (h *harness) all() []*flow.Record {
	return append(append([]*flow.Record(nil), h.got...), h.out.Sink.Records()...)
}

func (h *harness) counter(name, reason string) float64 {
	h.t.Helper()
	if reason == "" {
		return plugintest.MetricValue(h.t, h.reg, name)
	}
	return plugintest.MetricValue(h.t, h.reg, name, "reason", reason)
}

// half is one Node's record of an Antrea flow.
type half struct {
	node       string // "src", "dst", "intra", "external"
	flowType   uint8
	egressRule uint8
	sport      uint16
	start, end int64  // seconds
	pkts, octs uint64 // totals
	dPkts      uint64 // deltas
	dOcts      uint64
	reason     uint8
	tcpState   string
	v6         bool
}

func antrea(hf half) func(b *flow.Batch) {
	return func(b *flow.Batch) {
		src, dst := "10.10.1.5", "10.10.2.7"
		if hf.v6 {
			src, dst = "fd00:10::1:5", "fd00:10::2:7"
		}
		r := plugintest.Record(b, src, dst, 6, hf.sport, 8080, hf.dPkts, hf.dOcts)
		r.SetUint(flow.PacketTotalCount, hf.pkts)
		r.SetUint(flow.OctetTotalCount, hf.octs)
		r.SetUint(flow.ReversePacketTotalCount, hf.pkts/2)
		r.SetUint(flow.ReverseOctetTotalCount, hf.octs/2)
		r.SetUint(flow.ReversePacketDeltaCount, hf.dPkts/2)
		r.SetUint(flow.ReverseOctetDeltaCount, hf.dOcts/2)
		r.SetUint(flow.FlowStart, uint64(hf.start*1e9))
		r.SetUint(flow.FlowEnd, uint64(hf.end*1e9))
		r.SetUint(flow.FlowEndReason, uint64(max(hf.reason, 2)))
		ft := hf.flowType
		if ft == 0 {
			ft = flowTypeInterNode
		}
		r.SetUint(flow.FlowType, uint64(ft))
		r.SetString(flow.TCPState, hf.tcpState)
		switch hf.node {
		case "src":
			r.Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
			r.SetString(flow.SourcePodName, "client")
			r.SetString(flow.SourcePodNamespace, "ns-a")
			r.SetString(flow.SourceNodeName, "node-1")
			r.SetString(flow.EgressNetworkPolicyName, "allow-out")
			if hf.egressRule != 0 {
				r.SetUint(flow.EgressNetworkPolicyRuleAction, uint64(hf.egressRule))
			}
		case "dst":
			r.Exporter = netip.MustParseAddrPort("192.0.2.2:4739")
			r.SetString(flow.DestinationPodName, "server")
			r.SetString(flow.DestinationPodNamespace, "ns-b")
			r.SetString(flow.DestinationNodeName, "node-2")
			r.SetString(flow.IngressNetworkPolicyName, "allow-in")
		default:
			r.Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
			r.SetString(flow.SourcePodName, "client")
			r.SetString(flow.DestinationPodName, "server")
		}
		r.Extra = append(r.Extra, flow.Field{Enterprise: flow.AntreaPEN, Element: 158, Variable: true, Value: b.CopyBytes([]byte("egress-" + hf.node))})
	}
}

func extraU64(t *testing.T, r *flow.Record, ent uint32, el uint16) uint64 {
	t.Helper()
	f := r.FindExtra(flow.IEKey{Enterprise: ent, Element: el})
	if f == nil || len(f.Value) != 8 {
		t.Fatalf("record lacks IE %d/%d", ent, el)
	}
	return binary.BigEndian.Uint64(f.Value)
}

func TestCorrelation(t *testing.T) {
	tests := []struct {
		name  string
		order []string
		gap   time.Duration
		v6    bool
	}{
		{"IPv6", []string{"dst", "src"}, 0, true},
		{"source half first", []string{"src", "dst"}, 0, false},
		{"destination half first", []string{"dst", "src"}, 0, false},
		{"halves seconds apart", []string{"dst", "src"}, 3 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			for i, node := range tt.order {
				if i > 0 {
					h.advance(tt.gap)
				}
				h.process(antrea(half{node: node, sport: 40000, start: 100, end: 110, pkts: 10, octs: 1000, dPkts: 10, dOcts: 1000, tcpState: "ESTABLISHED", v6: tt.v6}))
			}
			out := h.all()
			if len(out) != 1 {
				t.Fatalf("got %d records, want one correlated record", len(out))
			}
			r := out[0]
			if r.SourcePodName != "client" || r.DestinationPodName != "server" || r.SourceNodeName != "node-1" ||
				r.DestinationNodeName != "node-2" || r.EgressNetworkPolicyName != "allow-out" || r.IngressNetworkPolicyName != "allow-in" {
				t.Errorf("record lacks a side's fields: %+v", r)
			}
			if r.PacketDeltaCount != 10 || r.OctetDeltaCount != 1000 || r.OctetTotalCount != 1000 || r.ReverseOctetTotalCount != 500 {
				t.Errorf("common counters: delta %d/%d total %d reverse total %d", r.PacketDeltaCount, r.OctetDeltaCount, r.OctetTotalCount, r.ReverseOctetTotalCount)
			}
			for _, c := range []struct {
				el   uint16
				want uint64
			}{
				{120, 10}, {121, 1000}, {122, 10}, {123, 1000}, {125, 500}, // FromSourceNode
				{128, 10}, {129, 1000}, {130, 10}, {131, 1000}, {133, 500}, // FromDestinationNode
				{145, 800}, {147, 800}, {148, 800}, {146, 400}, // throughputs: 1000 B in 10 s = 800 bit/s
			} {
				if got := extraU64(t, r, flow.AntreaPEN, c.el); got != c.want {
					t.Errorf("IE 56506/%d = %d, want %d", c.el, got, c.want)
				}
			}
			if got := extraU64(t, r, flow.IANA, ieOriginalFlowsPresent); got != 2 {
				t.Errorf("originalFlowsPresent = %d, want 2", got)
			}
			if f := r.FindExtra(flow.IEKey{Enterprise: flow.AntreaPEN, Element: 158}); f == nil || string(f.Value) != "egress-src" {
				t.Errorf("the source Node's other IEs are not kept: %v", f)
			}
			if h.counter("weir_aggregate_correlations_total", "correlated") != 1 {
				t.Error("correlation not counted")
			}
		})
	}
}

// Deltas exported over two active intervals add up to the totals.
func TestActiveIntervalsAddUp(t *testing.T) {
	h := newHarness(t, nil)
	h.process(antrea(half{node: "src", sport: 1, start: 100, end: 110, pkts: 10, octs: 1000, dPkts: 10, dOcts: 1000}),
		antrea(half{node: "dst", sport: 1, start: 100, end: 110, pkts: 10, octs: 1000, dPkts: 10, dOcts: 1000}))
	h.advance(30 * time.Second)
	h.process(antrea(half{node: "src", sport: 1, start: 100, end: 160, pkts: 25, octs: 4000, dPkts: 15, dOcts: 3000}))
	h.advance(10 * time.Second)
	h.process(antrea(half{node: "dst", sport: 1, start: 100, end: 165, pkts: 26, octs: 4100, dPkts: 16, dOcts: 3100}))
	h.advance(25 * time.Second) // 65 s since the correlated export: active timeout
	h.process(antrea(half{node: "src", sport: 1, start: 100, end: 200, pkts: 30, octs: 5000, dPkts: 5, dOcts: 1000, reason: reasonEnd}),
		antrea(half{node: "dst", sport: 1, start: 100, end: 200, pkts: 30, octs: 5000, dPkts: 4, dOcts: 900, reason: reasonEnd}))
	out := h.all()
	if len(out) != 3 {
		t.Fatalf("got %d records, want correlated + active timeout + end of flow", len(out))
	}
	var srcOcts, dstOcts uint64
	for _, r := range out {
		srcOcts += extraU64(t, r, flow.AntreaPEN, 123)
		dstOcts += extraU64(t, r, flow.AntreaPEN, 131)
	}
	last := out[1] // in place from Process: correlated, end of flow; then emitted: active timeout
	if srcOcts != 5000 || dstOcts != 5000 {
		t.Errorf("octetDeltaCount per side sums to %d/%d, want the totals 5000/5000", srcOcts, dstOcts)
	}
	if last.FlowEndReason != reasonEnd || extraU64(t, last, flow.AntreaPEN, 121) != 5000 || last.OctetTotalCount != 5000 {
		t.Errorf("last record: reason %d, octetTotalCountFromSourceNode %d, octetTotalCount %d", last.FlowEndReason,
			extraU64(t, last, flow.AntreaPEN, 121), last.OctetTotalCount)
	}
	if out[2].FlowEndReason != reasonActive {
		t.Errorf("active timeout record's flowEndReason = %d, want 2", out[2].FlowEndReason)
	}
	if h.a.tb.live != 0 {
		t.Errorf("%d flows live after the end of flow, want 0", h.a.tb.live)
	}
}

// Records needing no correlation are not held back.
func TestNotHeldBack(t *testing.T) {
	tests := []struct {
		name string
		hf   half
	}{
		{"intra-Node", half{node: "intra", flowType: 1}},
		{"to external", half{node: "src", flowType: 3}},
		{"from external", half{node: "dst", flowType: 4}},
		{"inter-Node denied by an egress rule (drop)", half{node: "src", egressRule: actionDrop}},
		{"inter-Node denied by an egress rule (reject)", half{node: "src", egressRule: actionReject}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			tt.hf.start, tt.hf.end, tt.hf.pkts, tt.hf.octs, tt.hf.dPkts, tt.hf.dOcts = 1, 2, 3, 300, 3, 300
			h.process(antrea(tt.hf))
			if len(h.got) != 1 || h.got[0].OctetDeltaCount != 300 {
				t.Fatalf("Process returned %d records, want the record at once", len(h.got))
			}
			// Both sides' counters are the one Node's (Antrea's fillSrc and fillDst).
			if extraU64(t, h.got[0], flow.AntreaPEN, 123) != 300 || extraU64(t, h.got[0], flow.AntreaPEN, 131) != 300 {
				t.Error("per-side counters not filled from the one record")
			}
		})
	}
}

func TestOrphanAfterCorrelationTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CorrelationTimeout = 5 * time.Second })
	h.process(antrea(half{node: "src", sport: 9, start: 1, end: 2, pkts: 1, octs: 60, dPkts: 1, dOcts: 60}))
	h.advance(4 * time.Second)
	if n := len(h.all()); n != 0 {
		t.Fatalf("%d records before correlation_timeout, want 0", n)
	}
	h.advance(2 * time.Second)
	out := h.all()
	if len(out) != 1 || out[0].SourcePodName != "client" || out[0].DestinationPodName != "" || out[0].OctetDeltaCount != 60 {
		t.Fatalf("want the lone half after correlation_timeout, got %d records", len(out))
	}
	if h.counter("weir_aggregate_correlations_total", "uncorrelated") != 1 {
		t.Error("orphan not counted as uncorrelated")
	}
	if extraU64(t, out[0], flow.AntreaPEN, 131) != 0 {
		t.Error("absent destination side has counters")
	}
}

// No news since the last export: nothing is exported again (Antrea #8278),
// but the flow still leaves after inactive_timeout.
func TestNoNewsNotReexported(t *testing.T) {
	h := newHarness(t, nil)
	h.process(antrea(half{node: "intra", flowType: 1, start: 1, end: 2, pkts: 1, octs: 60, dPkts: 1, dOcts: 60}))
	h.advance(61 * time.Second)
	h.advance(30 * time.Second)
	if n := len(h.all()); n != 1 {
		t.Errorf("%d records, want only the first", n)
	}
	if h.a.tb.live != 0 {
		t.Error("idle flow not evicted after inactive_timeout")
	}
}

// softflowd-like records (no Antrea IEs) aggregate per 5-tuple and
// observation domain of their exporter.
func TestPlainAggregation(t *testing.T) {
	h := newHarness(t, nil)
	rec := func(exporter string, domain uint32, sport uint16, octs uint64, reason uint8) func(*flow.Batch) {
		return func(b *flow.Batch) {
			r := plugintest.Record(b, "2001:db8::1", "2001:db8::2", 17, sport, 53, 1, octs)
			r.Exporter = netip.MustParseAddrPort(exporter)
			r.ObservationDomainID = domain
			r.SetUint(flow.FlowEndReason, uint64(reason))
			r.SetUint(flow.FlowStart, 1e12)
			r.SetUint(flow.FlowEnd, 2e12)
		}
	}
	h.process(rec("127.0.0.1:1000", 0, 5000, 100, 2), rec("127.0.0.1:1000", 0, 5000, 50, 2),
		rec("127.0.0.1:1000", 7, 5000, 10, 2), rec("127.0.0.2:1000", 0, 5000, 1, 2))
	if len(h.got) != 0 || h.a.tb.live != 3 {
		t.Fatalf("held %d flows, returned %d records; want 3 held (one per exporter and domain), none returned", h.a.tb.live, len(h.got))
	}
	h.process(rec("127.0.0.1:1000", 0, 5000, 7, reasonEnd))
	if len(h.got) != 1 || h.got[0].OctetDeltaCount != 157 || h.got[0].PacketDeltaCount != 3 || h.got[0].FlowEndReason != reasonEnd {
		t.Fatalf("end of flow: got %+v", h.got)
	}
	if got := extraU64(t, h.got[0], flow.IANA, ieOriginalFlowsPresent); got != 3 {
		t.Errorf("originalFlowsPresent = %d, want 3", got)
	}
	if err := h.a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.out.Sink.Len(); n != 2 {
		t.Fatalf("Shutdown exported %d flows, want the 2 live ones", n)
	}
	for _, r := range h.out.Sink.Records() {
		if r.FlowEndReason != reasonForced {
			t.Errorf("Shutdown export has flowEndReason %d, want 4", r.FlowEndReason)
		}
	}
}

func TestTableFull(t *testing.T) {
	tests := []struct {
		policy       string
		wantReturned int // records Process passes on at once
		wantLive     int
	}{
		{"export-oldest", 0, 2},
		{"drop-new", 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.MaxFlows, c.WhenFull = 2, tt.policy })
			for port := uint16(1); port <= 3; port++ {
				h.process(func(b *flow.Batch) { plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, port, 80, 1, 100) })
				h.advance(time.Second)
			}
			if len(h.got) != tt.wantReturned || h.a.tb.live != tt.wantLive {
				t.Fatalf("returned %d, live %d; want %d, %d", len(h.got), h.a.tb.live, tt.wantReturned, tt.wantLive)
			}
			out := h.all()
			if len(out) != 1 || out[0].FlowEndReason != reasonResource {
				t.Fatalf("want one record with flowEndReason 5, got %d", len(out))
			}
			if tt.policy == "export-oldest" && out[0].SourceTransportPort != 1 {
				t.Errorf("exported port %d, want the oldest flow (1)", out[0].SourceTransportPort)
			}
			if h.counter("weir_aggregate_table_full_total", "") != 1 {
				t.Error("table full not counted")
			}
		})
	}
}

func TestTableChurn(t *testing.T) {
	// Many flows in and out: the index and the interned strings stay consistent.
	h := newHarness(t, func(c *Config) { c.MaxFlows = 5000 })
	for round := range 5 {
		b := func(b *flow.Batch) {}
		_ = b
		for i := range 4000 {
			h.process(func(b *flow.Batch) {
				plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, uint16(i), uint16(round), 1, 100).Exporter = netip.MustParseAddrPort("127.0.0.1:9")
			})
		}
		h.advance(100 * time.Second)
		if h.a.tb.live != 0 {
			t.Fatalf("round %d: %d live after inactive_timeout", round, h.a.tb.live)
		}
	}
	if n := h.out.Sink.Len(); n != 20000 {
		t.Errorf("%d records out, want 20000", n)
	}
	if h.a.strs.len() != 0 || h.a.metas.len() != 0 {
		t.Errorf("interned strings leak: %d, %d", h.a.strs.len(), h.a.metas.len())
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		a, err := New(DefaultConfig(), plugin.NopSettings(ID))
		if err != nil {
			t.Fatal(err)
		}
		a.SetEmitter(plugintest.NewEmitter(16))
		return a
	})
}

// ICMP flows are keyed by type and code too (no ports), as nfdump does.
func TestICMPKeyedByTypeCode(t *testing.T) {
	h := newHarness(t, nil)
	icmp := func(typeCode uint16) func(*flow.Batch) {
		return func(b *flow.Batch) {
			r := plugintest.Record(b, "fd77::2", "fd77::1", 58, 0, 0, 1, 72)
			r.Exporter = netip.MustParseAddrPort("127.0.0.1:9")
			r.Extra = append(r.Extra, flow.Field{Element: 139, Value: b.CopyBytes([]byte{byte(typeCode >> 8), byte(typeCode)})})
		}
	}
	h.process(icmp(128<<8), icmp(129<<8), icmp(128<<8))
	if h.a.tb.live != 2 {
		t.Fatalf("%d flows, want 2 (echo request, echo reply)", h.a.tb.live)
	}
	if err := h.a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.out.Sink.Records() {
		f := r.FindExtra(flow.IEKey{Element: 139})
		if r.DestinationTransportPort != 0 || f == nil {
			t.Errorf("ICMP record: destinationTransportPort %d, icmpTypeCodeIPv6 %v", r.DestinationTransportPort, f)
		}
		if f != nil && f.Value[0] == 128 && r.PacketDeltaCount != 2 {
			t.Errorf("echo requests: %d packets, want 2", r.PacketDeltaCount)
		}
	}
}
