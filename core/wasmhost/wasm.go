package wasmhost

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "wasm"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "run a sandboxed WASM filter or enricher (ABI v1, one call per batch)",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// initTimeout bounds instantiation and init, which run the Go runtime's
// start-up and the module's config parsing.
const initTimeout = 30 * time.Second

// Processor runs batches through a WASM module. Process is safe for
// concurrent use: each call takes an instance from a pool of up to
// Config.Instances, created on demand.
type Processor struct {
	cfg     Config
	set     plugin.Settings
	log     *slog.Logger
	path    string
	config  []byte
	ic      instanceConfig
	metrics *metrics

	mu       sync.Mutex
	mod      *module
	manifest abi.Manifest
	live     int // instances created and not discarded
	max      int
	closed   bool
	idle     chan *instance
	hot      atomic.Pointer[instance] // an idle instance, taken before idle's
	waiting  atomic.Int32             // callers blocked on idle
	closing  chan struct{}
	inflight sync.WaitGroup
}

// New builds the processor; the module is compiled and initialised by
// Start. cfg must pass Validate.
func New(cfg *Config, set plugin.Settings) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	config, err := cfg.configJSON()
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", ID, err)
	}
	p := &Processor{
		cfg:     *cfg,
		set:     set,
		log:     set.Logger.With("module", cfg.Path),
		path:    set.Path(cfg.Path),
		config:  config,
		max:     cfg.instances(),
		closing: make(chan struct{}),
	}
	p.ic = instanceConfig{log: p.log, allowEnv: cfg.Allow.Env, buffer: bufferFor(set.BatchSize)}
	for _, d := range cfg.Allow.FS {
		p.ic.allowFS = append(p.ic.allowFS, absolute(set.Path(d)))
	}
	p.idle = make(chan *instance, p.max)
	p.metrics, err = newMetrics(set.Metrics)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	return p, nil
}

// absolute makes p absolute, for mounting.
func absolute(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// bufferFor sizes a first input buffer for batches of n records.
func bufferFor(n int) int {
	if n <= 0 {
		n = flow.DefaultBatchSize
	}
	return abi.BatchHeaderSize + n*(abi.RecordSize+64)
}

// Start compiles the module (through the on-disk cache), creates the
// first instance and passes it the config. It fails, with the module's
// own message, if the module is not an ABI v1 plugin or rejects its
// config.
func (p *Processor) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.mod != nil {
		return nil
	}
	t0 := time.Now()
	mod, in, manifest, err := load(ctx, p.path, &p.cfg, p.set.BaseDir, p.config, p.ic, p.log)
	if err != nil {
		return fmt.Errorf("%s: %w", ID, err)
	}
	p.mod, p.manifest = mod, manifest
	p.live = 1
	p.idle <- in
	p.log.Info("wasm module loaded", "path", p.path, "kind", manifest.Kind, "abi", manifest.Version,
		"instances", p.max, "memory_limit", p.cfg.MemoryLimit.String(), "duration", time.Since(t0))
	return nil
}

// load compiles the module at path and makes its first instance.
func load(ctx context.Context, path string, cfg *Config, baseDir string, config []byte, ic instanceConfig, log *slog.Logger) (*module, *instance, abi.Manifest, error) {
	mod, err := openModule(ctx, path, cfg.limits(), ic.checks, cfg.cacheDir(baseDir), ic, log)
	if err != nil {
		return nil, nil, abi.Manifest{}, err
	}
	in, manifest, err := mod.newInstance(ctx, config, ic)
	if err != nil {
		mod.close(ctx)
		return nil, nil, abi.Manifest{}, err
	}
	return mod, in, manifest, nil
}

// openModule compiles the module and checks its exports. A module of
// another ABI version is reported as such (a *abi.VersionError naming
// both versions) rather than by the exports it lacks, if it can tell its
// version.
func openModule(ctx context.Context, path string, lim limits, want checks, cacheDir string, ic instanceConfig, log *slog.Logger) (*module, error) {
	mod, err := compileModule(ctx, path, lim, want, cacheDir, log)
	if err != nil {
		return nil, err
	}
	if err := mod.checkExports(); err != nil {
		if mod.hasVersionExport() {
			if in, ierr := mod.instantiate(ctx, ic, initTimeout); ierr == nil {
				_, verr := in.abiVersion(ctx)
				in.close(ctx)
				if verr != nil {
					err = fmt.Errorf("%s: %w", path, verr)
				}
			}
		}
		mod.close(ctx)
		return nil, err
	}
	return mod, nil
}

// newInstance instantiates the module, checks its ABI version and passes
// it the config.
func (m *module) newInstance(ctx context.Context, config []byte, ic instanceConfig) (*instance, abi.Manifest, error) {
	in, err := m.instantiate(ctx, ic, initTimeout)
	if err != nil {
		return nil, abi.Manifest{}, err
	}
	fail := func(err error) (*instance, abi.Manifest, error) {
		in.close(ctx)
		return nil, abi.Manifest{}, fmt.Errorf("%s: %w", m.path, err)
	}
	if _, err := in.abiVersion(ctx); err != nil {
		return fail(err)
	}
	manifest, err := in.initialize(ctx, config, ic.buffer)
	if err != nil {
		return fail(err)
	}
	return in, manifest, nil
}

// Manifest returns what the module said at init: kind and what it reads.
// It is zero before Start.
func (p *Processor) Manifest() abi.Manifest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.manifest
}

// Process runs b through the module: one call for the whole batch. The
// module's verdicts remove records and its updates modify them. If the
// module fails (trap, panic, timeout, out of memory, bad answer, error),
// b is unchanged, the failure is counted in weir_wasm_errors_total, the
// instance is replaced, and Process returns a *plugin.Error whose reason
// the engine counts and applies on_error to.
func (p *Processor) Process(ctx context.Context, b *flow.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	in, err := p.acquire(ctx)
	if err != nil {
		return fmt.Errorf("%s %s: %w", ID, p.cfg.Path, err)
	}
	defer p.inflight.Done()
	reason, err := in.run(b, p.manifest.Reads, p.cfg.Timeout)
	if err == nil {
		p.release(in)
		return nil
	}
	p.metrics.errors.WithLabelValues(reason).Inc()
	p.replace(ctx, in)
	return plugin.Fail(reason, fmt.Errorf("%s %s: %w", ID, p.cfg.Path, err))
}

// acquire takes an idle instance, creates one if the pool is not full, or
// waits. It registers the caller in inflight.
func (p *Processor) acquire(ctx context.Context) (*instance, error) {
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return nil, ErrClosed
	case p.mod == nil:
		p.mu.Unlock()
		return nil, errors.New("process before start")
	}
	p.inflight.Add(1)
	p.mu.Unlock()
	if in := p.hot.Swap(nil); in != nil {
		return in, nil
	}
	for {
		select {
		case in := <-p.idle:
			return in, nil
		default:
		}
		p.mu.Lock()
		if p.live < p.max {
			p.live++
			p.mu.Unlock()
			in, _, err := p.mod.newInstance(context.Background(), p.config, p.ic)
			if err != nil {
				p.mu.Lock()
				p.live--
				p.mu.Unlock()
				p.inflight.Done()
				return nil, err
			}
			return in, nil
		}
		p.mu.Unlock()
		p.waiting.Add(1)
		// A release that saw no waiter may have parked its instance in
		// hot just before.
		if in := p.hot.Swap(nil); in != nil {
			p.waiting.Add(-1)
			return in, nil
		}
		select {
		case in := <-p.idle:
			p.waiting.Add(-1)
			return in, nil
		case <-ctx.Done():
			p.waiting.Add(-1)
			p.inflight.Done()
			return nil, ctx.Err()
		case <-p.closing:
			p.waiting.Add(-1)
			p.inflight.Done()
			return nil, ErrClosed
		}
	}
}

// release returns a healthy instance to the pool: to hot when no caller
// waits (an atomic swap, ~60 ns a batch cheaper than a channel operation),
// else to idle. Each side writes its own word before reading the other's,
// so an instance parked in hot as a caller starts waiting is seen by one
// of them and handed over (TestPoolHandoff).
func (p *Processor) release(in *instance) {
	if p.waiting.Load() == 0 && p.hot.CompareAndSwap(nil, in) {
		if p.waiting.Load() == 0 {
			return
		}
		if in = p.hot.Swap(nil); in == nil {
			return // the waiter took it
		}
	}
	p.idle <- in // never blocks: at most max instances exist
}

// replace discards a failed instance and creates its successor, so the
// next batch does not pay for it.
func (p *Processor) replace(ctx context.Context, in *instance) {
	in.close(context.Background())
	p.metrics.restarts.Inc()
	fresh, _, err := p.mod.newInstance(context.Background(), p.config, p.ic)
	if err != nil {
		p.mu.Lock()
		p.live--
		p.mu.Unlock()
		p.log.Error("recreate wasm instance; will retry on the next batch", "error", err)
		return
	}
	p.release(fresh)
}

// Shutdown waits for in-flight batches (until ctx ends), then closes every
// instance and the runtime. It is idempotent and safe without Start.
func (p *Processor) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.closing)
	p.mu.Unlock()

	done := make(chan struct{})
	go func() {
		p.inflight.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("%s: shutdown with batches in flight: %w", ID, ctx.Err())
	}
	if in := p.hot.Swap(nil); in != nil {
		in.close(context.Background())
	}
	for {
		select {
		case in := <-p.idle:
			in.close(context.Background())
			continue
		default:
		}
		break
	}
	if p.mod != nil {
		// Closing the runtime also stops calls still in flight.
		p.mod.close(context.Background())
	}
	return err
}

// metrics are the plugin's own metrics; the engine counts records and
// times batches (weir_stage_process_duration_seconds).
type metrics struct {
	errors   *prometheus.CounterVec
	restarts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_wasm_errors_total",
			Help: "Batches a WASM module failed on, by reason (crash, timeout, bad_answer, plugin_error).",
		}, []string{"reason"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_wasm_restarts_total",
			Help: "WASM instances replaced after a failure.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	register := func(c prometheus.Collector) (prometheus.Collector, error) {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
			return are.ExistingCollector, nil
		}
		return c, nil
	}
	c, err := register(m.errors)
	if err != nil {
		return nil, err
	}
	m.errors = c.(*prometheus.CounterVec)
	if c, err = register(m.restarts); err != nil {
		return nil, err
	}
	m.restarts = c.(prometheus.Counter)
	for _, r := range reasons {
		m.errors.WithLabelValues(r)
	}
	return m, nil
}

var _ plugin.Processor = (*Processor)(nil)
