package ipfix_test

import (
	"context"
	"net"
	"testing"

	"github.com/weir-flow/weir/core/plugin"
	exporter "github.com/weir-flow/weir/plugins/export/ipfix"
)

// BenchmarkExportUDP encodes and sends 256-record batches (Antrea strings,
// verbatim IEs) to a loopback socket nobody reads; ns/op is per batch.
func BenchmarkExportUDP(b *testing.B) {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	cfg := *exporter.DefaultConfig()
	cfg.Address = sink.LocalAddr().String()
	e, err := exporter.New(&cfg, plugin.NopSettings(exporter.ID))
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	bt := batch(1, 256)
	b.ReportAllocs()
	for b.Loop() {
		e.Export(context.Background(), bt)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/record")
}
