package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/core/wasmhost/wasmhosttest"
)

// guests are the modules the tests use, built once by TestMain.
var guests = map[string]string{
	"protocolfilter": "./examples/wasm/protocolfilter",
	"subnettag":      "./examples/wasm/subnettag",
	"misbehave":      "./examples/wasm/misbehave",
	"badversion":     "./core/wasmhost/testdata/guests/badversion",
	"noexports":      "./core/wasmhost/testdata/guests/noexports",
	"sdkpanic":       "./core/wasmhost/testdata/guests/sdkpanic",
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weir-wasmhost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for name, pkg := range guests {
		p, err := wasmhosttest.Build(dir, pkg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		guests[name] = p
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newProcessor starts a processor on module name with the given config.
func newProcessor(t testing.TB, name string, config any, edit ...func(*Config)) (*Processor, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Path = guests[name]
	cfg.Config = config
	cfg.CacheDir = wasmhosttest.CacheDir()
	cfg.Instances = 2
	for _, e := range edit {
		e(cfg)
	}
	set := plugin.NopSettings(ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	p, err := New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, reg
}

func protocols(b *flow.Batch) []uint8 {
	var out []uint8
	for _, r := range b.Records {
		out = append(out, r.ProtocolIdentifier)
	}
	return out
}

func TestProtocolFilter(t *testing.T) {
	p, _ := newProcessor(t, "protocolfilter", map[string]any{"protocols": []any{"tcp", 1}})
	if m := p.Manifest(); m.Kind != abi.KindFilter || m.Reads != abi.MaskOf(0, flow.ProtocolIdentifier, flow.SourceTransportPort, flow.DestinationTransportPort) {
		t.Fatalf("manifest %+v", m)
	}
	b := plugintest.MixedBatch(8) // tcp udp icmp icmpv6 …
	if err := p.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(protocols(b)); got != "[6 1 6 1]" {
		t.Fatalf("kept protocols %s, want [6 1 6 1]", got)
	}
}

func TestRejectedConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Path = guests["protocolfilter"]
	cfg.CacheDir = wasmhosttest.CacheDir()
	cfg.Config = map[string]any{"protocols": []any{map[string]any{"x": 1}}}
	err := Check(context.Background(), cfg, "")
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Check: %v, want ErrRejected", err)
	}
	t.Log(err)
}

func TestMisbehaveSmoke(t *testing.T) {
	for _, mode := range []string{"loop", "trap", "panic", "oom", "garbage"} {
		t.Run(mode, func(t *testing.T) {
			p, reg := newProcessor(t, "misbehave", map[string]any{"mode": mode, "every": 2}, func(c *Config) {
				c.Timeout = 200 * time.Millisecond
				if mode == "oom" {
					c.Timeout = 5 * time.Second
				}
				c.MemoryLimit = "128MiB"
			})
			for i := range 6 {
				b := plugintest.MixedBatch(10)
				if err := p.Process(context.Background(), b); err != nil {
					t.Fatal(err)
				}
				if b.Len() != 10 {
					t.Fatalf("batch %d: %d records out of 10 (fail-open)", i, b.Len())
				}
			}
			errs, _ := reg.Gather()
			_ = errs
			for _, r := range reasons {
				if n := value(p.metrics.errors.WithLabelValues(r).(prometheus.Metric)); n > 0 {
					t.Logf("%s: %v", r, n)
				}
			}
			t.Logf("restarts %v", value(p.metrics.restarts))
		})
	}
}

var _ = filepath.Join

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
