package jsonl

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "export.jsonl"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "write one JSON object per record (IANA/Antrea IE names) to a file or stdout",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Exporter writes JSON lines. Export is called from one goroutine; the
// file is written by the exporter's own writer goroutine, started by Start
// and ended by Shutdown.
//
// # Notes
//   - Flush policy: Export encodes its batch into a buffer of whole lines
//     and hands it to the writer, which writes it with one write(2) as
//     soon as its previous write is done. While the file keeps up, every
//     batch is written right after its Export (no timer, no minimum size);
//     when it does not, the batches that arrive during a write join the
//     next one, up to [chunkSize], so writes grow with the load and
//     encoding overlaps writing. Export waits only when a full chunk (five
//     with O_DIRECT) is already waiting: the engine's exporter queue then fills.
//   - With direct_io (O_DIRECT, directFile) only whole aligned blocks are
//     written, gathering the chunks ready meanwhile up to 4 MiB; the last
//     partial block is re-written at its offset by the next write, or
//     appended through the page cache when the writer has nothing else to
//     do (a flush point), so the file always ends at the last line
//     written once the writer idles, and never holds padding.
//   - Records are counted when written (plugin.Deferred): delivered as
//     whole lines, or dropped by reason. ExportAcked's stored runs once the
//     batch's lines are written or dropped (plugin.AckExporter).
//   - Shutdown writes everything handed over before it closes the file.
type Exporter struct {
	cfg  *Config
	path string
	log  *slog.Logger

	// The output. Start sets it; then only the writer uses it, and
	// Shutdown once the writer ended.
	out    io.Writer
	file   *os.File // when writing a regular file: a failed write is cut back to its last whole line
	size   int64    // bytes of the file, as written by us
	opened io.Closer
	direct *directFile // when writing a regular file with O_DIRECT (direct_io)

	outcome plugin.Outcome // set before Start
	enc     Encoder        // Export's

	mu      sync.Mutex
	cond    sync.Cond // on mu: ready taken or set, a chunk spare, closing
	ready   []*chunk  // whole lines waiting for the writer, oldest first
	readyN  int       // how many chunks may wait: 1, or directChunks-1 with O_DIRECT
	spare   []*chunk  // chunks neither being filled, nor ready, nor being written
	started bool
	closing bool // Shutdown began: the writer ends once nothing is ready
	ended   bool // the writer returned
	closed  bool // the output is closed

	wg        sync.WaitGroup
	stop      chan struct{} // closed by Shutdown: retries end
	abandoned atomic.Bool   // Shutdown's deadline passed: what is left is dropped

	written      atomic.Uint64
	writeDropped atomic.Uint64
	shutDropped  atomic.Uint64
	failures     atomic.Uint64
	logs         plugin.LogLimiter
}

// chunk is whole lines on their way to the file, and the ExportAcked
// callbacks of the batches whose last line is in it.
type chunk struct {
	buf   []byte
	lines int
	acks  []func()
}

// chunkSize is the most a chunk gathers before it is handed over; a write
// is at most chunkSize plus one line.
const chunkSize = 1 << 20

// chunks is the number of buffers: one being filled by Export, one ready,
// one being written.
const chunks = 3

const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

var errNotRunning = errors.New("export.jsonl: Export before Start or after Shutdown")

// New returns an exporter; the file is opened by Start.
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	e := newExporter(cfg, set.Path(cfg.Path), set.Logger)
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
		labels     prometheus.Labels
	}{
		{"records_written_total", "Records written as whole lines.", &e.written, nil},
		{"records_dropped_total", "Records not written, by reason: write_error after retry_for of failed writes, shutdown when Shutdown's deadline passed first.", &e.writeDropped, prometheus.Labels{"reason": plugin.DropWriteError}},
		{"records_dropped_total", "Records not written, by reason: write_error after retry_for of failed writes, shutdown when Shutdown's deadline passed first.", &e.shutDropped, prometheus.Labels{"reason": plugin.DropShutdown}},
		{"write_errors_total", "Failed writes (each retry counts).", &e.failures, nil},
	} {
		v := c.v
		if err := set.Metrics.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weir_export_jsonl_" + c.name, Help: c.help, ConstLabels: c.labels,
		}, func() float64 { return float64(v.Load()) })); err != nil {
			return nil, fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return e, nil
}

// NewWriter returns an exporter writing to w, for tests and the bench.
func NewWriter(cfg *Config, w io.Writer) *Exporter {
	e := newExporter(cfg, "", slog.New(slog.DiscardHandler))
	e.out = w
	return e
}

func newExporter(cfg *Config, path string, log *slog.Logger) *Exporter {
	e := &Exporter{cfg: cfg, path: path, log: log, enc: Encoder{Extra: cfg.Extra},
		outcome: plugin.NopOutcome{}, stop: make(chan struct{}), readyN: 1}
	e.cond.L = &e.mu
	for range chunks {
		e.spare = append(e.spare, &chunk{})
	}
	return e
}

// SetOutcome implements plugin.Deferred: records are reported when
// written or dropped. Called before Start.
func (e *Exporter) SetOutcome(o plugin.Outcome) { e.outcome = o }

// Start opens the output and starts the writer. It fails after Shutdown.
func (e *Exporter) Start(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return fmt.Errorf("%s: start after shutdown", ID)
	}
	if e.started {
		return nil
	}
	switch {
	case e.out != nil:
	case e.path == "-":
		e.out = os.Stdout
	default:
		f, err := os.OpenFile(e.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("open %s: %w", e.path, err)
		}
		e.out, e.opened = f, f
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			e.file, e.size = f, st.Size()
		}
		if err := e.openDirect(f); err != nil {
			f.Close()
			return err
		}
	}
	e.started = true
	e.wg.Add(1)
	go e.run()
	return nil
}

// openDirect opens f's file with O_DIRECT as direct_io says, logging why
// not with auto.
func (e *Exporter) openDirect(f *os.File) error {
	mode := e.cfg.DirectIO
	switch {
	case mode == DirectOff || mode == "": // "": a Config built in code, not from DefaultConfig
		return nil
	case e.file == nil:
		if mode == DirectOn {
			return fmt.Errorf("open %s: direct_io on needs a regular file", e.path)
		}
		return nil
	}
	d, err := openDirect(f, e.path, mode)
	switch {
	case err == nil:
		e.direct = d
		for range directChunks - chunks { // Start holds e.mu
			e.spare = append(e.spare, &chunk{})
		}
		e.readyN = directChunks - 1
		e.log.Info("writing with direct I/O (O_DIRECT)", "path", e.path, "block", d.align)
	case mode == DirectOn:
		return fmt.Errorf("open %s: direct_io on: %w", e.path, err)
	default:
		e.log.Info("writing through the page cache (direct_io auto)", "path", e.path, "reason", err)
	}
	return nil
}

// Export encodes b's records, one line each, and hands them to the writer
// (see the flush policy in [Exporter]); they are counted when written.
// It waits only while a full chunk is already waiting for the writer, and
// returns ctx's error, with the records not handed over counted as
// dropped, if ctx ends first.
func (e *Exporter) Export(ctx context.Context, b *flow.Batch) error {
	return e.export(ctx, b, nil)
}

// ExportAcked is Export, and calls stored once b's lines are written or
// counted as dropped (plugin.AckExporter): a Kafka source commits its
// offsets only then.
func (e *Exporter) ExportAcked(ctx context.Context, b *flow.Batch, stored func()) error {
	return e.export(ctx, b, stored)
}

func (e *Exporter) export(ctx context.Context, b *flow.Batch, stored func()) error {
	c, err := e.take(ctx)
	if err != nil {
		if stored != nil {
			stored()
		}
		return err
	}
	before := c.lines // lines of earlier batches in c
	for i, r := range b.Records {
		c.buf = e.enc.Append(c.buf, r)
		c.buf = append(c.buf, '\n')
		c.lines++
		if len(c.buf) >= chunkSize && i < len(b.Records)-1 {
			if err := e.hand(ctx, c); err != nil {
				return e.lost(err, c, before, len(b.Records)-i-1, stored)
			}
			if c, err = e.take(ctx); err != nil {
				return e.lost(err, nil, 0, len(b.Records)-i-1, stored)
			}
			before = 0
		}
	}
	if stored != nil {
		c.acks = append(c.acks, stored)
	}
	if err := e.hand(ctx, c); err != nil {
		if stored != nil {
			c.acks = c.acks[:len(c.acks)-1]
		}
		return e.lost(err, c, before, 0, stored)
	}
	return nil
}

// lost handles an Export that could not hand its lines over (ctx ended,
// or Export ran after Shutdown): c's lines of earlier batches (before) are
// reported dropped, and Export returns the lines of this batch in c and
// the left records it did not encode as dropped (reason shutdown).
func (e *Exporter) lost(err error, c *chunk, before, left int, stored func()) error {
	mine, all := left, left
	if c != nil {
		mine += c.lines - before
		all += c.lines
		if before > 0 {
			e.outcome.Dropped(plugin.DropShutdown, before)
		}
		for _, ack := range c.acks {
			ack()
		}
		e.mu.Lock()
		c.reset()
		e.spare = append(e.spare, c)
		e.mu.Unlock()
	}
	e.shutDropped.Add(uint64(all))
	if stored != nil {
		// Lines of this batch handed over earlier are written in order
		// before the ready chunk: ack with it, or now if nothing waits.
		e.mu.Lock()
		if n := len(e.ready); n > 0 && !e.ended {
			r := e.ready[n-1]
			r.acks = append(r.acks, stored)
			stored = nil
		}
		e.mu.Unlock()
		if stored != nil {
			stored()
		}
	}
	e.logLimited("records dropped: not handed to the writer", "path", e.path, "records", mine, "err", err)
	return plugin.Dropped(plugin.DropShutdown, mine, fmt.Errorf("write %s: %w", e.path, err))
}

// take returns the chunk Export fills: the last ready one when it has room
// (the writer has not taken it yet), else a spare one, waiting for the
// writer to free one.
func (e *Exporter) take(ctx context.Context) (*chunk, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started || e.closing {
		return nil, errNotRunning
	}
	if n := len(e.ready); n > 0 && len(e.ready[n-1].buf) < chunkSize {
		c := e.ready[n-1]
		e.ready = e.ready[:n-1]
		return c, nil
	}
	if err := e.wait(ctx, func() bool { return len(e.spare) > 0 }); err != nil {
		return nil, err
	}
	c := e.spare[len(e.spare)-1]
	e.spare = e.spare[:len(e.spare)-1]
	if c.buf == nil {
		c.buf = make([]byte, 0, chunkSize+chunkSize/4) // a chunk and a batch's last lines
	}
	return c, nil
}

// nextReady takes the oldest ready chunk (e.mu held, one is ready).
func (e *Exporter) nextReady() *chunk {
	c := e.ready[0]
	e.ready = e.ready[:copy(e.ready, e.ready[1:])]
	e.cond.Broadcast()
	return c
}

// hand makes c a ready chunk, waiting while readyN chunks already wait
// for the writer; it fails if ctx ends first or the writer has ended.
func (e *Exporter) hand(ctx context.Context, c *chunk) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.wait(ctx, func() bool { return len(e.ready) < e.readyN || e.ended })
	if err == nil && e.ended {
		err = errNotRunning
	}
	if err != nil {
		return err
	}
	e.ready = append(e.ready, c)
	e.cond.Broadcast()
	return nil
}

// wait waits, with e.mu held, until ok() or ctx ends.
func (e *Exporter) wait(ctx context.Context, ok func() bool) error {
	if ok() {
		return nil
	}
	if ctx.Done() != nil { // the engine's Background context never ends: no allocation then
		stop := context.AfterFunc(ctx, func() {
			e.mu.Lock()
			e.cond.Broadcast()
			e.mu.Unlock()
		})
		defer stop()
	}
	for !ok() {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.cond.Wait()
	}
	return nil
}

func (c *chunk) reset() {
	c.buf, c.lines = c.buf[:0], 0
	clear(c.acks)
	c.acks = c.acks[:0]
}

// run is the writer: it writes the ready chunk whenever there is one,
// until Shutdown and nothing is left.
func (e *Exporter) run() {
	defer e.wg.Done()
	if e.direct != nil {
		defer e.direct.release()
	}
	e.mu.Lock()
	for {
		for len(e.ready) == 0 && !e.closing {
			if e.direct != nil && e.direct.unwritten() { // a flush point
				e.mu.Unlock()
				e.flushTail()
				e.mu.Lock()
				continue
			}
			e.cond.Wait()
		}
		if len(e.ready) == 0 {
			break
		}
		c := e.nextReady()
		e.mu.Unlock()

		e.flush(c)

		e.mu.Lock()
		c.reset()
		e.spare = append(e.spare, c)
		e.cond.Broadcast()
	}
	if e.direct != nil && e.direct.unwritten() {
		e.mu.Unlock()
		e.flushTail()
		e.mu.Lock()
	}
	e.ended = true
	e.cond.Broadcast()
	e.mu.Unlock()
}

// flush writes c (or drops it when Shutdown's deadline passed), reports
// its records, and runs its acks.
func (e *Exporter) flush(c *chunk) {
	if e.direct != nil {
		e.flushDirect(c)
		return
	}
	if e.abandoned.Load() {
		e.dropChunk(c)
		return
	}
	if n, err := e.write(c.buf, c.lines); err != nil {
		lost := c.lines - n
		e.writeDropped.Add(uint64(lost))
		e.outcome.Dropped(plugin.DropWriteError, lost)
		e.logLimited("records dropped: write failed", "path", e.path, "records", lost, "err", err)
	}
	for _, ack := range c.acks {
		ack()
	}
}

// dropChunk drops c's lines (Shutdown's deadline passed) and runs its
// acks.
func (e *Exporter) dropChunk(c *chunk) {
	e.shutDropped.Add(uint64(c.lines))
	e.outcome.Dropped(plugin.DropShutdown, c.lines)
	e.logLimited("records dropped: shutdown deadline passed", "path", e.path, "records", c.lines)
	for _, ack := range c.acks {
		ack()
	}
}

// write writes p, which holds lines whole lines, with one write(2) when
// it can, reports the lines written, and returns how many. A failed write
// keeps the whole lines written, cuts the partial one (regular files) and
// retries the rest with back-off (100 ms doubling to 5 s) until retry_for
// after the first failure, or Shutdown.
func (e *Exporter) write(p []byte, lines int) (int, error) {
	if len(p) == 0 {
		return lines, nil
	}
	done := 0
	var deadline time.Time
	wait := minRetry
	for {
		n, err := e.out.Write(p)
		if err == nil {
			e.size += int64(n)
			e.written.Add(uint64(lines - done))
			e.outcome.Delivered(lines - done)
			return lines, nil
		}
		e.failures.Add(1)
		// Keep the whole lines written, cut the partial one.
		whole := bytes.LastIndexByte(p[:n], '\n') + 1
		if e.file != nil && whole < n {
			if terr := e.file.Truncate(e.size + int64(whole)); terr != nil {
				err = fmt.Errorf("%w (and cutting the partial line: %v)", err, terr)
			}
		}
		e.size += int64(whole)
		if k := bytes.Count(p[:whole], []byte{'\n'}); k > 0 {
			e.written.Add(uint64(k))
			e.outcome.Delivered(k)
			done += k
		}
		p = p[whole:]
		if deadline.IsZero() {
			deadline = time.Now().Add(e.cfg.RetryFor)
		}
		if e.file == nil || time.Now().Add(wait).After(deadline) || !e.sleep(wait) {
			return done, err
		}
		e.logLimited("write failed, retrying", "path", e.path, "records_left", lines-done, "retry_in", wait.String(), "err", err)
		wait = min(2*wait, maxRetry)
	}
}

// sleep waits d unless Shutdown starts; it reports whether it waited the
// whole time.
func (e *Exporter) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-e.stop:
		return false
	}
}

func (e *Exporter) logLimited(msg string, args ...any) {
	if suppressed, ok := e.logs.Allow(time.Now()); ok {
		e.log.Warn(msg, append(args, "suppressed", suppressed)...)
	}
}

// Shutdown writes what Export handed over, ends the writer and closes the
// output. A failing write is not retried any more; if ctx ends first, the
// chunks not yet written are dropped and counted (reason shutdown) after
// the write in progress, and ctx's error is returned. It is idempotent.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if !e.closing {
		e.closing = true
		close(e.stop)
		e.cond.Broadcast()
	}
	e.mu.Unlock()
	err := plugin.AwaitShutdown(ctx, &e.wg, func() { e.abandoned.Store(true) })
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed && e.opened != nil {
		e.closed = true
		if e.direct != nil {
			if cerr := e.direct.close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("close %s (O_DIRECT): %w", e.path, cerr))
			}
		}
		if cerr := e.opened.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close %s: %w", e.path, cerr))
		}
	}
	return err
}

var (
	_ plugin.Exporter    = (*Exporter)(nil)
	_ plugin.AckExporter = (*Exporter)(nil)
	_ plugin.Deferred    = (*Exporter)(nil)
)
