package expr_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/filter/expr"
)

func newFilter(t testing.TB, expression string) *expr.Filter {
	t.Helper()
	f, err := expr.New(&expr.Config{Expression: expression, OnError: "keep"}, plugin.NopSettings(expr.ID))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// testRecords are the records every case filters; tag names them.
func testRecords(b *flow.Batch) {
	mk := func(tag, src, dst string, proto uint8, dport uint16, ns string) *flow.Record {
		r := plugintest.Record(b, src, dst, proto, 40000, dport, 10, 15000)
		r.SetString(flow.SourcePodNamespace, ns)
		r.SetString(flow.SourcePodName, tag)
		r.Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
		r.ObservationDomainID = 7
		return r
	}
	mk("web", "10.0.0.1", "10.0.0.2", 6, 80, "default")
	mk("tls", "10.0.0.1", "10.0.0.3", 6, 443, "default")
	mk("system", "10.0.0.4", "10.0.0.2", 6, 443, "kube-system")
	mk("ssh", "10.0.0.1", "10.0.0.2", 6, 22, "default")
	mk("dns6", "fd00::1", "fd00::53", 17, 53, "default")
	r := mk("v6web", "fd00::1", "fd00::2", 6, 443, "")
	r.SetUint(flow.FlowStart, 1_700_000_000_000_000_000)
	r.SetUint(flow.FlowEnd, 1_700_000_002_500_000_000)
	r = mk("extra", "192.168.1.1", "192.168.1.2", 6, 8080, "default")
	r.Exporter = netip.MustParseAddrPort("[2001:db8::1]:4739")
	r.ObservationDomainID = 9
	// ingressNetworkPolicyRulePriority (Antrea 116, signed32) and egressName
	// (Antrea 153, string) have no typed field: they live in Extra.
	prio := make([]byte, 4)
	prioValue := int32(-5)
	binary.BigEndian.PutUint32(prio, uint32(prioValue))
	r.Extra = append(r.Extra,
		flow.Field{Enterprise: flow.AntreaPEN, Element: 116, Value: b.CopyBytes(prio)},
		flow.Field{Enterprise: flow.AntreaPEN, Element: 153, Variable: true, Value: b.CopyBytes([]byte("egress-a"))},
		flow.Field{Enterprise: 0, Element: 32, Value: b.CopyBytes([]byte{0x03, 0x00})}, // icmpTypeCodeIPv4
	)
}

func tags(b *flow.Batch) string {
	var out []string
	for _, r := range b.Records {
		out = append(out, r.SourcePodName)
	}
	return strings.Join(out, ",")
}

func TestProcess(t *testing.T) {
	tests := []struct {
		name, expression, want string
	}{
		{"issue example", `protocolIdentifier == 6 && destinationTransportPort in [80, 443] && sourcePodNamespace != "kube-system"`, "web,tls,v6web"},
		{"ipv4 address text", `destinationIPv4Address == "10.0.0.2"`, "web,system,ssh"},
		{"ipv6 name reads only ipv6", `sourceIPv6Address == "fd00::1" && sourceIPv4Address == ""`, "dns6,v6web"},
		{"cidr", `inCIDR(sourceIPv4Address, "10.0.0.0/8") || inCIDR(destinationIPv6Address, "fd00::50/124")`, "web,tls,system,ssh,dns6"},
		{"strings", `sourcePodNamespace startsWith "kube-" || sourcePodName matches "^v6"`, "system,v6web"},
		{"absent string is empty", `sourcePodNamespace == ""`, "v6web"},
		{"absent number is zero", `destinationServicePort == 0 && flowStartMilliseconds == 0`, "web,tls,system,ssh,dns6,extra"},
		{"times in every unit", `flowEndMilliseconds - flowStartMilliseconds == 2500 && flowStartSeconds == 1700000000 && flowEndMicroseconds % 1000000 == 500000`, "v6web"},
		{"counters", `octetDeltaCount / packetDeltaCount == 1500`, "web,tls,system,ssh,dns6,v6web,extra"},
		{"extra signed IE", `ingressNetworkPolicyRulePriority == -5`, "extra"},
		{"extra string IE", `egressName == "egress-a"`, "extra"},
		{"extra absent reads zero", `egressName == "" && ingressNetworkPolicyRulePriority == 0`, "web,tls,system,ssh,dns6,v6web"},
		{"extra unsigned IE", `icmpTypeCodeIPv4 == 768`, "extra"},
		{"message context", `exporterIPv6Address == "2001:db8::1" && observationDomainId == 9 && exporterTransportPort == 4739`, "extra"},
		{"exporter v4", `exporterIPv4Address == "192.0.2.1"`, "web,tls,system,ssh,dns6,v6web"},
		{"let and builtins", `let p = destinationTransportPort; p > 1000 || len(sourcePodName) == 3`, "web,tls,ssh,extra"},
		{"false keeps nothing", `false`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFilter(t, tt.expression)
			b := flow.NewBatch(0)
			testRecords(b)
			if err := f.Process(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			if got := tags(b); got != tt.want {
				t.Errorf("kept %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOnError(t *testing.T) {
	for _, tc := range []struct {
		onError string
		want    string
	}{{"keep", "zero,ok"}, {"drop", "ok"}} {
		t.Run(tc.onError, func(t *testing.T) {
			var logs bytes.Buffer
			set := plugin.NopSettings(expr.ID)
			reg := prometheus.NewRegistry()
			set.Metrics = reg
			set.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			f, err := expr.New(&expr.Config{Expression: `octetDeltaCount % packetDeltaCount == 0`, OnError: tc.onError}, set)
			if err != nil {
				t.Fatal(err)
			}
			b := flow.NewBatch(0)
			r := plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, 1, 2, 0, 100) // 0 packets: integer modulo by zero
			r.SetString(flow.SourcePodName, "zero")
			r = plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, 1, 2, 1, 100)
			r.SetString(flow.SourcePodName, "ok")
			for range 2 {
				b2 := flow.NewBatch(0)
				for _, r := range b.Records {
					b2.Append().CopyFrom(r, b2)
				}
				if err := f.Process(context.Background(), b2); err != nil {
					t.Fatal(err)
				}
				if got := tags(b2); got != tc.want {
					t.Errorf("kept %q, want %q", got, tc.want)
				}
			}
			if n := counterValue(t, reg, "weir_filter_expr_evaluation_errors_total"); n != 2 {
				t.Errorf("errors counted %v, want 2", n)
			}
			if c := strings.Count(logs.String(), "level=WARN"); c != 1 {
				t.Errorf("%d warnings, want 1 (then only counted):\n%s", c, logs.String())
			}
		})
	}
}

// counterValue returns the value of the counter named name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name)
}

func TestConcurrentProcess(t *testing.T) {
	f := newFilter(t, `protocolIdentifier == 6 && destinationTransportPort in [80, 443] && sourceIPv4Address != "10.0.0.4"`)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				b := flow.NewBatch(0)
				testRecords(b)
				if err := f.Process(context.Background(), b); err != nil {
					t.Error(err)
					return
				}
				if got := tags(b); got != "web,tls,v6web" {
					t.Errorf("kept %q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestProcessDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	f := newFilter(t, `protocolIdentifier == 6 && destinationTransportPort in [80, 443] && sourcePodNamespace != "kube-system" && egressName == "" && sourceIPv4Address != "10.9.9.9" && !inCIDR(sourceIPv6Address, "fd99::/16")`)
	src := benchBatch(256)
	all := append([]*flow.Record(nil), src.Records...)
	_ = f.Process(context.Background(), src) // warm the evaluator pool
	allocs := testing.AllocsPerRun(50, func() {
		src.Records = append(src.Records[:0], all...)
		_ = f.Process(context.Background(), src)
	})
	if allocs != 0 {
		t.Errorf("%v allocs per batch, want 0", allocs)
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component { return newFilter(t, "true") })
}

func TestRegistered(t *testing.T) {
	info, ok := plugin.Lookup(expr.ID)
	if !ok {
		t.Fatal("not registered")
	}
	cfg := info.NewConfig().(*expr.Config)
	cfg.Expression = "protocolIdentifier == 17"
	c, err := info.New(cfg, plugin.NopSettings(expr.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(plugin.Processor); !ok {
		t.Fatalf("%T is not a processor", c)
	}
}
