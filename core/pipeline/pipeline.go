// Package pipeline is Weir's engine: it builds the configured stages from
// the plugin registry, connects them with bounded queues, counts what every
// stage receives, passes on and drops, and shuts down without losing what
// it accepted.
//
// Sources emit batches into one bounded queue; Workers goroutines run the
// processor chain on each batch (by default GOMAXPROCS, or more when a
// [plugin.Concurrent] processor can have more batches in flight); every
// exporter then gets every batch through its own bounded queue and
// goroutine. When that queue is full the batch waits (backpressure to the
// sources) with queue.when_full block, or with auto, the default, when the
// pipeline has one exporter; with drop, or auto and several exporters, a
// slow exporter costs only its own queue and its overflow is counted.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// Options are the engine's dependencies.
type Options struct {
	// Logger receives the engine's and plugins' logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the metrics. Default: a private registry.
	Registerer prometheus.Registerer
}

// item is a batch in flight with the count of exporters still reading it.
type item struct {
	batch *flow.Batch
	refs  atomic.Int32
	done  func() // plugin.AckEmitter's callback, or nil
	// pending counts what done still waits for: the batch's release, and
	// each plugin.AckExporter that has not yet stored it.
	pending atomic.Int32
}

// stage is what every running plugin instance carries: its config (to tell
// on reload whether it changed), its counters and its metrics.
type stage struct {
	cfg     config.Stage
	baseDir string
	files   string // digest of the config's Files, "" without
	stats   *StageStats
	metrics *stageMetrics
	name    string // label, as in logs
}

type source struct {
	plugin.Source
	stage
}

type processor struct {
	plugin.Processor
	stage
	failClosed bool // on_error: fail-closed
	// out is the processor's own emitter when it is plugin.Emitting.
	out *procEmitter
}

type exporter struct {
	plugin.Exporter
	stage
	queue chan *item
	done  chan struct{} // closed when the exporter's goroutine has drained queue
	// after, when set, is the gone channel of the exporter this one
	// replaces: it exports only once that one has flushed and shut down.
	after   chan struct{}
	gone    chan struct{} // closed by Reload once this exporter is shut down
	started bool
	// deferred: the exporter is plugin.Deferred and reports what it
	// delivered through its outcome, so Export's return counts nothing out.
	deferred bool
}

// graph is the processor chain and the exporters the workers run. A reload
// replaces it whole, between batches (under Pipeline.swap).
type graph struct {
	processors []*processor
	exporters  []*exporter
	// ctx is the context the workers pass to Process: it carries the graph,
	// so a plugin.Emitting processor emitting from inside Process runs the
	// rest of this graph without taking p.swap again.
	ctx context.Context
}

type graphKey struct{}

func newGraph() *graph {
	g := &graph{}
	g.ctx = context.WithValue(context.Background(), graphKey{}, g)
	return g
}

func (g *graph) context() context.Context { return g.ctx }

// Pipeline is a running (or ready) pipeline. Build it with New, then Start
// and Shutdown it once each; Reload swaps its stages while it runs.
type Pipeline struct {
	cfg  *config.Config // engine settings as built; stages are in sources and g
	log  *slog.Logger
	reg  prometheus.Registerer
	hist *prometheus.HistogramVec
	name string
	// whenFull is pipeline.queue.when_full: auto, drop or block (see
	// config.Queue); auto follows the current graph's exporter count.
	whenFull string
	pool     *batchPool
	queue    chan *item
	closed   bool
	emitMu   sync.RWMutex

	// mu serialises Start, Reload and Shutdown and guards sources,
	// stats, nworkers and notReady.
	mu       sync.Mutex
	sources  []*source
	stats    map[string]*StageStats // by kind/label/plugin, reused across reloads
	nworkers int
	notReady error

	// swap is held for reading by a worker while it runs one batch through
	// g, and for writing by Reload to replace g between batches.
	swap sync.RWMutex
	g    *graph
	// view is every running stage in order, for Stats and the metrics.
	view atomic.Pointer[[]*stage]

	workers   sync.WaitGroup
	exporting sync.WaitGroup
	done      chan struct{}
	stopOnce  sync.Once
	stopErr   error
	started   bool
	stopping  atomic.Bool
}

// New builds every configured plugin. It fails, naming the stage, if a
// plugin cannot be built; plugins built before the failure are shut down.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Pipeline, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	pc := &cfg.Pipeline
	p := &Pipeline{
		cfg:      cfg,
		log:      opts.Logger,
		reg:      opts.Registerer,
		name:     pc.Name,
		whenFull: pc.Queue.WhenFull,
		queue:    make(chan *item, pc.Queue.Size),
		done:     make(chan struct{}),
		stats:    map[string]*StageStats{},
		g:        newGraph(),
		notReady: errors.New("not started"),
	}
	size := pc.Batch.Size
	// Every exporter queues the same items, so at most Size plus an
	// exporter queue's capacity (and a few in workers and sources) are in
	// flight: a pool that keeps fewer lets the batches of each backlog go
	// to the GC, and the next backlog allocates them again. (Never fewer
	// than a dropping queue's: a reload that adds exporters makes one.)
	p.pool = newBatchPool(size, pc.Queue.Size+max(pc.Queue.ExporterCapacity(len(pc.Exporters)), config.DroppingExporterQueue)+64)
	p.hist = newDurationHistogram(opts.Registerer)
	opts.Registerer.MustRegister(&collector{p: p})

	var errs []error
	for _, s := range pc.Sources {
		src, err := p.buildSource(s, cfg.BaseDir, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.sources = append(p.sources, src)
	}
	for _, s := range pc.Processors {
		pr, err := p.buildProcessor(s, cfg.BaseDir, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.g.processors = append(p.g.processors, pr)
	}
	for _, s := range pc.Exporters {
		e, err := p.buildExporter(s, cfg.BaseDir, false, pc.Queue.ExporterCapacity(len(pc.Exporters)))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.g.exporters = append(p.g.exporters, e)
	}
	if len(p.sources) == 0 && len(pc.Sources) == 0 {
		errs = append(errs, errors.New("pipeline.sources: at least one source is required"))
	}
	if err := errors.Join(errs...); err != nil {
		p.shutdownAll(ctx)
		return nil, err
	}
	p.updateView()
	return p, nil
}

// build builds one stage's plugin with its own settings. With deferMetrics
// (a reload) the plugin's metrics are registered only by commit, once the
// instance it replaces has unregistered its own.
func (p *Pipeline) build(s config.Stage, kind, baseDir string, deferMetrics bool) (plugin.Component, stage, error) {
	label := s.Label
	if label == "" { // a Stage built by hand, not by config.Parse
		label = strings.TrimPrefix(strings.TrimSuffix(s.Path, "."+s.ID), "pipeline.")
	}
	st := stage{cfg: s, baseDir: baseDir, name: label, files: filesDigest(s, baseDir)}
	key := kind + "/" + label + "/" + s.ID
	stats, ok := p.stats[key]
	if !ok {
		stats = &StageStats{Stage: label, Plugin: s.ID, Kind: kind}
		stats.duration = p.hist.With(prometheus.Labels{"pipeline": p.name, "stage": label, "plugin": s.ID})
		p.stats[key] = stats
	}
	st.stats = stats
	st.metrics = newStageMetrics(p.reg, deferMetrics)
	set := plugin.Settings{
		ID:        s.ID,
		Name:      label + "." + s.ID,
		Logger:    p.log.With("pipeline", p.name, "stage", label, "plugin", s.ID),
		Metrics:   prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": p.name, "stage": label}, st.metrics),
		BatchSize: p.cfg.Pipeline.Batch.Size,
		BaseDir:   baseDir,
	}
	c, err := s.Info.New(s.Config, set)
	if err != nil {
		st.metrics.unregisterAll()
		return nil, st, fmt.Errorf("%s: %w", s.Path, err)
	}
	return c, st, nil
}

// buildAs builds one stage's plugin and checks that it is a T (the
// interface of its kind); a plugin that is not is shut down again.
func buildAs[T plugin.Component](p *Pipeline, s config.Stage, kind, iface, baseDir string, deferMetrics bool) (T, stage, error) {
	var zero T
	c, st, err := p.build(s, kind, baseDir, deferMetrics)
	if err != nil {
		return zero, st, err
	}
	t, ok := c.(T)
	if !ok {
		_ = c.Shutdown(context.Background())
		st.metrics.unregisterAll()
		return zero, st, fmt.Errorf("%s: plugin does not implement %s", s.Path, iface)
	}
	return t, st, nil
}

func (p *Pipeline) buildSource(s config.Stage, baseDir string, deferMetrics bool) (*source, error) {
	src, st, err := buildAs[plugin.Source](p, s, "source", "plugin.Source", baseDir, deferMetrics)
	if err != nil {
		return nil, err
	}
	return &source{src, st}, nil
}

func (p *Pipeline) buildProcessor(s config.Stage, baseDir string, deferMetrics bool) (*processor, error) {
	pr, st, err := buildAs[plugin.Processor](p, s, "processor", "plugin.Processor", baseDir, deferMetrics)
	if err != nil {
		return nil, err
	}
	out := &processor{Processor: pr, stage: st, failClosed: s.OnError == plugin.FailClosed}
	if em, ok := pr.(plugin.Emitting); ok {
		out.out = &procEmitter{p: p, pr: out, stats: st.stats}
		em.SetEmitter(out.out)
	}
	return out, nil
}

// buildExporter builds the exporter of s with a queue of capacity batches.
func (p *Pipeline) buildExporter(s config.Stage, baseDir string, deferMetrics bool, capacity int) (*exporter, error) {
	e, st, err := buildAs[plugin.Exporter](p, s, "exporter", "plugin.Exporter", baseDir, deferMetrics)
	if err != nil {
		return nil, err
	}
	out := &exporter{Exporter: e, stage: st, queue: make(chan *item, capacity),
		done: make(chan struct{}), gone: make(chan struct{})}
	if d, ok := e.(plugin.Deferred); ok {
		out.deferred = true
		d.SetOutcome(outcome{st.stats})
	}
	return out, nil
}

// outcome is a plugin.Deferred exporter's plugin.Outcome: it counts the
// records the exporter reports into its stage's counters.
type outcome struct{ stats *StageStats }

func (o outcome) Delivered(records int) {
	if records > 0 {
		o.stats.Out.Add(uint64(records))
	}
}

func (o outcome) Dropped(reason string, records int) {
	if records > 0 {
		o.stats.dropped(reason).Add(uint64(records))
	}
}

// Start starts exporters, then processors, then the workers, then sources,
// so every stage emits into a live consumer. On error, what was started is
// shut down.
func (p *Pipeline) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = true
	g := p.g
	for _, e := range g.exporters {
		if err := e.Start(ctx); err != nil {
			p.shutdownLocked(ctx)
			return fmt.Errorf("start %s: %w", e.cfg.Path, err)
		}
		p.startExporter(e)
	}
	for _, pr := range g.processors {
		if err := pr.Start(ctx); err != nil {
			p.shutdownLocked(ctx)
			return fmt.Errorf("start %s: %w", pr.cfg.Path, err)
		}
	}
	p.addWorkers(p.workerCount(g.processors))
	for _, s := range p.sources {
		p.pushDown(s, g)
		if err := s.Start(ctx, &emitter{p: p, stats: s.stats}); err != nil {
			p.shutdownLocked(ctx)
			return fmt.Errorf("start %s: %w", s.cfg.Path, err)
		}
	}
	p.notReady = nil
	go p.watchFinite(p.sources)
	return nil
}

// pushDown hands a [plugin.Pushdown] source the first processor of g,
// before the source starts.
func (p *Pipeline) pushDown(s *source, g *graph) {
	if pd, ok := s.Source.(plugin.Pushdown); ok && len(g.processors) > 0 {
		pd.PushDown(g.processors[0].Processor)
	}
}

func (p *Pipeline) startExporter(e *exporter) {
	p.exporting.Add(1)
	go p.runExporter(e)
}

// addWorkers raises the number of workers to n (never lowers it).
func (p *Pipeline) addWorkers(n int) {
	for ; p.nworkers < n; p.nworkers++ {
		p.workers.Add(1)
		go p.runWorker()
	}
}

// workerCount is pipeline.workers or, when that is 0, the larger of
// GOMAXPROCS and the largest InFlight of a [plugin.Concurrent] processor, so
// that processor can have that many batches in it at once. An explicit
// pipeline.workers below a processor's InFlight is kept, with a warning.
func (p *Pipeline) workerCount(processors []*processor) int {
	explicit := p.cfg.Pipeline.Workers
	workers := explicit
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	for _, pr := range processors {
		c, ok := pr.Processor.(plugin.Concurrent)
		if !ok {
			continue
		}
		switch n := c.InFlight(); {
		case explicit == 0:
			workers = max(workers, n)
		case explicit < n:
			p.log.Warn("pipeline.workers is below the processor's in_flight, so it never has more than pipeline.workers batches at once",
				"stage", pr.name, "workers", explicit, "in_flight", n)
		}
	}
	return workers
}

// Done is closed when every source is finite (plugin.Finite) and has
// emitted everything; a pipeline with a network source never closes it.
func (p *Pipeline) Done() <-chan struct{} { return p.done }

func (p *Pipeline) watchFinite(sources []*source) {
	for _, s := range sources {
		f, ok := s.Source.(plugin.Finite)
		if !ok {
			return
		}
		<-f.Done()
	}
	close(p.done)
}

// Stats returns a snapshot of every running stage's counters, sources
// first, then processors and exporters in their order.
func (p *Pipeline) Stats() []Snapshot {
	var out []Snapshot
	for _, st := range p.stages() {
		out = append(out, st.stats.Snapshot())
	}
	return out
}

// stages lists the running stages in pipeline order, as of the last
// change (New, Reload).
func (p *Pipeline) stages() []*stage {
	if v := p.view.Load(); v != nil {
		return *v
	}
	return nil
}

// updateView publishes the running stages for stages(); the caller holds
// p.mu.
func (p *Pipeline) updateView() {
	var out []*stage
	for _, s := range p.sources {
		out = append(out, &s.stage)
	}
	for _, pr := range p.g.processors {
		out = append(out, &pr.stage)
	}
	for _, e := range p.g.exporters {
		out = append(out, &e.stage)
	}
	p.view.Store(&out)
}

// Ready returns nil when every stage has started and the pipeline is not
// shutting down, else why not (for /readyz).
func (p *Pipeline) Ready() error {
	if p.stopping.Load() {
		return errors.New("shutting down")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.notReady
}

// Shutdown stops the sources, drains the queue through the processors,
// drains every exporter's queue, then shuts processors and exporters down
// (exporters flush). Nothing accepted is lost unless ctx ends first.
// It is idempotent.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.stopping.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shutdownLocked(ctx)
}

func (p *Pipeline) shutdownLocked(ctx context.Context) error {
	p.stopOnce.Do(func() { p.stopErr = p.shutdownAll(ctx) })
	return p.stopErr
}

// shutdownAll stops everything; the caller holds p.mu (or is New).
func (p *Pipeline) shutdownAll(ctx context.Context) error {
	p.stopping.Store(true)
	var errs []error
	for _, s := range p.sources {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", s.name, err))
		}
	}
	p.emitMu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.emitMu.Unlock()
	if err := wait(ctx, &p.workers); err != nil {
		errs = append(errs, fmt.Errorf("drain processors: %w", err))
	}
	// In chain order: a processor flushing what it holds on Shutdown emits
	// into the processors after it, which are still running.
	g := p.g
	for _, pr := range g.processors {
		if err := pr.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", pr.name, err))
		}
		if pr.out != nil {
			pr.out.close()
		}
	}
	for _, e := range g.exporters {
		if p.started {
			close(e.queue)
		}
	}
	if err := wait(ctx, &p.exporting); err != nil {
		errs = append(errs, fmt.Errorf("drain exporters: %w", err))
	}
	for _, e := range g.exporters {
		if err := e.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", e.name, err))
		}
	}
	return errors.Join(errs...)
}

// wait waits for wg until ctx ends.
func wait(ctx context.Context, wg *sync.WaitGroup) error { return plugin.AwaitShutdown(ctx, wg, nil) }

// runWorker runs the processor chain on batches from the source queue and
// fans each out to the exporters.
func (p *Pipeline) runWorker() {
	defer p.workers.Done()
	for it := range p.queue {
		// Between two batches a reload may swap the graph; the read lock
		// keeps this batch on one graph from its first processor to the
		// exporters' queues.
		p.swap.RLock()
		g := p.g
		p.process(g, it.batch, 0)
		p.fanOut(g, it)
		p.swap.RUnlock()
	}
}

// process runs g.processors[from:] on b; the caller holds p.swap for
// reading (or is the shutdown, when no reload can run).
func (p *Pipeline) process(g *graph, b *flow.Batch, from int) {
	// g.ctx tells a plugin.Emitting processor's Emit, called from inside
	// Process, that this goroutine already holds p.swap.
	ctx := g.context()
	for i := from; i < len(g.processors); i++ {
		pr := g.processors[i]
		n := uint64(b.Len())
		if n == 0 {
			break
		}
		start := time.Now()
		err := pr.Process(ctx, b)
		elapsed := time.Since(start)
		st := pr.stats
		st.In.Add(n)
		st.Batches.Add(1)
		st.Nanos.Add(uint64(elapsed))
		st.duration.Observe(elapsed.Seconds())
		var failDropped uint64
		if err != nil {
			failDropped = p.failed(pr, b, n, err)
		}
		out := uint64(b.Len())
		switch {
		case out+failDropped > n:
		case pr.out != nil:
			// An Emitting processor holds what it removes, to emit later.
			st.Held.Add(n - out - failDropped)
		default:
			st.Filtered.Add(n - out - failDropped)
		}
		st.Out.Add(out)
	}
}

// failed applies pr's on_error policy to b, a batch of n records pr failed
// on: fail-open passes b on as the processor left it (hosts leave it
// unchanged), fail-closed drops its records. Either way the records are
// counted by reason and the failure is logged, rate-limited.
//
// It returns how many records it dropped.
func (p *Pipeline) failed(pr *processor, b *flow.Batch, n uint64, err error) (dropped uint64) {
	st := pr.stats
	reason := plugin.ReasonOf(err)
	st.ErrorBatches.Add(1)
	policy := plugin.FailOpen
	if pr.failClosed {
		policy = plugin.FailClosed
		dropped = uint64(b.RetainMask(nil))
		st.ErrorDropped.Add(dropped)
	} else {
		st.Errored.Add(n)
		st.errored(reason).Add(n)
	}
	if suppressed, ok := st.logs.Allow(time.Now()); ok {
		p.log.Warn("processor failed on a batch", "stage", pr.name, "reason", reason, "on_error", policy,
			"records", n, "failed_batches", st.ErrorBatches.Load(), "suppressed", suppressed, "err", err)
	}
	return dropped
}

func (p *Pipeline) fanOut(g *graph, it *item) {
	n := uint64(it.batch.Len())
	if n == 0 || len(g.exporters) == 0 {
		p.release(it)
		return
	}
	it.refs.Store(int32(len(g.exporters)))
	block := config.Queue{WhenFull: p.whenFull}.Blocks(len(g.exporters))
	for _, e := range g.exporters {
		if block {
			e.queue <- it
			continue
		}
		select {
		case e.queue <- it:
		default:
			e.stats.Overflow.Add(n)
			p.unref(it)
		}
	}
}

func (p *Pipeline) runExporter(e *exporter) {
	defer p.exporting.Done()
	defer close(e.done)
	if e.after != nil {
		<-e.after
	}
	ctx := context.Background()
	for it := range e.queue {
		n := uint64(it.batch.Len())
		start := time.Now()
		var err error
		if de, ok := e.Exporter.(plugin.AckExporter); ok && it.done != nil {
			it.pending.Add(1) // before unref below, so release cannot finish first
			err = de.ExportAcked(ctx, it.batch, func() { p.settle(it) })
		} else {
			err = e.Export(ctx, it.batch)
		}
		elapsed := time.Since(start)
		e.stats.In.Add(n)
		e.stats.Batches.Add(1)
		e.stats.Nanos.Add(uint64(elapsed))
		e.stats.duration.Observe(elapsed.Seconds())
		p.account(e, n, err)
		p.unref(it)
	}
}

// account counts the n records of a batch e's Export returned err for:
// delivered ones as out, the ones a plugin.DroppedError names as dropped by
// reason (at most n), the whole batch as errored when Export failed. A
// plugin.Deferred exporter reports its deliveries itself (outcome), so
// nothing is counted out here for it.
func (p *Pipeline) account(e *exporter, n uint64, err error) {
	st := e.stats
	if err == nil {
		if !e.deferred {
			st.Out.Add(n)
		}
		return
	}
	left := n
	partial := plugin.Drops(err, func(reason string, records int) {
		k := min(uint64(max(records, 0)), left)
		left -= k
		st.dropped(reason).Add(k)
	})
	if partial {
		if !e.deferred {
			st.Out.Add(left)
		}
		return
	}
	// Export failed: the records it did not name as dropped count as
	// errored.
	reason := plugin.ReasonOf(err)
	st.Errored.Add(left)
	st.errored(reason).Add(left)
	st.ErrorBatches.Add(1)
	if suppressed, ok := st.logs.Allow(time.Now()); ok {
		p.log.Warn("exporter failed on a batch", "stage", e.name, "reason", reason, "records", n,
			"failed_batches", st.ErrorBatches.Load(), "suppressed", suppressed, "err", err)
	}
}

func (p *Pipeline) unref(it *item) {
	if it.refs.Add(-1) == 0 {
		p.release(it)
	}
}

func (p *Pipeline) release(it *item) {
	it.batch.Reset()
	p.pool.Put(it.batch)
	if it.done != nil {
		p.settle(it)
	}
}

// settle counts one of what it.done waits for; the last calls it.
func (p *Pipeline) settle(it *item) {
	if it.pending.Add(-1) == 0 {
		it.done()
	}
}

// emitter is a source's handle; it counts the source's output.
type emitter struct {
	p     *Pipeline
	stats *StageStats
}

func (e *emitter) NewBatch() *flow.Batch { return e.p.pool.Get() }

func (e *emitter) BatchSize() int              { return e.p.cfg.Pipeline.Batch.Size }
func (e *emitter) BatchTimeout() time.Duration { return e.p.cfg.Pipeline.Batch.Timeout }

var _ plugin.AckEmitter = (*emitter)(nil)

// ErrClosed is returned by Emit after the pipeline stopped accepting input.
var ErrClosed = errors.New("pipeline closed")

func (e *emitter) Emit(ctx context.Context, b *flow.Batch) error {
	return e.EmitAcked(ctx, b, nil)
}

// EmitAcked implements plugin.AckEmitter: done runs when the batch is
// released (release), after the last exporter returned, and every
// plugin.AckExporter among them has stored it.
func (e *emitter) EmitAcked(ctx context.Context, b *flow.Batch, done func()) error {
	n := uint64(b.Len())
	if n == 0 {
		b.Reset()
		e.p.pool.Put(b)
		if done != nil {
			done()
		}
		return nil
	}
	it := &item{batch: b, done: done}
	it.pending.Store(1) // the release
	e.p.emitMu.RLock()
	defer e.p.emitMu.RUnlock()
	if e.p.closed {
		return ErrClosed
	}
	select {
	case e.p.queue <- it:
		e.stats.In.Add(n)
		e.stats.Out.Add(n)
		e.stats.Batches.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// procEmitter is a plugin.Emitting processor's handle: its batches run
// through the processors after it in the current graph, then to that
// graph's exporters.
type procEmitter struct {
	p     *Pipeline
	pr    *processor
	stats *StageStats
	// retiredFrom is, once a reload took the processor out of the graph,
	// the index in the new graph of the first processor its records go to
	// (its final flush, on Shutdown). Guarded by p.swap.
	retiredFrom int

	mu     sync.RWMutex
	closed bool
}

func (e *procEmitter) NewBatch() *flow.Batch       { return e.p.pool.Get() }
func (e *procEmitter) BatchSize() int              { return e.p.cfg.Pipeline.Batch.Size }
func (e *procEmitter) BatchTimeout() time.Duration { return e.p.cfg.Pipeline.Batch.Timeout }

// Emit runs the rest of the current graph's chain on b in the caller's
// goroutine and hands it to that graph's exporters. It returns ErrClosed
// before Start and after the processor's Shutdown.
func (e *procEmitter) Emit(ctx context.Context, b *flow.Batch) error {
	n := uint64(b.Len())
	if n == 0 {
		b.Reset()
		e.p.pool.Put(b)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed || !e.p.started {
		return ErrClosed
	}
	// From inside Process the worker already holds p.swap for reading
	// (taking it again could deadlock against a waiting Reload).
	g, held := ctx.Value(graphKey{}).(*graph)
	if !held {
		e.p.swap.RLock()
		defer e.p.swap.RUnlock()
		g = e.p.g
	}
	from := indexOf(g.processors, e.pr) + 1
	if from == 0 {
		from = min(e.retiredFrom, len(g.processors))
	}
	e.stats.Out.Add(n)
	e.p.process(g, b, from)
	e.p.fanOut(g, &item{batch: b})
	return nil
}

// close makes later Emit calls fail; it waits for those in progress.
func (e *procEmitter) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
}
