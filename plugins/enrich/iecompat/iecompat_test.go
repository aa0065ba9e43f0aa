package iecompat_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/enrich/iecompat"
)

// repoRoot is the repository's root directory (where go.mod is).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

const (
	lab     = 32473 // documentation PEN (RFC 5612)
	antrea  = flow.AntreaPEN
	prioIE  = 116 // ingressNetworkPolicyRulePriority
	egrName = 153 // egressName
	svcIPv4 = 168 // destinationServiceIPv4
)

func newShims(t testing.TB, shims ...iecompat.Shim) (*iecompat.Shims, *prometheus.Registry) {
	t.Helper()
	set := plugin.NopSettings(iecompat.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	s, err := iecompat.New(&iecompat.Config{Shims: shims}, set)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func shim(name string, actions ...iecompat.Action) iecompat.Shim {
	return iecompat.Shim{Name: name, Actions: actions}
}

// rec appends a record with a 5-tuple, an exporter and verbatim IEs.
func rec(b *flow.Batch, extra ...flow.Field) *flow.Record {
	r := plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, 40000, 443, 2, 300)
	r.Exporter = netip.MustParseAddrPort("192.0.2.7:4739")
	r.ObservationDomainID = 1
	for _, f := range extra {
		f.Value = b.CopyBytes(f.Value)
		if f.Value == nil {
			f.Value = []byte{}
		}
		r.Extra = append(r.Extra, f)
	}
	return r
}

func ie(pen uint32, id uint16, v ...byte) flow.Field {
	return flow.Field{Enterprise: pen, Element: id, Value: v}
}

func str(pen uint32, id uint16, s string) flow.Field {
	return flow.Field{Enterprise: pen, Element: id, Variable: true, Value: []byte(s)}
}

func extra(r *flow.Record, pen uint32, id uint16) []byte {
	if f := r.FindExtra(flow.IEKey{Enterprise: pen, Element: id}); f != nil {
		return f.Value
	}
	return nil
}

func process(t testing.TB, s *iecompat.Shims, b *flow.Batch) {
	t.Helper()
	if err := s.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	var kv []string
	for k, v := range labels {
		kv = append(kv, k, v)
	}
	return plugintest.MetricValue(t, reg, name, kv...)
}

func TestRename(t *testing.T) {
	t.Run("verbatim to typed string", func(t *testing.T) {
		s, _ := newShims(t, shim("s", iecompat.Action{Op: "rename", IE: "32473/1", To: "egressNodeName"}))
		b := flow.NewBatch(0)
		r := rec(b, str(lab, 9, "keep"), str(lab, 1, "node-a"), ie(lab, 10, 1))
		process(t, s, b)
		if r.EgressNodeName != "node-a" || !r.Has(flow.EgressNodeName) {
			t.Errorf("egressNodeName %q", r.EgressNodeName)
		}
		if extra(r, lab, 1) != nil {
			t.Error("32473/1 still in Extra")
		}
		if len(r.Extra) != 2 || r.Extra[0].Element != 9 || r.Extra[1].Element != 10 {
			t.Errorf("Extra order not kept: %+v", r.Extra)
		}
	})
	t.Run("verbatim to typed unsigned and address", func(t *testing.T) {
		s, _ := newShims(t, shim("s",
			iecompat.Action{Op: "rename", IE: "32473/1", To: "flowType"},
			iecompat.Action{Op: "rename", IE: "32473/2", To: "destinationClusterIPv4"},
			iecompat.Action{Op: "rename", IE: "32473/3", To: "destinationServicePort"},
		))
		b := flow.NewBatch(0)
		r := rec(b, ie(lab, 1, 3), ie(lab, 2, 10, 96, 0, 1), ie(lab, 3, 0, 0, 0x1f, 0x90))
		process(t, s, b)
		if r.FlowType != 3 || r.DestinationClusterIP != netip.MustParseAddr("10.96.0.1") || r.DestinationServicePort != 8080 {
			t.Errorf("got flowType %d, clusterIP %v, servicePort %d", r.FlowType, r.DestinationClusterIP, r.DestinationServicePort)
		}
		if len(r.Extra) != 0 {
			t.Errorf("Extra left: %+v", r.Extra)
		}
	})
	t.Run("verbatim renumbered in place", func(t *testing.T) {
		s, _ := newShims(t, shim("s", iecompat.Action{Op: "rename", IE: "32473/1", To: "56506/157"}))
		b := flow.NewBatch(0)
		r := rec(b, str(lab, 1, "node-b"))
		process(t, s, b)
		// 56506/157 is egressNodeName, a typed field: moved out of Extra.
		if r.EgressNodeName != "node-b" || len(r.Extra) != 0 {
			t.Errorf("egressNodeName %q, Extra %+v", r.EgressNodeName, r.Extra)
		}
		s, _ = newShims(t, shim("s", iecompat.Action{Op: "rename", IE: "32473/1", To: "32473/2"}))
		r = rec(b, str(lab, 1, "v"))
		process(t, s, b)
		if string(extra(r, lab, 2)) != "v" || extra(r, lab, 1) != nil || !r.Extra[0].Variable {
			t.Errorf("Extra %+v", r.Extra)
		}
	})
	t.Run("typed to verbatim", func(t *testing.T) {
		s, _ := newShims(t, shim("s",
			iecompat.Action{Op: "rename", IE: "sourcePodLabels", To: "32473/5"},
			iecompat.Action{Op: "rename", IE: "destinationTransportPort", To: "32473/6", Type: "unsigned16"},
		))
		b := flow.NewBatch(0)
		r := rec(b)
		r.SetString(flow.SourcePodLabels, `{"app":"a"}`)
		process(t, s, b)
		if r.Has(flow.SourcePodLabels) || string(extra(r, lab, 5)) != `{"app":"a"}` {
			t.Errorf("labels typed %q, extra %q", r.SourcePodLabels, extra(r, lab, 5))
		}
		if r.Has(flow.DestinationTransportPort) || !bytes.Equal(extra(r, lab, 6), []byte{1, 187}) {
			t.Errorf("port typed %v, extra %v", r.Has(flow.DestinationTransportPort), extra(r, lab, 6))
		}
	})
	t.Run("conflict keeps both and counts", func(t *testing.T) {
		s, reg := newShims(t, shim("s", iecompat.Action{Op: "rename", IE: "32473/1", To: "egressNodeName"}))
		b := flow.NewBatch(0)
		r := rec(b, str(lab, 1, "old"))
		r.SetString(flow.EgressNodeName, "new")
		process(t, s, b)
		if r.EgressNodeName != "new" || string(extra(r, lab, 1)) != "old" {
			t.Errorf("egressNodeName %q, extra %q", r.EgressNodeName, extra(r, lab, 1))
		}
		if n := counter(t, reg, "weir_enrich_iecompat_actions_skipped_total", map[string]string{"shim": "s", "reason": "conflict"}); n != 1 {
			t.Errorf("conflicts counted %v, want 1", n)
		}
	})
	t.Run("overwrite", func(t *testing.T) {
		s, _ := newShims(t, shim("s", iecompat.Action{Op: "rename", IE: "32473/1", To: "egressNodeName", Overwrite: true}))
		b := flow.NewBatch(0)
		r := rec(b, str(lab, 1, "old"))
		r.SetString(flow.EgressNodeName, "new")
		process(t, s, b)
		if r.EgressNodeName != "old" || extra(r, lab, 1) != nil {
			t.Errorf("egressNodeName %q, extra %q", r.EgressNodeName, extra(r, lab, 1))
		}
	})
	t.Run("value of the wrong shape is kept and counted", func(t *testing.T) {
		s, reg := newShims(t, shim("s", iecompat.Action{Op: "rename", IE: "32473/1", To: "destinationClusterIPv4"}))
		b := flow.NewBatch(0)
		r := rec(b, ie(lab, 1, 1, 2, 3)) // 3 bytes: no address
		process(t, s, b)
		if r.Has(flow.DestinationClusterIP) || len(extra(r, lab, 1)) != 3 {
			t.Errorf("clusterIP %v, extra %v", r.DestinationClusterIP, extra(r, lab, 1))
		}
		if n := counter(t, reg, "weir_enrich_iecompat_actions_skipped_total", map[string]string{"reason": "convert"}); n != 1 {
			t.Errorf("convert counted %v, want 1", n)
		}
	})
}

func TestWidth(t *testing.T) {
	tests := []struct {
		name     string
		action   iecompat.Action
		in, want []byte
		reason   string
	}{
		{"unsigned16 to signed32 zero-extends", iecompat.Action{Type: "signed32", FromType: "unsigned16"}, []byte{0xff, 0xfe}, []byte{0, 0, 0xff, 0xfe}, ""},
		{"signed16 to signed32 sign-extends", iecompat.Action{Type: "signed32"}, []byte{0xff, 0xfe}, []byte{0xff, 0xff, 0xff, 0xfe}, ""},
		{"unsigned32 to unsigned64", iecompat.Action{Type: "unsigned64"}, []byte{1, 2, 3, 4}, []byte{0, 0, 0, 0, 1, 2, 3, 4}, ""},
		{"same width untouched", iecompat.Action{Type: "signed32"}, []byte{0xff, 0xff, 0xff, 0xfe}, []byte{0xff, 0xff, 0xff, 0xfe}, ""},
		{"narrowing that fits", iecompat.Action{Type: "unsigned16"}, []byte{0, 0, 0, 0, 0, 0, 1, 2}, []byte{1, 2}, ""},
		{"narrowing that overflows", iecompat.Action{Type: "unsigned16"}, []byte{0, 1, 0, 0}, []byte{0, 1, 0, 0}, "overflow"},
		{"negative to unsigned overflows", iecompat.Action{Type: "unsigned32", FromType: "signed16"}, []byte{0xff, 0xfe}, []byte{0xff, 0xfe}, "overflow"},
		{"too long to be an integer", iecompat.Action{Type: "unsigned64"}, bytes.Repeat([]byte{1}, 9), bytes.Repeat([]byte{1}, 9), "convert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.action
			a.Op, a.IE = "width", "56506/116"
			s, reg := newShims(t, shim("w", a))
			b := flow.NewBatch(0)
			r := rec(b, ie(antrea, prioIE, tt.in...))
			process(t, s, b)
			if got := extra(r, antrea, prioIE); !bytes.Equal(got, tt.want) {
				t.Errorf("got %x, want %x", got, tt.want)
			}
			if tt.reason != "" {
				if n := counter(t, reg, "weir_enrich_iecompat_actions_skipped_total", map[string]string{"reason": tt.reason}); n != 1 {
					t.Errorf("%s counted %v, want 1", tt.reason, n)
				}
			}
		})
	}
}

func TestDrop(t *testing.T) {
	s, _ := newShims(t, shim("d",
		iecompat.Action{Op: "drop", IE: "32473/2"},
		iecompat.Action{Op: "drop", IE: "sourcePodName"},
		iecompat.Action{Op: "drop", IE: "destinationIPv6Address"}, // the record's address is IPv4
	))
	b := flow.NewBatch(0)
	r := rec(b, ie(lab, 1, 1), ie(lab, 2, 2), ie(lab, 3, 3))
	r.SetString(flow.SourcePodName, "p")
	process(t, s, b)
	if got := []uint16{r.Extra[0].Element, r.Extra[1].Element}; len(r.Extra) != 2 || !slices.Equal(got, []uint16{1, 3}) {
		t.Errorf("Extra %+v", r.Extra)
	}
	if r.Has(flow.SourcePodName) {
		t.Error("sourcePodName not dropped")
	}
	if !r.DestinationAddress.IsValid() {
		t.Error("IPv4 destination dropped by an IPv6 drop")
	}
}

func TestDerive(t *testing.T) {
	t.Run("copy typed address to verbatim and back", func(t *testing.T) {
		s, _ := newShims(t, shim("d",
			iecompat.Action{Op: "derive", IE: "destinationServiceIPv4", From: []string{"destinationClusterIPv4"}},
			iecompat.Action{Op: "derive", IE: "destinationClusterIPv4", From: []string{"destinationServiceIPv4"}},
		))
		b := flow.NewBatch(0)
		old := rec(b)
		old.SetAddr(flow.DestinationClusterIP, netip.MustParseAddr("10.96.0.10"))
		nu := rec(b, ie(antrea, svcIPv4, 10, 96, 0, 11))
		process(t, s, b)
		if got := extra(old, antrea, svcIPv4); !bytes.Equal(got, []byte{10, 96, 0, 10}) {
			t.Errorf("old exporter: destinationServiceIPv4 %v", got)
		}
		if nu.DestinationClusterIP != netip.MustParseAddr("10.96.0.11") {
			t.Errorf("new exporter: destinationClusterIPv4 %v", nu.DestinationClusterIP)
		}
	})
	t.Run("sum min max", func(t *testing.T) {
		s, _ := newShims(t, shim("d",
			iecompat.Action{Op: "derive", IE: "octetTotalCount", Func: "sum", From: []string{"octetDeltaCount", "reverseOctetDeltaCount", "32473/1"}},
			iecompat.Action{Op: "derive", IE: "32473/2", Type: "unsigned16", Func: "max", From: []string{"sourceTransportPort", "destinationTransportPort"}},
			iecompat.Action{Op: "derive", IE: "32473/3", Type: "unsigned16", Func: "min", From: []string{"sourceTransportPort", "destinationTransportPort"}},
		))
		b := flow.NewBatch(0)
		r := rec(b, ie(lab, 1, 0, 7))
		r.SetUint(flow.ReverseOctetDeltaCount, 1000)
		process(t, s, b)
		if r.OctetTotalCount != 300+1000+7 {
			t.Errorf("octetTotalCount %d", r.OctetTotalCount)
		}
		if !bytes.Equal(extra(r, lab, 2), []byte{0x9c, 0x40}) || !bytes.Equal(extra(r, lab, 3), []byte{0x01, 0xbb}) {
			t.Errorf("max %x min %x", extra(r, lab, 2), extra(r, lab, 3))
		}
	})
	t.Run("target already set wins unless overwrite", func(t *testing.T) {
		for _, overwrite := range []bool{false, true} {
			s, _ := newShims(t, shim("d", iecompat.Action{Op: "derive", IE: "egressNodeName", From: []string{"sourceNodeName"}, Overwrite: overwrite}))
			b := flow.NewBatch(0)
			r := rec(b)
			r.SetString(flow.SourceNodeName, "src")
			r.SetString(flow.EgressNodeName, "egress")
			process(t, s, b)
			want := "egress"
			if overwrite {
				want = "src"
			}
			if r.EgressNodeName != want {
				t.Errorf("overwrite %v: %q", overwrite, r.EgressNodeName)
			}
		}
	})
	t.Run("no source leaves target unset", func(t *testing.T) {
		s, _ := newShims(t, shim("d", iecompat.Action{Op: "derive", IE: "egressNodeName", From: []string{"sourceNodeName", "32473/1"}}))
		b := flow.NewBatch(0)
		r := rec(b, ie(lab, 1)) // empty value counts as absent
		process(t, s, b)
		if r.Has(flow.EgressNodeName) {
			t.Errorf("egressNodeName %q", r.EgressNodeName)
		}
	})
}

func TestDefault(t *testing.T) {
	s, _ := newShims(t, shim("def",
		iecompat.Action{Op: "default", IE: "egressNodeName", Value: "unknown"},
		iecompat.Action{Op: "default", IE: "flowType", Value: 2},
		iecompat.Action{Op: "default", IE: "clusterId", Value: "cluster-a"},
		iecompat.Action{Op: "default", IE: "32473/7", Type: "signed16", Value: -3},
		iecompat.Action{Op: "default", IE: "flowStartMilliseconds", Value: "2024-01-02T03:04:05Z"},
	))
	b := flow.NewBatch(0)
	bare := rec(b)
	full := rec(b, str(antrea, 158, "mine"), ie(lab, 7, 0, 1))
	full.SetString(flow.EgressNodeName, "node")
	full.SetUint(flow.FlowType, 1)
	full.SetUint(flow.FlowStart, 5)
	process(t, s, b)
	if bare.EgressNodeName != "unknown" || bare.FlowType != 2 || string(extra(bare, antrea, 158)) != "cluster-a" ||
		!bytes.Equal(extra(bare, lab, 7), []byte{0xff, 0xfd}) || bare.FlowStart != 1704164645000000000 {
		t.Errorf("defaults not set: %+v", bare)
	}
	if !bare.Extra[0].Variable {
		t.Error("clusterId (string) not marked variable-length")
	}
	if full.EgressNodeName != "node" || full.FlowType != 1 || string(extra(full, antrea, 158)) != "mine" ||
		!bytes.Equal(extra(full, lab, 7), []byte{0, 1}) || full.FlowStart != 5 {
		t.Errorf("defaults overwrote values: %+v", full)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name  string
		match iecompat.Match
		want  []bool // per record: exporter 192.0.2.7 domain 1 with egressName; 10.1.2.3 domain 2; [::ffff:192.0.2.9] domain 1
	}{
		{"any", iecompat.Match{}, []bool{true, true, true}},
		{"cidr", iecompat.Match{Exporters: []string{"192.0.2.0/24"}}, []bool{true, false, true}},
		{"address", iecompat.Match{Exporters: []string{"10.1.2.3", "fd00::1"}}, []bool{false, true, false}},
		{"mapped address", iecompat.Match{Exporters: []string{"::ffff:192.0.2.9"}}, []bool{false, false, true}},
		{"domain", iecompat.Match{ObservationDomains: []uint32{2, 3}}, []bool{false, true, false}},
		{"has", iecompat.Match{Has: []string{"egressName"}}, []bool{true, false, false}},
		{"lacks", iecompat.Match{Lacks: []string{"egressName"}}, []bool{false, true, true}},
		{"all conditions", iecompat.Match{Exporters: []string{"192.0.2.0/24"}, ObservationDomains: []uint32{1}, Lacks: []string{"egressName"}}, []bool{false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reg := newShims(t, iecompat.Shim{Name: "m", Match: tt.match, Actions: []iecompat.Action{{Op: "default", IE: "egressNodeName", Value: "hit"}}})
			b := flow.NewBatch(0)
			rec(b, str(antrea, egrName, "egress-a"))
			r := rec(b, str(antrea, egrName, ""))
			r.Exporter, r.ObservationDomainID = netip.MustParseAddrPort("10.1.2.3:4739"), 2
			r = rec(b)
			r.Exporter = netip.MustParseAddrPort("[::ffff:192.0.2.9]:4739")
			process(t, s, b)
			hits := 0
			for i, r := range b.Records {
				if got := r.EgressNodeName == "hit"; got != tt.want[i] {
					t.Errorf("record %d: matched %v, want %v", i, got, tt.want[i])
				}
				if r.EgressNodeName == "hit" {
					hits++
				}
			}
			if n := counter(t, reg, "weir_enrich_iecompat_records_matched_total", map[string]string{"shim": "m"}); int(n) != hits {
				t.Errorf("matched counter %v, want %d", n, hits)
			}
		})
	}
}

func TestShimFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return name
	}
	tests := []struct {
		name, body string
	}{
		{"unknown_key.yaml", "shims:\n  - name: a\n    actons: []\n"},
		{"bad_ie.yaml", "shims:\n  - name: a\n    actions: [{op: drop, ie: egresNodeName}]\n"},
		{"not_yaml.yaml", "shims: [\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &iecompat.Config{Files: []string{write(tt.name, tt.body)}}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate is pure and must not read files: %v", err)
			}
			err := cfg.Check(context.Background(), dir)
			if err == nil {
				t.Fatal("Check: want an error")
			}
			set := plugin.NopSettings(iecompat.ID)
			set.BaseDir = dir
			if _, err := iecompat.New(cfg, set); err == nil {
				t.Fatal("New: want an error")
			}
		})
	}
	cfg := &iecompat.Config{Files: []string{"missing.yaml"}}
	err := cfg.Check(context.Background(), dir)
	if err == nil || !errorsIs(err, iecompat.ErrShimFile) || !errorsIs(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		s, _ := newShims(t, shim("s", iecompat.Action{Op: "drop", IE: "32473/1"}))
		return s
	})
}

func TestRegistered(t *testing.T) {
	info, ok := plugin.Lookup(iecompat.ID)
	if !ok {
		t.Fatal("not registered")
	}
	c, err := info.New(info.NewConfig(), plugin.NopSettings(iecompat.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(plugin.Processor); !ok {
		t.Fatalf("%T is not a processor", c)
	}
}

// TestConcurrentProcess runs the shipped shims from several goroutines (run
// with -race): the plugin keeps no per-call state outside Process.
func TestConcurrentProcess(t *testing.T) {
	s := shippedShims(t)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 50; i++ {
				b := antreaBatch(64)
				if err := s.Process(context.Background(), b); err != nil {
					t.Error(err)
					return
				}
				for _, r := range b.Records {
					if r.EgressNodeName != "unknown" || len(extra(r, antrea, prioIE)) != 4 {
						t.Errorf("record not shimmed: %q % x", r.EgressNodeName, extra(r, antrea, prioIE))
						return
					}
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

// TestProcessDoesNotAllocate: fixing records (a rename onto a typed string
// field, a width change, a default) allocates nothing once the interner has
// seen the strings.
func TestProcessDoesNotAllocate(t *testing.T) {
	s, _ := newShims(t, threeShims()...)
	src := antreaBatch(flow.DefaultBatchSize)
	work := flow.NewBatch(src.Len())
	fill := func() {
		work.Reset()
		for _, r := range src.Records {
			work.Append().CopyFrom(r, work)
		}
	}
	fill()
	process(t, s, work)
	if r := work.Records[0]; r.EgressNodeName != "node-a" || len(extra(r, antrea, prioIE)) != 4 {
		t.Fatalf("shims not applied: %+v", r)
	}
	allocs := testing.AllocsPerRun(20, func() {
		fill()
		_ = s.Process(context.Background(), work)
	})
	if allocs != 0 {
		t.Errorf("%v allocs per batch, want 0", allocs)
	}
}
