package jsonl

import (
	"bytes"
	"context"
	_ "embed"
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

// Exporter writes JSON lines. Export is called from one goroutine.
//
// # Notes
//   - Flush policy: Export encodes its batch into one buffer and writes it
//     with one write(2) (one per [writeChunk] bytes for very large
//     batches), whole lines only, before it returns. Nothing is held
//     between batches, so a reader of the file sees every record of a
//     batch once Export returned, and a crash loses no written batch.
//   - A batch of 256 Antrea-like records is about 150 KB: large enough for
//     sequential disk bandwidth, small enough to stay in the CPU caches.
type Exporter struct {
	cfg  *Config
	path string
	log  *slog.Logger

	mu     sync.Mutex
	out    io.Writer
	file   *os.File // when writing a regular file: a failed write is cut back to its last whole line
	size   int64    // bytes of the file, as written by us
	buf    []byte
	enc    Encoder
	opened io.Closer     // the file Start opened
	stop   chan struct{} // closed by Shutdown: retries end

	written  atomic.Uint64
	dropped  atomic.Uint64
	failures atomic.Uint64
	logs     plugin.LogLimiter
}

// writeChunk is the most Export buffers before writing.
const writeChunk = 1 << 20

const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

// New returns an exporter; the file is opened by Start.
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	e := &Exporter{cfg: cfg, path: set.Path(cfg.Path), log: set.Logger, enc: Encoder{Extra: cfg.Extra}, stop: make(chan struct{})}
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
		labels     prometheus.Labels
	}{
		{"records_written_total", "Records written as whole lines.", &e.written, nil},
		{"records_dropped_total", "Records dropped after retry_for of failed writes, by reason.", &e.dropped, prometheus.Labels{"reason": "write_error"}},
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
	return &Exporter{cfg: cfg, out: w, log: slog.New(slog.DiscardHandler), enc: Encoder{Extra: cfg.Extra}, stop: make(chan struct{})}
}

// Start opens the output.
func (e *Exporter) Start(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.out != nil {
		return nil
	}
	if e.path == "-" {
		e.out = os.Stdout
		return nil
	}
	f, err := os.OpenFile(e.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", e.path, err)
	}
	e.out, e.opened = f, f
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		e.file, e.size = f, st.Size()
	}
	return nil
}

// Export writes b's records, one whole line each, and returns once they
// are written (see the flush policy in [Exporter]). A failed write (a full
// disk) leaves no partial line behind in a regular file: the file is cut
// back to its last whole line and the rest retried with back-off for up to
// retry_for (over the whole batch), while ctx allows; then the batch's
// unwritten records are dropped, counted and logged, and Export returns
// them as a plugin.DroppedError (reason write_error), so the engine counts
// them dropped and the written ones out. The next batch starts afresh, so writing resumes as soon as
// space is freed.
func (e *Exporter) Export(ctx context.Context, b *flow.Batch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.out == nil {
		return fmt.Errorf("export.jsonl: Export before Start")
	}
	var rs retryState
	buf, lines, done := e.buf[:0], 0, 0
	defer func() { e.buf = buf[:0] }()
	for _, r := range b.Records {
		buf = e.enc.Append(buf, r)
		buf = append(buf, '\n')
		lines++
		if len(buf) >= writeChunk {
			n, err := e.write(ctx, &rs, buf, lines)
			done += n
			if err != nil {
				return e.drop(len(b.Records)-done, len(b.Records), err)
			}
			buf, lines = buf[:0], 0
		}
	}
	n, err := e.write(ctx, &rs, buf, lines)
	done += n
	if err != nil {
		return e.drop(len(b.Records)-done, len(b.Records), err)
	}
	return nil
}

// retryState is the back-off of one Export: retry_for runs from its first
// failed write.
type retryState struct {
	deadline time.Time
	wait     time.Duration
}

// write writes p, which holds lines whole lines, with one write(2) when
// it can, and returns how many of them are written. A failed write keeps
// the whole lines written, cuts the partial one (regular files) and
// retries the rest until rs's deadline, ctx or Shutdown.
func (e *Exporter) write(ctx context.Context, rs *retryState, p []byte, lines int) (int, error) {
	done := 0
	for len(p) > 0 {
		n, err := e.out.Write(p)
		if err == nil {
			e.size += int64(n)
			e.written.Add(uint64(lines - done))
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
		k := bytes.Count(p[:whole], []byte{'\n'})
		e.written.Add(uint64(k))
		done += k
		p = p[whole:]
		if rs.deadline.IsZero() {
			rs.deadline, rs.wait = time.Now().Add(e.cfg.RetryFor), minRetry
		}
		if e.file == nil || time.Now().Add(rs.wait).After(rs.deadline) || !e.sleep(ctx, rs.wait) {
			return done, err
		}
		e.logLimited("write failed, retrying", "path", e.path, "records_left", lines-done, "retry_in", rs.wait.String(), "err", err)
		rs.wait = min(2*rs.wait, maxRetry)
	}
	return done, nil
}

// drop counts and logs the lost records of a batch of total whose write
// failed for good.
func (e *Exporter) drop(lost, total int, err error) error {
	e.dropped.Add(uint64(lost))
	e.logLimited("records dropped: write failed", "path", e.path, "records", lost, "err", err)
	return plugin.Dropped(plugin.DropWriteError, lost, fmt.Errorf("write %s: %d of %d records dropped: %w", e.path, lost, total, err))
}

// sleep waits d unless ctx ends or Shutdown starts; it reports whether it
// waited the whole time.
func (e *Exporter) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-e.stop:
	}
	return false
}

func (e *Exporter) logLimited(msg string, args ...any) {
	if suppressed, ok := e.logs.Allow(time.Now()); ok {
		e.log.Warn(msg, append(args, "suppressed", suppressed)...)
	}
}

// Shutdown closes the output (nothing is buffered between batches) and
// ends a running Export's retries. It is idempotent.
func (e *Exporter) Shutdown(context.Context) error {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	if e.opened != nil {
		err = e.opened.Close()
		e.opened, e.out, e.file = nil, nil, nil
	}
	return err
}

var _ plugin.Exporter = (*Exporter)(nil)
