// Package plugin defines the stage interfaces every Weir plugin implements —
// built-in Go, WASM and RPC alike — and the registry that maps plugin IDs to
// constructors.
//
// A plugin's life is New → Start → Process/Export → Shutdown. The engine
// starts exporters first and stops sources first, so every stage drains into
// a live consumer.
package plugin

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
)

// Config is a plugin's typed configuration. Validate is pure: no I/O, no
// mutation; it returns every problem, joined with errors.Join, each naming
// the key and the value.
type Config interface {
	Validate() error
}

// Checker is implemented by plugin configs that can only be fully checked
// by loading something (a WASM module, an RPC plugin binary). `weir
// validate` and start-up call it after Validate, with the directory that
// relative paths resolve against.
type Checker interface {
	Check(ctx context.Context, baseDir string) error
}

// Component is what every plugin instance implements.
type Component interface {
	// Shutdown stops the component and flushes what it buffers. It is
	// idempotent and safe to call without Start.
	Shutdown(ctx context.Context) error
}

// Source produces records (the "source" stage).
type Source interface {
	Component
	// Start begins producing records into out and returns quickly; the
	// source's goroutines run until Shutdown. ctx carries values only.
	Start(ctx context.Context, out Emitter) error
}

// Finite is implemented by sources that end on their own, such as a capture
// file replay. Done is closed when the source has emitted everything.
type Finite interface {
	Done() <-chan struct{}
}

// Processor transforms batches in place: filters, enrichers, aggregators and
// the proxy. Process may be called from several goroutines at once.
//
// Process may remove records (a counted drop, through [flow.Batch.Retain])
// and modify them; it must not retain b after returning. An error means the
// processor could not handle the batch: the engine counts its records as
// errored and passes the batch on unchanged from that point.
type Processor interface {
	Component
	Start(ctx context.Context) error
	Process(ctx context.Context, b *flow.Batch) error
}

// Concurrent is implemented by processors whose Process mostly waits on
// something outside Weir, such as an out-of-process plugin. InFlight is how
// many batches the processor can work on at once; by default the engine runs
// at least that many workers, so they can all be in it together.
type Concurrent interface {
	InFlight() int
}

// Emitting is implemented by processors that emit records outside Process,
// later than the batch that brought them: an aggregator exporting flows on
// its timeouts, when its table is full, and on Shutdown.
//
// The engine calls SetEmitter once, before Start, with an Emitter whose
// batches run through the processors after this one and then reach the
// exporters. Emit runs those stages in the caller's goroutine and blocks as
// the pipeline does; it returns an error once the processor is shut down.
// The processor may emit from its own goroutines and from Shutdown: the
// engine shuts processors down in chain order, before the exporters, so a
// final flush reaches live exporters.
//
// Records such a processor removes from a batch in Process are counted as
// held (weir_stage_records_held_total), not dropped; the records it emits
// count as its output.
type Emitting interface {
	SetEmitter(out Emitter)
}

// ProtocolSelector is implemented by processors that keep only records of
// some IANA protocols (filter.protocol), so that a source running before
// them can skip building the others; see [Pushdown].
type ProtocolSelector interface {
	// SelectedProtocols returns, by protocol number, the protocols a record
	// may have and still be kept, or all = true when any protocol may be.
	SelectedProtocols() (set [256]bool, all bool)
}

// Pushdown is implemented by sources that can apply some of the selection
// of the processor directly after them. The engine calls PushDown once,
// before Start, with the pipeline's first processor. The source must keep
// every record that processor could keep, since the processor still runs:
// the pipeline's output is the same with or without the push-down.
type Pushdown interface {
	PushDown(next Processor)
}

// Exporter sends records out of Weir. Export is called from one goroutine
// per exporter; b is shared with other exporters and must not be modified
// or retained.
//
// Export returns nil when every record was delivered, a [DroppedError]
// (several joined with errors.Join) when some were dropped for a reason
// and the rest delivered, or another error when the batch failed. An
// exporter that delivers after Export returns implements [Deferred].
type Exporter interface {
	Component
	Start(ctx context.Context) error
	Export(ctx context.Context, b *flow.Batch) error
}

// Emitter is a source's handle to the pipeline.
type Emitter interface {
	// NewBatch returns an empty batch sized for the pipeline.
	NewBatch() *flow.Batch
	// Emit hands b to the pipeline, which owns it from then on. It blocks
	// while the pipeline is full and returns ctx.Err() if ctx ends first.
	// Empty batches are recycled.
	Emit(ctx context.Context, b *flow.Batch) error
	// BatchSize is the pipeline's records-per-batch target; BatchTimeout
	// the longest a source should hold a non-empty batch.
	BatchSize() int
	BatchTimeout() time.Duration
}

// AckEmitter is implemented by an [Emitter] that can tell a source when the
// pipeline is done with a batch, for sources that acknowledge their input
// (a Kafka consumer commits offsets only then: at-least-once).
type AckEmitter interface {
	// EmitAcked is Emit, and calls done once the pipeline has finished with
	// b: every exporter's Export returned for it, or it was filtered empty,
	// or its records were counted as dropped (exporter queue full). done is
	// called at most once, from any goroutine; not at all if EmitAcked
	// returns an error.
	EmitAcked(ctx context.Context, b *flow.Batch, done func()) error
}

// AckExporter is an [Exporter] that still holds records after Export
// returns (a buffer in front of a database) and can tell when they are
// stored. The engine uses it for batches whose source acknowledges its
// input ([AckEmitter]): the source's done then waits for stored, so a
// Kafka offset is committed only once the rows are in the database. Such
// an exporter is usually also [Deferred], which reports the same records'
// fate to the metrics.
type AckExporter interface {
	Exporter
	// ExportAcked is Export, and calls stored once every record of b
	// has been stored or counted as dropped. stored runs exactly once,
	// from any goroutine, also when ExportAcked returns an error. b
	// is not retained, as with Export.
	ExportAcked(ctx context.Context, b *flow.Batch, stored func()) error
}

// Settings is what the engine gives every plugin it builds.
type Settings struct {
	// ID is the plugin ID, e.g. "filter.protocol".
	ID string
	// Name identifies the instance in logs and metrics, e.g.
	// "processors[0].filter.protocol".
	Name string
	// Logger is scoped to the plugin instance. Never nil: the engine, and
	// a constructor called through the registry ([Constructor]), set a
	// discarding logger when there is none.
	Logger *slog.Logger
	// Metrics registers plugin-specific metrics, already labelled with the
	// pipeline and stage. Never nil, as Logger.
	Metrics prometheus.Registerer
	// BatchSize is the pipeline's records-per-batch target.
	BatchSize int
	// BaseDir resolves relative paths in the plugin's config (the directory
	// of the config file; "" for the working directory). Use [Settings.Path].
	BaseDir string
}

// Path resolves p, a path from the plugin's config, against BaseDir: an
// absolute path, "", "-" (stdout/stdin) and any path without a BaseDir
// are returned as they are.
func (s Settings) Path(p string) string {
	if p == "" || p == "-" || filepath.IsAbs(p) || s.BaseDir == "" {
		return p
	}
	return filepath.Join(s.BaseDir, p)
}

// complete fills what Settings guarantees: a Logger, a Metrics registry
// and a BatchSize.
func (s Settings) complete() Settings {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Metrics == nil {
		s.Metrics = prometheus.NewRegistry()
	}
	if s.BatchSize <= 0 {
		s.BatchSize = flow.DefaultBatchSize
	}
	return s
}

// NopSettings returns settings for tests: a discarding logger and a fresh
// metrics registry.
func NopSettings(id string) Settings {
	return Settings{
		ID:        id,
		Name:      id,
		Logger:    slog.New(slog.DiscardHandler),
		Metrics:   prometheus.NewRegistry(),
		BatchSize: flow.DefaultBatchSize,
	}
}
