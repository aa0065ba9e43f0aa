package bench

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// RunOptions set how much a run feeds and what it reports on the way.
type RunOptions struct {
	// Records is how many records the measured pass feeds, cycling through
	// the input. 0 feeds the input once (unless Duration is set).
	Records int
	// Duration, when positive, feeds batches until it has passed (and at
	// least one batch); it overrides Records.
	Duration time.Duration
	// Warmup is how many records are fed before measuring, so caches,
	// pools and lazily built state are warm. 0 picks 5% of the run, at
	// least 8 batches and at most 20000 records; negative disables it.
	Warmup int
	// AllocBatches is how many batches the allocation pass feeds. 0 means
	// 200; negative skips the pass.
	AllocBatches int
	// Progress, if set, is called every few batches of the measured pass
	// with the records fed and the time elapsed so far.
	Progress func(records uint64, elapsed time.Duration)
}

const (
	defaultAllocBatches = 200
	progressEvery       = 16 // batches between Progress calls
	heapEvery           = 8  // batches between heap samples
)

// Run feeds in to the chain in one goroutine: a warm-up, the measured pass
// (each stage's Process timed per batch), then the allocation pass. A
// stage that returns an error is counted, and its batch goes on as the
// engine would pass it on; Run itself fails only if ctx ends or the input
// is empty.
func (c *Chain) Run(ctx context.Context, in *Input, opts RunOptions) (*Result, error) {
	r, err := c.newRunner(ctx, in, opts)
	if err != nil {
		return nil, err
	}
	runtime.GC() // start every run from a collected heap, for comparable heap peaks
	r.res.Memory.PeakRSSReset = resetPeakRSS()
	heap := newHeapSampler()
	heap.sample()
	for !r.done() {
		if err := r.step(ctx); err != nil {
			return nil, err
		}
		if r.batches%heapEvery == 0 {
			heap.sample()
		}
		if opts.Progress != nil && r.batches%progressEvery == 0 {
			opts.Progress(r.fed, r.wall)
		}
	}
	heap.sample()
	if opts.Progress != nil {
		opts.Progress(r.fed, r.wall)
	}
	r.res.Memory.PeakRSSBytes = peakRSS()
	r.res.Memory.PeakHeapBytes = heap.peak
	return r.end(ctx)
}

// runner is one chain's measured pass, fed a batch per step so two
// chains can be interleaved batch by batch.
type runner struct {
	c      *Chain
	opts   RunOptions
	f      *feeder
	b      *flow.Batch
	target uint64
	timed  bool

	res          *Result
	accs         []stageAcc
	total        stageAcc
	fed, batches uint64
	wall         time.Duration // time spent in steps: refilling and the stages
}

// newRunner prepares a run and feeds the warm-up.
func (c *Chain) newRunner(ctx context.Context, in *Input, opts RunOptions) (*runner, error) {
	if in == nil || in.Len() == 0 {
		return nil, fmt.Errorf("run %s: %w", c.name, ErrEmptyInput)
	}
	r := &runner{
		c: c, opts: opts,
		f:      &feeder{in: in.Batch},
		b:      flow.NewBatch(c.batchSize),
		target: uint64(opts.Records),
		timed:  opts.Duration > 0,
		accs:   make([]stageAcc, len(c.stages)),
	}
	if r.target == 0 {
		r.target = uint64(in.Len())
	}
	size := c.batchSize
	warm := opts.Warmup
	if warm == 0 {
		warm = min(max(int(r.target/20), 8*size), 20000)
	}
	var warmed uint64
	for warm > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("run %s: %w", c.name, err)
		}
		n := min(size, warm)
		r.f.fill(r.b, n)
		for _, st := range c.stages {
			if r.b.Len() == 0 {
				break
			}
			_ = st.call(ctx, r.b)
		}
		warm -= n
		warmed += uint64(n)
	}
	r.res = &Result{Chain: c.name, Input: in.Name, BatchSize: size, WarmupRecords: warmed}
	for _, st := range c.stages {
		r.res.WithIO = r.res.WithIO || st.kind == "exporter"
	}
	return r, nil
}

// done reports whether the measured pass has fed enough.
func (r *runner) done() bool {
	if r.timed {
		return r.batches > 0 && r.wall >= r.opts.Duration
	}
	return r.fed >= r.target
}

// step refills the batch and runs it through the chain, timing each stage.
func (r *runner) step(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run %s: %w", r.c.name, err)
	}
	begin := time.Now()
	n := r.c.batchSize
	if !r.timed {
		n = int(min(uint64(n), r.target-r.fed))
	}
	b := r.b
	r.f.fill(b, n)
	var chainNanos int64
	for i, st := range r.c.stages {
		k := b.Len()
		if k == 0 {
			break // the engine stops a chain at an empty batch
		}
		t0 := time.Now()
		err := st.call(ctx, b)
		d := time.Since(t0).Nanoseconds()
		a := &r.accs[i]
		a.in += uint64(k)
		a.batches++
		a.nanos += d
		a.samples = append(a.samples, float64(d)/float64(k))
		if err != nil {
			a.errored += uint64(k)
			if a.firstErr == "" {
				a.firstErr = err.Error()
			}
		}
		a.out += uint64(b.Len())
		chainNanos += d
	}
	r.res.Sink.Records += uint64(b.Len())
	r.res.Sink.Batches++
	t := &r.total
	t.in += uint64(n)
	t.out += uint64(b.Len())
	t.batches++
	t.nanos += chainNanos
	t.samples = append(t.samples, float64(chainNanos)/float64(n))
	r.fed += uint64(n)
	r.batches++
	r.wall += time.Since(begin)
	return nil
}

// end runs the allocation pass and assembles the result.
func (r *runner) end(ctx context.Context) (*Result, error) {
	res := r.res
	res.WallSeconds = r.wall.Seconds()
	res.Records, res.Batches = r.fed, r.batches
	if r.opts.AllocBatches >= 0 {
		nb := r.opts.AllocBatches
		if nb == 0 {
			nb = defaultAllocBatches
		}
		if err := r.c.allocPass(ctx, r.f, r.b, nb, r.accs, &r.total); err != nil {
			return nil, err
		}
	}
	for i, st := range r.c.stages {
		res.Stages = append(res.Stages, r.accs[i].result(st.name, st.plugin, st.kind))
	}
	res.Total = r.total.result("chain", "", "chain")
	return res, nil
}

// allocPass feeds nb batches with runtime.ReadMemStats around every stage
// call, adding allocation counts to accs and total.
func (c *Chain) allocPass(ctx context.Context, f *feeder, b *flow.Batch, nb int, accs []stageAcc, total *stageAcc) error {
	var before, after runtime.MemStats
	// ReadMemStats itself should not allocate; measure what a bare pair
	// costs and subtract it so the figures hold only the stage's work.
	runtime.ReadMemStats(&before)
	runtime.ReadMemStats(&after)
	baseMallocs, baseBytes := after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc
	for range nb {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("run %s: %w", c.name, err)
		}
		f.fill(b, c.batchSize)
		total.allocIn += uint64(b.Len())
		for i, st := range c.stages {
			k := b.Len()
			if k == 0 {
				break
			}
			runtime.ReadMemStats(&before)
			_ = st.call(ctx, b)
			runtime.ReadMemStats(&after)
			a := &accs[i]
			a.allocIn += uint64(k)
			m := after.Mallocs - before.Mallocs
			by := after.TotalAlloc - before.TotalAlloc
			m -= min(m, baseMallocs)
			by -= min(by, baseBytes)
			a.allocs += m
			a.allocBytes += by
			total.allocs += m
			total.allocBytes += by
		}
	}
	return nil
}

// heapSampler tracks the largest HeapInuse seen, read through
// runtime/metrics, which does not stop the world as ReadMemStats does.
type heapSampler struct {
	s    []metrics.Sample
	peak uint64
}

func newHeapSampler() *heapSampler {
	return &heapSampler{s: []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}}
}

// sample reads HeapInuse (heap objects + unused bytes of in-use spans).
func (h *heapSampler) sample() {
	metrics.Read(h.s)
	var v uint64
	for _, s := range h.s {
		if s.Value.Kind() == metrics.KindUint64 {
			v += s.Value.Uint64()
		}
	}
	h.peak = max(h.peak, v)
}
