package main

import (
	"errors"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/sdk/wasm/wasmtest"
)

func TestSubnetTag(t *testing.T) {
	h, err := wasmtest.New(map[string]any{
		"subnets": map[string]string{"10.0.0.0/8": "ten", "10.0.0.2/32": "server", "fd00::/8": "ula"},
		"ie":      map[string]any{"enterprise": 99999, "element": 7},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := flow.NewBatch(3)
	plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, 1, 80, 1, 1)
	plugintest.Record(b, "fd00::1", "192.0.2.1", 17, 1, 53, 1, 1).SetString(flow.SourcePodLabels, `{"app":"web"}`)
	plugintest.Record(b, "192.0.2.1", "198.51.100.1", 1, 0, 0, 1, 1)
	if removed, err := h.Process(b); err != nil || removed != 0 {
		t.Fatalf("Process: removed %d, %v", removed, err)
	}
	want := []struct{ src, dst, ie string }{
		{`{"subnet":"ten"}`, `{"subnet":"server"}`, "ten"},
		{`{"app":"web","subnet":"ula"}`, "", "ula"},
		{"", "", ""},
	}
	for i, w := range want {
		r := b.Records[i]
		var ie string
		if f := r.FindExtra(flow.IEKey{Enterprise: 99999, Element: 7}); f != nil {
			ie = string(f.Value)
		}
		if r.SourcePodLabels != w.src || r.DestinationPodLabels != w.dst || ie != w.ie {
			t.Errorf("record %d: labels %q / %q, ie %q; want %q / %q, %q", i, r.SourcePodLabels, r.DestinationPodLabels, ie, w.src, w.dst, w.ie)
		}
	}
}

func TestSubnetTagRejects(t *testing.T) {
	for name, cfg := range map[string]any{
		"no subnets": map[string]any{},
		"bad cidr":   map[string]any{"subnets": map[string]string{"10.0.0.0/33": "x"}},
		"unknown":    map[string]any{"subnets": map[string]string{"10.0.0.0/8": "x"}, "colour": "red"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := wasmtest.New(cfg); !errors.Is(err, wasmtest.ErrRejected) {
				t.Fatalf("err = %v, want ErrRejected", err)
			}
		})
	}
}

// BenchmarkSubnetTag runs the enricher natively through the host
// emulator: the SDK's per-record path, without WebAssembly.
func BenchmarkSubnetTag(b *testing.B) {
	h, err := wasmtest.New(map[string]any{"subnets": map[string]string{"10.0.0.0/8": "ten", "fd00::/8": "ula"}})
	if err != nil {
		b.Fatal(err)
	}
	const n = 256
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		batch := plugintest.MixedBatch(n)
		b.StartTimer()
		if _, err := h.Process(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
