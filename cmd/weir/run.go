package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/weir-flow/weir/configs"
	"github.com/weir-flow/weir/core/admin"
	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/version"
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

// logSettings applies the --log-level/--log-format flags over the config.
func (g *globals) logSettings(cfg config.Log) (config.Log, error) {
	if g.logLevel != "" {
		cfg.Level = g.logLevel
	}
	if g.logFormat != "" {
		cfg.Format = g.logFormat
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(cfg.Level))); err != nil {
		return cfg, fmt.Errorf("--log-level: %q is not debug, info, warn or error", cfg.Level)
	}
	if cfg.Format != "text" && cfg.Format != "json" {
		return cfg, fmt.Errorf("--log-format: %q is not text or json", cfg.Format)
	}
	return cfg, nil
}

// newLogger returns a logger to stderr whose level follows lv.
func newLogger(cfg config.Log, lv *slog.LevelVar) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.Level)))
	lv.Set(level)
	opts := &slog.HandlerOptions{Level: lv}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func newRunCmd(g *globals) *cobra.Command {
	var (
		path            string
		shutdownTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run [-c] [FILE]",
		Short: "Run a pipeline (the embedded default without a file)",
		Long: `Run a pipeline until SIGINT/SIGTERM, or until every source is finite and done.
Records go to the configured exporters (the default prints JSON lines on stdout); logs go to stderr.
On shutdown every queue and exporter is flushed before weir exits 0; a second
SIGINT/SIGTERM exits at once (status 130). A config file is read up to 16 MiB.

SIGHUP, 'weir reload', and with reload.watch a change of the file, reload the config: an invalid one is
refused (its errors logged, the running pipeline untouched); a valid one is swapped in between batches,
keeping every stage whose config did not change running with its state.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := configArg(path, args)
			if err != nil {
				return err
			}
			// The watch baseline is the content read now, so a change
			// made while the pipeline starts is still seen.
			sum := fileSum(p)
			cfg, err := loadConfig(p)
			if err != nil {
				return err
			}
			r := &runner{g: g, path: p, shutdownTimeout: shutdownTimeout, lastSum: sum}
			return r.run(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "pipeline config file (YAML); default: the embedded configs/default.yaml")
	cmd.Flags().DurationVar(&shutdownTimeout, "shutdown-timeout", 30*time.Second, "longest time to flush queues and exporters on shutdown")
	return cmd
}

// runner is one `weir run`.
type runner struct {
	g               *globals
	path            string
	shutdownTimeout time.Duration
	level           slog.LevelVar
	log             *slog.Logger
	p               *pipeline.Pipeline
	progress        time.Duration
	// progressNext is log.progress_interval as set by the last reload
	// (reloads run on the admin server's goroutines too).
	progressNext atomic.Int64
	lastSum      string // content hash of the file as last loaded, for reload.watch
}

func (r *runner) run(ctx context.Context, cfg *config.Config) error {
	logCfg, err := r.g.logSettings(cfg.Log)
	if err != nil {
		return err
	}
	log := newLogger(logCfg, &r.level)
	r.log = log
	if err := cfg.Runnable(); err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	info := version.Get()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.Collector(info))
	var srv *admin.Server
	if addr := cfg.Telemetry.MetricsAddress; addr != "" {
		// Up before the pipeline is built, so probes see "starting".
		srv, err = admin.Listen(admin.Options{Address: addr, Pprof: cfg.Telemetry.Pprof, Gatherer: reg,
			Logger: log, Version: info.String()})
		if err != nil {
			return err
		}
		go srv.Serve()
		defer srv.Close()
		log.Info("serving metrics", "address", "http://"+srv.Addr().String()+"/metrics",
			"pprof", cfg.Telemetry.Pprof)
	}
	log.Info("starting", "version", info.Version, "revision", info.Revision, "go", info.GoVersion)
	// No cfg.Check here: building the pipeline loads WASM modules and starts
	// RPC plugins, and reports the same errors.
	p, err := pipeline.New(ctx, cfg, pipeline.Options{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	r.p = p
	if err := p.Start(ctx); err != nil {
		return err
	}
	if srv != nil {
		srv.SetPipeline(&admin.Status{Name: cfg.Pipeline.Name, Stats: p.Stats, Ready: p.Ready})
		srv.SetReload(func(ctx context.Context) (string, error) {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.shutdownTimeout)
			defer cancel()
			return r.reload(ctx, "weir reload")
		})
	}
	log.Info("pipeline running", "pipeline", cfg.Pipeline.Name,
		"sources", len(cfg.Pipeline.Sources), "processors", len(cfg.Pipeline.Processors), "exporters", len(cfg.Pipeline.Exporters))

	r.progress = cfg.Log.ProgressInterval
	r.progressNext.Store(int64(r.progress))
	progress := newTicker(r.progress)
	defer func() { progress.Stop() }()
	var watch *time.Ticker
	var watchC <-chan time.Time
	if cfg.Reload.Watch && r.path != "" {
		watch = time.NewTicker(time.Second)
		defer watch.Stop()
		watchC = watch.C
		log.Info("watching the config file for changes", "path", r.path)
	}
	last := map[string]pipeline.Snapshot{}
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down: signal received")
			break loop
		case <-p.Done():
			log.Info("shutting down: all sources done")
			break loop
		case <-r.g.hup:
			rctx, cancel := context.WithTimeout(ctx, r.shutdownTimeout)
			_, _ = r.reload(rctx, "SIGHUP")
			cancel()
		case <-watchC:
			sum := fileSum(r.path)
			if sum == r.lastSum || sum == "" {
				continue
			}
			r.lastSum = sum
			rctx, cancel := context.WithTimeout(ctx, r.shutdownTimeout)
			_, _ = r.reload(rctx, "config file changed")
			cancel()
		case <-progress.C:
			r.logProgress(last)
		}
		if d := r.progressInterval(); d != r.progress {
			r.progress = d
			progress.Stop()
			progress = newTicker(d)
		}
	}
	if srv != nil {
		srv.SetNotReady("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), r.shutdownTimeout)
	defer cancel()
	err = p.Shutdown(sctx)
	for _, s := range p.Stats() {
		log.Info("stage summary", "stage", s.Stage, "plugin", s.Plugin,
			"in", s.In, "out", s.Out, "filtered", s.Filtered, "errored", s.Errored, "queue_full", s.Overflow, "dropped", s.Dropped)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown did not finish within %v: %w", r.shutdownTimeout, err)
		}
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// ticker is a time.Ticker that never fires for a zero interval.
type ticker struct {
	*time.Ticker
	C <-chan time.Time
}

func newTicker(d time.Duration) ticker {
	if d <= 0 {
		return ticker{}
	}
	t := time.NewTicker(d)
	return ticker{Ticker: t, C: t.C}
}

func (t ticker) Stop() {
	if t.Ticker != nil {
		t.Ticker.Stop()
	}
}

// progressInterval is log.progress_interval as of the last reload.
func (r *runner) progressInterval() time.Duration { return time.Duration(r.progressNext.Load()) }

// logProgress logs one info line: records in and out of every stage since
// the last line, and in total.
func (r *runner) logProgress(last map[string]pipeline.Snapshot) {
	var attrs []any
	for _, s := range r.p.Stats() {
		prev := last[s.Kind+"/"+s.Stage]
		attrs = append(attrs, slog.Group(s.Stage, "in", s.In-min(prev.In, s.In), "out", s.Out-min(prev.Out, s.Out)))
		last[s.Kind+"/"+s.Stage] = s
	}
	r.log.Info("progress", append([]any{"interval", r.progress}, attrs...)...)
}

// reload loads, checks and applies the config file again. An invalid config
// is refused and logged; the running pipeline is then untouched.
func (r *runner) reload(ctx context.Context, trigger string) (string, error) {
	log := r.log
	log.Info("reloading", "trigger", trigger, "path", r.path)
	cfg, err := loadConfig(r.path)
	if err == nil {
		err = cfg.CheckRun(ctx)
	}
	var logCfg config.Log
	if err == nil {
		logCfg, err = r.g.logSettings(cfg.Log)
	}
	if err != nil {
		log.Error("reload refused: the running pipeline is unchanged", "trigger", trigger, "err", err)
		return "", fmt.Errorf("reload refused, the running pipeline is unchanged: %w", err)
	}
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	res, err := r.p.Reload(ctx, cfg)
	if err != nil {
		log.Error("reload failed", "trigger", trigger, "err", err)
		return "", err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(logCfg.Level)))
	r.level.Set(level)
	r.progressNext.Store(int64(cfg.Log.ProgressInterval))
	if len(res.RestartOnly) > 0 {
		log.Warn("reload: these settings changed but take effect only at restart", "keys", strings.Join(res.RestartOnly, ", "))
	}
	summary := fmt.Sprintf("reloaded: kept %d, replaced %d, added %d, removed %d stages",
		len(res.Kept), len(res.Replaced), len(res.Added), len(res.Removed))
	log.Info("reloaded", "trigger", trigger, "kept", res.Kept, "replaced", res.Replaced,
		"added", res.Added, "removed", res.Removed)
	return summary, nil
}

// fileSum is the SHA-256 of the file's content, "" when it cannot be read.
func fileSum(path string) string {
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}
