package proxy

import (
	"context"
	"net/netip"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

func TestProcess(t *testing.T) {
	tests := []struct {
		name      string
		exporter  string
		prior     string // originalExporterAddress already on the record
		overwrite bool
		want      string
	}{
		{name: "ipv4 exporter", exporter: "192.0.2.7:4739", want: "192.0.2.7"},
		{name: "ipv6 exporter", exporter: "[2001:db8::7]:4739", want: "2001:db8::7"},
		{name: "v4-mapped exporter is unmapped", exporter: "[::ffff:192.0.2.9]:4739", want: "192.0.2.9"},
		{name: "upstream proxy wins", exporter: "192.0.2.7:4739", prior: "198.51.100.1", want: "198.51.100.1"},
		{name: "overwrite", exporter: "192.0.2.7:4739", prior: "198.51.100.1", overwrite: true, want: "192.0.2.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := flow.NewBatch(1)
			r := plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, 1, 2, 3, 4)
			r.Exporter = netip.MustParseAddrPort(tt.exporter)
			r.ObservationDomainID = 42
			if tt.prior != "" {
				r.SetAddr(flow.OriginalExporterAddress, netip.MustParseAddr(tt.prior))
				r.SetUint(flow.OriginalObservationDomainID, 7)
			}
			if err := newProxy(t, &Config{Overwrite: tt.overwrite}).Process(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			if got := r.OriginalExporterAddress.String(); got != tt.want {
				t.Errorf("originalExporterAddress = %s, want %s", got, tt.want)
			}
			wantDomain := uint32(42)
			if tt.prior != "" && !tt.overwrite {
				wantDomain = 7
			}
			if r.OriginalObservationDomainID != wantDomain || !r.Has(flow.OriginalObservationDomainID) {
				t.Errorf("originalObservationDomainId = %d (present %v), want %d", r.OriginalObservationDomainID, r.Has(flow.OriginalObservationDomainID), wantDomain)
			}
			if b.Len() != 1 {
				t.Errorf("proxy dropped records: %d left", b.Len())
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component { return newProxy(t, DefaultConfig()) })
}

func BenchmarkProcess(b *testing.B) {
	batch := plugintest.MixedBatch(256)
	p := newProxy(b, DefaultConfig())
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = p.Process(ctx, batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/record")
}

func newProxy(t testing.TB, cfg *Config) *Proxy {
	t.Helper()
	p, err := New(cfg, plugin.NopSettings(ID))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
