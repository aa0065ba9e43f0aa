// Package sinkbuf is the buffering and failure policy the database
// exporters (export.clickhouse, export.postgres) share: a bounded buffer of
// records between Export and one writer goroutine that inserts them in
// batches (by size or interval), retries a failed insert with exponential
// back-off while the server is down, and counts every record it cannot
// keep by reason.
//
// # Notes
//   - Records are copied by value without their Extra IEs (a batch must
//     not be retained); strings are shared, as they are immutable.
//   - Nothing is lost while the buffer has room: a batch whose insert fails
//     stays at the head of the buffer and is retried. Records that arrive
//     while the buffer is full are dropped (reason buffer_full), or Export
//     blocks with when_full: block.
//   - An insert the server rejects as bad data (a [Permanent] error) is not
//     retried: its records are dropped (reason rejected).
package sinkbuf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// Drop reasons of weir_export_<name>_dropped_records_total, and of the
// engine's weir_stage_records_dropped_total (the same as plugin's).
const (
	ReasonBufferFull = plugin.DropBufferFull
	ReasonRejected   = plugin.DropRejected
	ReasonShutdown   = plugin.DropShutdown
)

// Options configure a Buffer.
type Options struct {
	// Name is the metric infix: weir_export_<Name>_….
	Name string
	// BatchSize is the rows of one insert; BatchInterval the longest a
	// record waits for its batch to fill.
	BatchSize     int
	BatchInterval time.Duration
	// MaxRecords bounds the buffer (records waiting or being retried).
	MaxRecords int
	// Block makes Add wait for room instead of dropping.
	Block bool
	// MinBackoff and MaxBackoff bound the retry back-off (doubling).
	MinBackoff, MaxBackoff time.Duration
	// Write inserts rows; it is called from one goroutine. Wrap an error
	// with [Permanent] when retrying cannot help.
	Write  func(ctx context.Context, rows []flow.Record) error
	Logger *slog.Logger
}

// Buffer is a bounded record buffer with a writer goroutine.
type Buffer struct {
	o Options

	mu     sync.Mutex
	chunks [][]flow.Record // FIFO; each chunk holds up to BatchSize records
	free   [][]flow.Record
	sealed bool      // chunks[0] is being written: Add must not grow it
	n      int       // records buffered
	first  time.Time // when the oldest buffered record arrived
	space  *sync.Cond
	wake   chan struct{}
	closed bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// out learns what became of every record Add accepted or refused,
	// for the engine's accounting (plugin.Deferred); set before Start.
	out plugin.Outcome

	rows, batches, retries atomic.Uint64
	dropped                *prometheus.CounterVec
	insertSeconds          prometheus.Histogram
	logs                   plugin.LogLimiter

	// Acknowledgements (AddAcked): records get sequence numbers as they
	// enter the FIFO; an ack runs once every record before its mark has
	// left it (inserted, rejected, or dropped at Close).
	added, settled uint64
	acks           []pendingAck
}

type pendingAck struct {
	upTo uint64
	fn   func()
}

// ErrPermanent marks an insert error retrying cannot fix.
var ErrPermanent = errors.New("permanent insert error")

type permanent struct{ err error }

func (p permanent) Error() string        { return p.err.Error() }
func (p permanent) Unwrap() []error      { return []error{p.err, ErrPermanent} }
func (p permanent) Is(target error) bool { return target == ErrPermanent }

// Permanent wraps err so the buffer drops the batch instead of retrying.
func Permanent(err error) error { return permanent{err} }

// New returns a buffer and registers its metrics with reg; Start starts the
// writer.
func New(o Options, reg prometheus.Registerer) (*Buffer, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = 5 * time.Second
	}
	b := &Buffer{o: o, wake: make(chan struct{}, 1), out: plugin.NopOutcome{}}
	b.space = sync.NewCond(&b.mu)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	p := "weir_export_" + o.Name + "_"
	b.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: p + "dropped_records_total",
		Help: "Records not inserted, by reason: buffer_full (the buffer was full, e.g. while the server was down), rejected (the server refused the batch as bad data), shutdown (still buffered when the shutdown deadline passed).",
	}, []string{"reason"})
	for _, r := range []string{ReasonBufferFull, ReasonRejected, ReasonShutdown} {
		b.dropped.WithLabelValues(r)
	}
	b.insertSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    p + "insert_duration_seconds",
		Help:    "Duration of successful batch inserts.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	})
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: p + name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	for _, c := range []prometheus.Collector{
		b.dropped, b.insertSeconds,
		counter("rows_total", "Rows inserted.", &b.rows),
		counter("batches_total", "Batch inserts that succeeded.", &b.batches),
		counter("retries_total", "Batch inserts that failed and will be retried.", &b.retries),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "buffered_records", Help: "Records waiting in the buffer (including a batch being retried)."},
			func() float64 { return float64(b.Buffered()) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return b, nil
}

// SetOutcome makes the buffer report every record it inserts (Delivered)
// or drops (Dropped, by reason) to o: the database exporters implement
// plugin.Deferred with it. Call it before Start.
func (b *Buffer) SetOutcome(o plugin.Outcome) {
	if o != nil {
		b.out = o
	}
}

// Start starts the writer goroutine.
func (b *Buffer) Start() {
	b.wg.Add(1)
	go b.run()
}

// Buffered returns how many records wait in the buffer.
func (b *Buffer) Buffered() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Inserted returns how many rows were inserted.
func (b *Buffer) Inserted() uint64 { return b.rows.Load() }

// Dropped returns the records dropped for reason.
func (b *Buffer) Dropped(reason string) uint64 {
	var m dto.Metric
	_ = b.dropped.WithLabelValues(reason).Write(&m)
	return uint64(m.GetCounter().GetValue())
}

// Add copies recs into the buffer (without Extra). Records beyond the
// buffer's room are dropped and counted, unless Block is set: then Add
// waits for room, or until ctx ends and then drops the rest (reason
// buffer_full). Every record is reported to the outcome once.
func (b *Buffer) Add(ctx context.Context, recs []*flow.Record) error {
	return b.AddAcked(ctx, recs, nil)
}

// AddAcked is Add, and calls ack (when not nil) once every record it kept
// has left the buffer: inserted, rejected by the server, or dropped by
// Close. Records it dropped at once (buffer full) need no wait. ack runs
// exactly once, from any goroutine, also when AddAcked returns an error.
func (b *Buffer) AddAcked(ctx context.Context, recs []*flow.Record, ack func()) error {
	b.mu.Lock()
	err := b.add(ctx, recs)
	var ready []func()
	if ack != nil {
		b.acks = append(b.acks, pendingAck{upTo: b.added, fn: ack})
		ready = b.settle()
	}
	b.mu.Unlock()
	for _, fn := range ready {
		fn()
	}
	return err
}

// add is Add with b.mu held.
func (b *Buffer) add(ctx context.Context, recs []*flow.Record) error {
	for i := 0; i < len(recs); {
		if b.closed {
			b.drop(ReasonShutdown, len(recs)-i, nil)
			return nil
		}
		room := b.o.MaxRecords - b.n
		if room <= 0 {
			if !b.o.Block {
				b.drop(ReasonBufferFull, len(recs)-i, nil)
				return nil
			}
			if err := b.waitSpace(ctx); err != nil {
				// Given up waiting for room: the rest is dropped, and
				// counted (a plugin.Deferred exporter reports its records
				// itself, so Add must not fail the batch).
				b.drop(ReasonBufferFull, len(recs)-i, err)
				return nil
			}
			continue
		}
		if b.n == 0 {
			b.first = time.Now()
		}
		for ; i < len(recs) && room > 0; i, room = i+1, room-1 {
			c := b.tail()
			c = append(c, *recs[i])
			c[len(c)-1].Extra = nil
			b.chunks[len(b.chunks)-1] = c
			b.n++
			b.added++
		}
	}
	if b.n >= b.o.BatchSize {
		b.signal()
	}
	return nil
}

// settle removes the acks whose records have all left the buffer and
// returns them, to be called without b.mu. Called with b.mu held.
func (b *Buffer) settle() []func() {
	var ready []func()
	k := 0
	for ; k < len(b.acks) && b.acks[k].upTo <= b.settled; k++ {
		ready = append(ready, b.acks[k].fn)
	}
	if k > 0 {
		b.acks = append(b.acks[:0], b.acks[k:]...)
	}
	return ready
}

// waitSpace waits on the condition until there is room, the buffer closes
// or ctx ends. Called with b.mu held.
func (b *Buffer) waitSpace(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.space.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	for b.n >= b.o.MaxRecords && !b.closed {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.space.Wait()
	}
	return nil
}

// tail returns the last chunk with room, adding one if needed.
func (b *Buffer) tail() []flow.Record {
	if k := len(b.chunks); k > 0 && len(b.chunks[k-1]) < b.o.BatchSize && !(k == 1 && b.sealed) {
		return b.chunks[k-1]
	}
	var c []flow.Record
	if k := len(b.free); k > 0 {
		c, b.free = b.free[k-1][:0], b.free[:k-1]
	} else {
		c = make([]flow.Record, 0, b.o.BatchSize)
	}
	b.chunks = append(b.chunks, c)
	return c
}

func (b *Buffer) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Buffer) drop(reason string, n int, err error) {
	if n <= 0 {
		return
	}
	b.dropped.WithLabelValues(reason).Add(float64(n))
	b.out.Dropped(reason, n)
	if suppressed, ok := b.logs.Allow(time.Now()); ok {
		b.o.Logger.Warn("records dropped", "reason", reason, "records", n, "buffered", b.n, "max_records", b.o.MaxRecords,
			"err", err, "suppressed", suppressed)
	}
}

// head returns the oldest chunk if it is due: full, or its oldest record
// older than BatchInterval, or the buffer is closing.
func (b *Buffer) head(now time.Time) ([]flow.Record, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		return nil, b.o.BatchInterval
	}
	c := b.chunks[0]
	if len(c) < b.o.BatchSize && !b.closed && len(b.chunks) == 1 {
		if wait := b.first.Add(b.o.BatchInterval).Sub(now); wait > 0 {
			return nil, wait
		}
	}
	b.sealed = true
	return c, 0
}

// pop removes the head chunk after it was written or dropped, and runs
// the acks that were waiting for it.
func (b *Buffer) pop() {
	b.mu.Lock()
	c := b.chunks[0]
	b.chunks[0] = nil
	b.chunks = b.chunks[1:]
	b.n -= len(c)
	b.settled += uint64(len(c))
	clear(c) // drop string references
	b.free = append(b.free, c[:0])
	b.sealed = false
	b.first = time.Now()
	b.space.Broadcast()
	ready := b.settle()
	b.mu.Unlock()
	for _, fn := range ready {
		fn()
	}
}

func (b *Buffer) run() {
	defer b.wg.Done()
	backoff := b.o.MinBackoff
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c, wait := b.head(time.Now())
		if c == nil {
			b.mu.Lock()
			closed := b.closed
			b.mu.Unlock()
			if closed {
				return
			}
			timer.Reset(wait)
			select {
			case <-b.wake:
			case <-timer.C:
			case <-b.ctx.Done():
				return
			}
			continue
		}
		start := time.Now()
		err := b.o.Write(b.ctx, c)
		switch {
		case err == nil:
			b.insertSeconds.Observe(time.Since(start).Seconds())
			b.rows.Add(uint64(len(c)))
			b.out.Delivered(len(c))
			b.batches.Add(1)
			backoff = b.o.MinBackoff
			b.pop()
		case errors.Is(err, ErrPermanent):
			b.mu.Lock()
			b.drop(ReasonRejected, len(c), err)
			b.mu.Unlock()
			b.pop()
		default:
			if b.ctx.Err() != nil {
				return
			}
			b.retries.Add(1)
			if suppressed, ok := b.logs.Allow(time.Now()); ok {
				b.o.Logger.Warn("insert failed; retrying", "rows", len(c), "backoff", backoff, "buffered", b.Buffered(),
					"err", err, "suppressed", suppressed)
			}
			timer.Reset(backoff)
			select {
			case <-timer.C:
			case <-b.ctx.Done():
				return
			}
			backoff = min(2*backoff, b.o.MaxBackoff)
		}
	}
}

// Close stops accepting records and lets the writer insert what is
// buffered until ctx ends; what is left then is dropped and counted
// (reason shutdown). It is idempotent.
func (b *Buffer) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.space.Broadcast()
	b.mu.Unlock()
	b.signal()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.cancel()
	<-done
	b.mu.Lock()
	if b.n > 0 {
		b.drop(ReasonShutdown, b.n, err)
		b.chunks, b.n = nil, 0
	}
	b.settled = b.added
	ready := b.settle()
	b.mu.Unlock()
	for _, fn := range ready {
		fn()
	}
	return err
}

// BatchConfig is the batch: key of a database exporter.
type BatchConfig struct {
	// Size is the rows of one insert. Default 10000.
	Size int `koanf:"size"`
	// Interval is the longest a record waits for its batch to fill.
	// Default 1s.
	Interval time.Duration `koanf:"interval"`
}

// BufferConfig is the buffer: key of a database exporter.
type BufferConfig struct {
	// MaxRecords bounds the records buffered while inserts wait or fail
	// (server down). Default 1000000.
	MaxRecords int `koanf:"max_records"`
	// WhenFull is "drop" (count the records that do not fit, reason
	// buffer_full) or "block" (back-pressure into the pipeline's queues).
	// Default "drop".
	WhenFull string `koanf:"when_full"`
	// MaxBackoff bounds the wait between retries of a failed insert,
	// which starts at 100ms and doubles. Default 5s.
	MaxBackoff time.Duration `koanf:"max_backoff"`
}

// DefaultBatch and DefaultBuffer are the defaults.
func DefaultBatch() BatchConfig { return BatchConfig{Size: 10000, Interval: time.Second} }

// DefaultBuffer returns the buffer defaults.
func DefaultBuffer() BufferConfig {
	return BufferConfig{MaxRecords: 1_000_000, WhenFull: "drop", MaxBackoff: 5 * time.Second}
}

// Validate reports every problem of the batch and buffer keys.
func Validate(b BatchConfig, f BufferConfig) []error {
	var errs []error
	if b.Size < 1 || b.Size > 10_000_000 {
		errs = append(errs, fmt.Errorf("batch.size: %d is outside 1..10000000", b.Size))
	}
	if b.Interval <= 0 {
		errs = append(errs, fmt.Errorf("batch.interval: %s, want a positive duration", b.Interval))
	}
	if f.MaxRecords < max(b.Size, 1) {
		errs = append(errs, fmt.Errorf("buffer.max_records: %d, want at least batch.size (%d)", f.MaxRecords, b.Size))
	}
	if f.WhenFull != "drop" && f.WhenFull != "block" {
		errs = append(errs, fmt.Errorf("buffer.when_full: %q is not one of drop, block", f.WhenFull))
	}
	if f.MaxBackoff < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("buffer.max_backoff: %s, want at least 100ms", f.MaxBackoff))
	}
	return errs
}
