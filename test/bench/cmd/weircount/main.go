// Command weircount runs a weir pipeline like `weir run -c FILE`, with one
// more exporter available: export.count, a counting sink that does nothing
// but count records. The ingest bench (test/bench/ingest.sh) uses it to
// measure weir's receive path with the cheapest possible output.
//
// The count is served as weir_export_count_records_total on the config's
// telemetry.metrics_address and printed on exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/plugin"
	_ "github.com/weir-flow/weir/plugins/all"
)

// countConfig has no settings.
type countConfig struct{}

func (*countConfig) Validate() error { return nil }

// counter is the export.count sink.
type counter struct{ n *atomic.Uint64 }

func (c counter) Start(context.Context) error    { return nil }
func (c counter) Shutdown(context.Context) error { return nil }
func (c counter) Export(_ context.Context, b *flow.Batch) error {
	c.n.Add(uint64(b.Len()))
	return nil
}

var total atomic.Uint64

func init() {
	plugin.Register(plugin.Info{
		ID:        "export.count",
		Summary:   "counts records and drops them (bench only)",
		NewConfig: func() plugin.Config { return &countConfig{} },
		New: func(_ plugin.Config, set plugin.Settings) (plugin.Component, error) {
			err := set.Metrics.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "weir_export_count_records_total", Help: "Records counted.",
			}, func() float64 { return float64(total.Load()) }))
			return counter{&total}, err
		},
	})
}

func main() {
	path := flag.String("c", "", "pipeline config (YAML)")
	flag.Parse()
	if err := run(*path); err != nil {
		fmt.Fprintln(os.Stderr, "weircount:", err)
		os.Exit(1)
	}
	fmt.Println(total.Load())
}

func run(path string) error {
	cfg, err := config.LoadFile(path)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	p, err := pipeline.New(ctx, cfg, pipeline.Options{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	if addr := cfg.Telemetry.MetricsAddress; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-p.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.Shutdown(sctx)
}
