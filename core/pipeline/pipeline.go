// Package pipeline is Weir's engine: it builds the configured stages from
// the plugin registry, connects them with bounded queues, counts what every
// stage receives, passes on and drops, and shuts down without losing what
// it accepted.
//
// Sources emit batches into one bounded queue; Workers goroutines run the
// processor chain on each batch (by default GOMAXPROCS, or more when a
// [plugin.Concurrent] processor can have more batches in flight); every
// exporter then gets every batch through its own bounded queue and
// goroutine, so a slow exporter costs only its own queue (its overflow is
// counted, or it backpressures when queue.when_full is block).
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
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
}

type source struct {
	plugin.Source
	stats *StageStats
}

type processor struct {
	plugin.Processor
	stats      *StageStats
	name       string
	failClosed bool // on_error: fail-closed
	// out is the processor's own emitter when it is plugin.Emitting.
	out *procEmitter
}

type exporter struct {
	plugin.Exporter
	stats *StageStats
	name  string
	queue chan *item
}

// Pipeline is a running (or ready) pipeline. Build it with New, then Start
// and Shutdown it once each.
type Pipeline struct {
	cfg    *config.Config
	log    *slog.Logger
	name   string
	block  bool
	pool   batchPool
	queue  chan *item
	closed bool
	emitMu sync.RWMutex

	sources    []source
	processors []processor
	exporters  []exporter
	stats      []*StageStats

	workers   sync.WaitGroup
	exporting sync.WaitGroup
	done      chan struct{}
	stopOnce  sync.Once
	stopErr   error
	started   bool
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
		cfg:   cfg,
		log:   opts.Logger,
		name:  pc.Name,
		block: pc.Queue.WhenFull == "block",
		queue: make(chan *item, pc.Queue.Size),
		done:  make(chan struct{}),
	}
	size := pc.Batch.Size
	p.pool = newBatchPool(size, pc.Queue.Size+64)
	hist := newDurationHistogram(opts.Registerer)

	build := func(s config.Stage, kind, stage string) (plugin.Component, *StageStats, error) {
		stats := &StageStats{Stage: stage, Plugin: s.ID, Kind: kind}
		stats.register(opts.Registerer, p.name, hist)
		p.stats = append(p.stats, stats)
		set := plugin.Settings{
			ID:        s.ID,
			Name:      stage + "." + s.ID,
			Logger:    opts.Logger.With("pipeline", p.name, "stage", stage, "plugin", s.ID),
			Metrics:   prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": p.name, "stage": stage}, opts.Registerer),
			BatchSize: size,
			BaseDir:   cfg.BaseDir,
		}
		c, err := s.Info.New(s.Config, set)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Path, err)
		}
		return c, stats, nil
	}
	var errs []error
	for i, s := range pc.Sources {
		c, stats, err := build(s, "source", fmt.Sprintf("sources[%d]", i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		src, ok := c.(plugin.Source)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: plugin does not implement plugin.Source", s.Path))
			continue
		}
		p.sources = append(p.sources, source{src, stats})
	}
	for i, s := range pc.Processors {
		c, stats, err := build(s, "processor", fmt.Sprintf("processors[%d]", i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		proc, ok := c.(plugin.Processor)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: plugin does not implement plugin.Processor", s.Path))
			continue
		}
		pr := processor{Processor: proc, stats: stats, name: s.Path, failClosed: s.OnError == plugin.FailClosed}
		if em, ok := proc.(plugin.Emitting); ok {
			pr.out = &procEmitter{p: p, next: len(p.processors) + 1, stats: stats}
			em.SetEmitter(pr.out)
		}
		p.processors = append(p.processors, pr)
	}
	for i, s := range pc.Exporters {
		c, stats, err := build(s, "exporter", fmt.Sprintf("exporters[%d]", i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		exp, ok := c.(plugin.Exporter)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: plugin does not implement plugin.Exporter", s.Path))
			continue
		}
		p.exporters = append(p.exporters, exporter{exp, stats, s.Path, make(chan *item, pc.Queue.ExporterSize)})
	}
	if len(p.sources) == 0 && len(pc.Sources) == 0 {
		errs = append(errs, errors.New("pipeline.sources: at least one source is required"))
	}
	if err := errors.Join(errs...); err != nil {
		p.shutdownAll(ctx)
		return nil, err
	}
	return p, nil
}

// Start starts exporters, then processors, then the workers, then sources,
// so every stage emits into a live consumer. On error, what was started is
// shut down.
func (p *Pipeline) Start(ctx context.Context) error {
	p.started = true
	for i := range p.exporters {
		e := &p.exporters[i]
		if err := e.Start(ctx); err != nil {
			p.shutdownAll(ctx)
			return fmt.Errorf("start %s: %w", e.name, err)
		}
		p.exporting.Add(1)
		go p.runExporter(e)
	}
	for _, pr := range p.processors {
		if err := pr.Start(ctx); err != nil {
			p.shutdownAll(ctx)
			return fmt.Errorf("start %s: %w", pr.name, err)
		}
	}
	for range p.workerCount() {
		p.workers.Add(1)
		go p.runWorker()
	}
	for i := range p.sources {
		s := &p.sources[i]
		if pd, ok := s.Source.(plugin.Pushdown); ok && len(p.processors) > 0 {
			pd.PushDown(p.processors[0].Processor)
		}
		if err := s.Start(ctx, &emitter{p: p, stats: s.stats}); err != nil {
			_ = p.Shutdown(ctx)
			return fmt.Errorf("start %s: %w", s.stats.Stage, err)
		}
	}
	go p.watchFinite()
	return nil
}

// workerCount is pipeline.workers or, when that is 0, the larger of
// GOMAXPROCS and the largest InFlight of a [plugin.Concurrent] processor, so
// that processor can have that many batches in it at once. An explicit
// pipeline.workers below a processor's InFlight is kept, with a warning.
func (p *Pipeline) workerCount() int {
	explicit := p.cfg.Pipeline.Workers
	workers := explicit
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	for _, pr := range p.processors {
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

func (p *Pipeline) watchFinite() {
	for _, s := range p.sources {
		f, ok := s.Source.(plugin.Finite)
		if !ok {
			return
		}
		<-f.Done()
	}
	close(p.done)
}

// Stats returns a snapshot of every stage's counters, sources first.
func (p *Pipeline) Stats() []Snapshot {
	out := make([]Snapshot, len(p.stats))
	for i, s := range p.stats {
		out[i] = s.Snapshot()
	}
	return out
}

// Shutdown stops the sources, drains the queue through the processors,
// drains every exporter's queue, then shuts processors and exporters down
// (exporters flush). Nothing accepted is lost unless ctx ends first.
// It is idempotent.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() { p.stopErr = p.shutdownAll(ctx) })
	return p.stopErr
}

func (p *Pipeline) shutdownAll(ctx context.Context) error {
	var errs []error
	for _, s := range p.sources {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", s.stats.Stage, err))
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
	for _, pr := range p.processors {
		if err := pr.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", pr.name, err))
		}
		if pr.out != nil {
			pr.out.close()
		}
	}
	for i := range p.exporters {
		if p.started {
			close(p.exporters[i].queue)
		}
	}
	if err := wait(ctx, &p.exporting); err != nil {
		errs = append(errs, fmt.Errorf("drain exporters: %w", err))
	}
	for _, e := range p.exporters {
		if err := e.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", e.name, err))
		}
	}
	return errors.Join(errs...)
}

func wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runWorker runs the processor chain on batches from the source queue and
// fans each out to the exporters.
func (p *Pipeline) runWorker() {
	defer p.workers.Done()
	for it := range p.queue {
		p.process(it.batch, 0)
		p.fanOut(it)
	}
}

// process runs processors[from:] on b.
func (p *Pipeline) process(b *flow.Batch, from int) {
	ctx := context.Background()
	for i := from; i < len(p.processors); i++ {
		pr := &p.processors[i]
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

func (p *Pipeline) fanOut(it *item) {
	n := uint64(it.batch.Len())
	if n == 0 || len(p.exporters) == 0 {
		p.release(it)
		return
	}
	it.refs.Store(int32(len(p.exporters)))
	for i := range p.exporters {
		e := &p.exporters[i]
		if p.block {
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
	ctx := context.Background()
	for it := range e.queue {
		n := uint64(it.batch.Len())
		start := time.Now()
		err := e.Export(ctx, it.batch)
		elapsed := time.Since(start)
		e.stats.In.Add(n)
		e.stats.Batches.Add(1)
		e.stats.Nanos.Add(uint64(elapsed))
		e.stats.duration.Observe(elapsed.Seconds())
		if err != nil {
			reason := plugin.ReasonOf(err)
			e.stats.Errored.Add(n)
			e.stats.errored(reason).Add(n)
			e.stats.ErrorBatches.Add(1)
			if suppressed, ok := e.stats.logs.Allow(time.Now()); ok {
				p.log.Warn("exporter failed on a batch", "stage", e.name, "reason", reason, "records", n,
					"failed_batches", e.stats.ErrorBatches.Load(), "suppressed", suppressed, "err", err)
			}
		} else {
			e.stats.Out.Add(n)
		}
		p.unref(it)
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
// released (release), after the last exporter returned.
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
// through the processors after it, then fan out to the exporters.
type procEmitter struct {
	p     *Pipeline
	next  int // index of the first processor after the emitting one
	stats *StageStats

	mu     sync.RWMutex
	closed bool
}

func (e *procEmitter) NewBatch() *flow.Batch       { return e.p.pool.Get() }
func (e *procEmitter) BatchSize() int              { return e.p.cfg.Pipeline.Batch.Size }
func (e *procEmitter) BatchTimeout() time.Duration { return e.p.cfg.Pipeline.Batch.Timeout }

// Emit runs the rest of the chain on b in the caller's goroutine and hands
// it to the exporters. It returns ErrClosed before Start and after the
// processor's Shutdown.
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
	e.stats.Out.Add(n)
	e.p.process(b, e.next)
	e.p.fanOut(&item{batch: b})
	return nil
}

// close makes later Emit calls fail; it waits for those in progress.
func (e *procEmitter) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
}
