package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ChainOptions configure [NewChain].
type ChainOptions struct {
	// Name labels the chain in reports, e.g. the config file's path.
	// Default: the pipeline's name.
	Name string
	// BatchSize is the records per batch fed to the chain and given to the
	// plugins as Settings.BatchSize; 0 uses pipeline.batch.size.
	BatchSize int
	// WithIO adds the configured exporters after the processors; they get
	// every non-empty batch, as the engine fans out. Sources are never
	// built: the feeder replaces them.
	WithIO bool
	// Logger receives the plugins' logs. Default: discard.
	Logger *slog.Logger
}

// Chain is a configuration's processors (and exporters with WithIO), built
// and started, ready to be fed by [Chain.Run]. A chain is driven by one
// goroutine at a time.
type Chain struct {
	name      string
	batchSize int
	stages    []*stage

	closeOnce sync.Once
	closeErr  error
}

// stage is one plugin instance of a chain.
type stage struct {
	name   string // config position, e.g. "processors[0]"
	path   string // full config path, for errors
	plugin string // plugin ID
	kind   string // "processor" or "exporter"
	comp   plugin.Component
	proc   plugin.Processor
	exp    plugin.Exporter
}

func (s *stage) call(ctx context.Context, b *flow.Batch) error {
	if s.proc != nil {
		return s.proc.Process(ctx, b)
	}
	return s.exp.Export(ctx, b)
}

// NewChain builds every processor of cfg (and every exporter with
// opts.WithIO) through the plugin registry, as the engine does, and starts
// them: exporters first, then processors. cfg must have passed
// config.Parse, and its Check where WASM or RPC plugins are used. On error
// what was built is shut down.
func NewChain(ctx context.Context, cfg *config.Config, opts ChainOptions) (*Chain, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	size := opts.BatchSize
	if size <= 0 {
		size = cfg.Pipeline.Batch.Size
	}
	if size <= 0 {
		size = flow.DefaultBatchSize
	}
	c := &Chain{name: opts.Name, batchSize: size}
	if c.name == "" {
		c.name = cfg.Pipeline.Name
	}
	pipeName := cfg.Pipeline.Name
	reg := prometheus.NewRegistry() // private: plugins register their metrics once per chain
	build := func(s config.Stage, kind, name string) error {
		set := plugin.Settings{
			ID:        s.ID,
			Name:      name + "." + s.ID,
			Logger:    opts.Logger.With("pipeline", pipeName, "stage", name, "plugin", s.ID),
			Metrics:   prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": pipeName, "stage": name}, reg),
			BatchSize: size,
			BaseDir:   cfg.BaseDir,
		}
		comp, err := s.Info.New(s.Config, set)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Path, err)
		}
		st := &stage{name: name, path: s.Path, plugin: s.ID, kind: kind, comp: comp}
		switch kind {
		case "processor":
			p, ok := comp.(plugin.Processor)
			if !ok {
				_ = comp.Shutdown(ctx)
				return fmt.Errorf("%s: plugin does not implement plugin.Processor", s.Path)
			}
			st.proc = p
			if em, ok := comp.(plugin.Emitting); ok {
				// What it emits later (an aggregator's timeouts and final
				// flush) leaves the chain uncounted: the benchmark times
				// Process.
				em.SetEmitter(discard{size: size})
			}
		default:
			e, ok := comp.(plugin.Exporter)
			if !ok {
				_ = comp.Shutdown(ctx)
				return fmt.Errorf("%s: plugin does not implement plugin.Exporter", s.Path)
			}
			st.exp = e
		}
		c.stages = append(c.stages, st)
		return nil
	}
	var errs []error
	for i, s := range cfg.Pipeline.Processors {
		errs = append(errs, build(s, "processor", fmt.Sprintf("processors[%d]", i)))
	}
	if opts.WithIO {
		for i, s := range cfg.Pipeline.Exporters {
			errs = append(errs, build(s, "exporter", fmt.Sprintf("exporters[%d]", i)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = c.Close(ctx)
		return nil, err
	}
	// Start exporters first, as the engine does, so no stage feeds a
	// stopped one.
	for _, kind := range []string{"exporter", "processor"} {
		for _, st := range c.stages {
			if st.kind != kind {
				continue
			}
			var err error
			if st.proc != nil {
				err = st.proc.Start(ctx)
			} else {
				err = st.exp.Start(ctx)
			}
			if err != nil {
				_ = c.Close(ctx)
				return nil, fmt.Errorf("start %s: %w", st.path, err)
			}
		}
	}
	return c, nil
}

// Name returns the chain's label.
func (c *Chain) Name() string { return c.name }

// BatchSize returns the records per batch the chain is fed.
func (c *Chain) BatchSize() int { return c.batchSize }

// Close shuts every stage down, processors first, then exporters (which
// flush). It is idempotent.
func (c *Chain) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, kind := range []string{"processor", "exporter"} {
			for _, st := range c.stages {
				if st.kind == kind {
					if err := st.comp.Shutdown(ctx); err != nil {
						errs = append(errs, fmt.Errorf("shutdown %s: %w", st.path, err))
					}
				}
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// discard is the plugin.Emitter of a plugin.Emitting processor in a chain.
type discard struct{ size int }

func (d discard) NewBatch() *flow.Batch                   { return flow.NewBatch(d.size) }
func (d discard) Emit(context.Context, *flow.Batch) error { return nil }
func (d discard) BatchSize() int                          { return d.size }
func (d discard) BatchTimeout() time.Duration             { return time.Second }
