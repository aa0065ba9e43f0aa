package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/weir-flow/weir/configs"
	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/pipeline"
)

// loadConfig reads -c FILE, or the embedded default when path is empty.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		cfg, err := config.Parse(configs.Default, os.Environ())
		if err != nil {
			return nil, fmt.Errorf("embedded default config: %w", err)
		}
		return cfg, nil
	}
	return config.LoadFile(path)
}

func newLogger(cfg config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func newRunCmd() *cobra.Command {
	var (
		path            string
		shutdownTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a pipeline (the embedded default without -c)",
		Long: `Run a pipeline until SIGINT/SIGTERM, or until every source is finite and done.
Records go to the configured exporters (the default prints JSON lines on stdout); logs go to stderr.
On shutdown every queue and exporter is flushed before weir exits 0; a second
SIGINT/SIGTERM exits at once (status 130). A config file is read up to 16 MiB.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg, shutdownTimeout)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "pipeline config file (YAML); default: the embedded configs/default.yaml")
	cmd.Flags().DurationVar(&shutdownTimeout, "shutdown-timeout", 30*time.Second, "longest time to flush queues and exporters on shutdown")
	return cmd
}

func run(ctx context.Context, cfg *config.Config, shutdownTimeout time.Duration) error {
	log := newLogger(cfg.Log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// No cfg.Check here: building the pipeline loads WASM modules and starts
	// RPC plugins, and reports the same errors.
	p, err := pipeline.New(ctx, cfg, pipeline.Options{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	if addr := cfg.Telemetry.MetricsAddress; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			_ = p.Shutdown(ctx)
			return fmt.Errorf("telemetry.metrics_address: %w", err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("serving metrics", "address", "http://"+ln.Addr().String()+"/metrics")
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	log.Info("pipeline running", "pipeline", cfg.Pipeline.Name,
		"sources", len(cfg.Pipeline.Sources), "processors", len(cfg.Pipeline.Processors), "exporters", len(cfg.Pipeline.Exporters))
	select {
	case <-ctx.Done():
		log.Info("shutting down: signal received")
	case <-p.Done():
		log.Info("shutting down: all sources done")
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = p.Shutdown(sctx)
	for _, s := range p.Stats() {
		log.Info("stage summary", "stage", s.Stage, "plugin", s.Plugin,
			"in", s.In, "out", s.Out, "filtered", s.Filtered, "errored", s.Errored, "queue_full", s.Overflow)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown did not finish within %v: %w", shutdownTimeout, err)
		}
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
