package jsonl

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
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
type Exporter struct {
	cfg  *Config
	path string
	log  *slog.Logger

	mu     sync.Mutex
	out    io.Writer
	file   *os.File // when writing a regular file: a failed write is cut back to its last whole line
	size   int64    // bytes of the file, as written by us
	buf    []byte
	starts []int         // offset in buf where each record's line starts
	opened io.Closer     // the file Start opened
	stop   chan struct{} // closed by Shutdown: retries end

	written  atomic.Uint64
	dropped  atomic.Uint64
	failures atomic.Uint64
	lastLog  time.Time
}

const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

// New returns an exporter; the file is opened by Start.
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	path := cfg.Path
	if path != "-" && !filepath.IsAbs(path) && set.BaseDir != "" {
		path = filepath.Join(set.BaseDir, path)
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{cfg: cfg, path: path, log: log, stop: make(chan struct{})}
	if set.Metrics != nil {
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
	}
	return e, nil
}

// NewWriter returns an exporter writing to w, for tests and the bench.
func NewWriter(cfg *Config, w io.Writer) *Exporter {
	return &Exporter{cfg: cfg, out: w, log: slog.New(slog.DiscardHandler), stop: make(chan struct{})}
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

// Export writes b's records, one whole line each, in one write when it
// can. A failed write (a full disk) leaves no partial line behind in a
// regular file: the file is cut back to its last whole line and the rest
// retried with back-off for up to retry_for, while ctx allows; then the
// unwritten records are dropped, counted and logged, and Export returns
// the error. The next batch starts afresh, so writing resumes as soon as
// space is freed.
func (e *Exporter) Export(ctx context.Context, b *flow.Batch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.out == nil {
		return fmt.Errorf("export.jsonl: Export before Start")
	}
	e.buf, e.starts = e.buf[:0], e.starts[:0]
	for _, r := range b.Records {
		e.starts = append(e.starts, len(e.buf))
		e.buf = AppendRecord(e.buf, r, e.cfg.Extra)
		e.buf = append(e.buf, '\n')
	}
	pending, done := e.buf, 0 // bytes and records still to write
	var deadline time.Time
	wait := minRetry
	for {
		n, err := e.out.Write(pending)
		if err == nil {
			e.size += int64(n)
			e.written.Add(uint64(len(b.Records) - done))
			return nil
		}
		e.failures.Add(1)
		// Keep the whole lines written, cut the partial one.
		whole := bytes.LastIndexByte(pending[:n], '\n') + 1
		if e.file != nil && whole < n {
			if terr := e.file.Truncate(e.size + int64(whole)); terr != nil {
				err = fmt.Errorf("%w (and cutting the partial line: %v)", err, terr)
			}
		}
		e.size += int64(whole)
		lines := bytes.Count(pending[:whole], []byte{'\n'})
		e.written.Add(uint64(lines))
		done += lines
		pending = pending[whole:]
		if deadline.IsZero() {
			deadline = time.Now().Add(e.cfg.RetryFor)
		}
		if e.file == nil || time.Now().Add(wait).After(deadline) || !e.sleep(ctx, wait) {
			lost := len(b.Records) - done
			e.dropped.Add(uint64(lost))
			e.logLimited("records dropped: write failed", "path", e.path, "records", lost, "err", err)
			return fmt.Errorf("write %s: %d of %d records dropped: %w", e.path, lost, len(b.Records), err)
		}
		e.logLimited("write failed, retrying", "path", e.path, "records_left", len(b.Records)-done, "retry_in", wait.String(), "err", err)
		wait = min(2*wait, maxRetry)
	}
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
	if now := time.Now(); now.Sub(e.lastLog) >= time.Second {
		e.lastLog = now
		e.log.Warn(msg, args...)
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

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendRecord appends r as one JSON object (no newline) to dst: the
// exporter's address and observation domain, the present typed fields, and,
// if extra is set, the verbatim IEs.
func AppendRecord(dst []byte, r *flow.Record, extra bool) []byte {
	dst = append(dst, '{')
	first := true
	key := func(name string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
	}
	if a := r.Exporter.Addr(); a.IsValid() {
		a = a.Unmap()
		if a.Is4() {
			key("exporterIPv4Address")
		} else {
			key("exporterIPv6Address")
		}
		dst = strconv.AppendQuote(dst, a.String())
		key("exporterTransportPort")
		dst = strconv.AppendUint(dst, uint64(r.Exporter.Port()), 10)
	}
	key("observationDomainId")
	dst = strconv.AppendUint(dst, uint64(r.ObservationDomainID), 10)
	present := r.PresentSet()
	for id, ok := present.Next(0); ok; id, ok = present.Next(id + 1) {
		f := &flow.Fields[id]
		switch f.Kind {
		case flow.KindAddress:
			a := r.Addr(f.ID)
			if !a.IsValid() {
				continue
			}
			if a.Unmap().Is4() {
				key(f.Name)
				a = a.Unmap()
			} else {
				key(f.Name6)
			}
			dst = append(dst, '"')
			dst = a.AppendTo(dst)
			dst = append(dst, '"')
		case flow.KindString:
			key(f.Name)
			dst = appendString(dst, r.String(f.ID))
		case flow.KindTime:
			key(f.Name)
			dst = append(dst, '"')
			dst = time.Unix(0, int64(r.Uint(f.ID))).UTC().AppendFormat(dst, timeLayout)
			dst = append(dst, '"')
		default:
			key(f.Name)
			dst = strconv.AppendUint(dst, r.Uint(f.ID), 10)
		}
	}
	if extra {
		for i := range r.Extra {
			x := &r.Extra[i]
			info, ok := ipfix.LookupIE(x.Key())
			if !ok {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				dst = fmt.Appendf(dst, `"ie%d_%d":"`, x.Enterprise, x.Element)
				dst = hex.AppendEncode(dst, x.Value)
				dst = append(dst, '"')
				continue
			}
			key(info.Name)
			dst = appendValue(dst, ipfix.FormatValue(info.Type, x.Value))
		}
	}
	return append(dst, '}')
}

func appendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(dst, v)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case float64:
		return strconv.AppendFloat(dst, v, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(dst, v)
	case nil:
		return append(dst, "null"...)
	default:
		return appendString(dst, fmt.Sprint(v))
	}
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\r':
				dst = append(dst, '\\', 'r')
			default:
				dst = fmt.Appendf(dst, `\u%04x`, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

var _ plugin.Exporter = (*Exporter)(nil)
