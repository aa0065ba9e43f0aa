package sinkbuf

import (
	"context"
	"fmt"
	"sync"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// SinkOptions configure a Sink: the exporter's ID (for errors), its
// batch and buffer settings, and the two calls into its database client.
type SinkOptions struct {
	ID     string // plugin ID, e.g. "export.postgres"
	Name   string // metric infix, see [Options.Name]
	Batch  BatchConfig
	Buffer BufferConfig
	// Write inserts rows, from the buffer's one writer goroutine.
	Write func(ctx context.Context, rows []flow.Record) error
	// Close closes the client after the last Write; it may be nil.
	Close func()
}

// Sink is the plugin.Exporter half the database exporters share: Export
// feeds the buffer, Start starts its writer (which connects on its first
// batch, so a server that is down at start costs retries, not the
// pipeline), Shutdown flushes and closes. Embed it and add the client.
type Sink struct {
	id    string
	buf   *Buffer
	close func()

	mu      sync.Mutex
	started bool
	stopped bool
}

// NewSink builds the buffer and registers its metrics with set.Metrics;
// nothing connects before Start.
func NewSink(o SinkOptions, set plugin.Settings) (*Sink, error) {
	buf, err := New(Options{
		Name:          o.Name,
		BatchSize:     o.Batch.Size,
		BatchInterval: o.Batch.Interval,
		MaxRecords:    o.Buffer.MaxRecords,
		Block:         o.Buffer.WhenFull == "block",
		MaxBackoff:    o.Buffer.MaxBackoff,
		Write:         o.Write,
		Logger:        set.Logger,
	}, set.Metrics)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.ID, err)
	}
	return &Sink{id: o.ID, buf: buf, close: o.Close}, nil
}

// Start starts the writer. It fails after Shutdown.
func (s *Sink) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("%s: start after shutdown", s.id)
	}
	if !s.started {
		s.started = true
		s.buf.Start()
	}
	return nil
}

// Export copies b's records into the buffer (see [Buffer.Add]).
func (s *Sink) Export(ctx context.Context, b *flow.Batch) error {
	return s.buf.Add(ctx, b.Records)
}

// ExportAcked implements plugin.AckExporter: stored runs once b's
// records have left the buffer (see [Buffer.AddAcked]).
func (s *Sink) ExportAcked(ctx context.Context, b *flow.Batch, stored func()) error {
	return s.buf.AddAcked(ctx, b.Records, stored)
}

// SetOutcome implements plugin.Deferred: the engine counts a record out
// when its insert succeeds, dropped when the buffer drops it.
func (s *Sink) SetOutcome(o plugin.Outcome) { s.buf.SetOutcome(o) }

// Buffer returns the sink's buffer, for tests and benchmarks.
func (s *Sink) Buffer() *Buffer { return s.buf }

// Shutdown writes what is buffered (until ctx ends; the rest is counted,
// reason shutdown), then closes the client. It is idempotent.
func (s *Sink) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	err := s.buf.Close(ctx)
	if s.close != nil {
		s.close()
	}
	if err != nil {
		return fmt.Errorf("%s: flush on shutdown: %w", s.id, err)
	}
	return nil
}
