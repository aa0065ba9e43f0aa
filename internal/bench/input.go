package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// Input is the records a benchmark feeds, held in memory. Runs never
// modify it: every batch fed is a copy.
type Input struct {
	// Name describes the input in reports, e.g. "synthetic flows=…
	// seed=1" or "capture.pcap".
	Name string
	// Batch holds the records, deep copies owned by the Input.
	Batch *flow.Batch
}

// Len returns the number of records.
func (in *Input) Len() int { return in.Batch.Len() }

// ErrEmptyInput is returned when an input holds no record.
var ErrEmptyInput = errors.New("input has no records")

// CaptureSource is the plugin ID ReadCapture replays a capture with.
const CaptureSource = "source.pcap"

// ReadCapture decodes the IPFIX messages of a pcap or pcapng file into an
// Input by running the registered source.pcap plugin at full speed (so it
// reads captures exactly as `weir run` does). The plugin must be
// registered (import plugins/all or plugins/source/pcap).
func ReadCapture(ctx context.Context, path string) (*Input, error) {
	info, ok := plugin.Lookup(CaptureSource)
	if !ok {
		return nil, fmt.Errorf("read capture %s: plugin %s is not registered", path, CaptureSource)
	}
	// Decode the plugin's config the way a config file would, so this code
	// needs no import of the plugin.
	doc, err := json.Marshal(map[string]any{"pipeline": map[string]any{
		"sources": []any{map[string]any{CaptureSource: map[string]any{"path": path}}},
	}})
	if err != nil {
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	cfg, err := config.Parse(doc, nil)
	if err != nil {
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	comp, err := info.New(cfg.Pipeline.Sources[0].Config, plugin.Settings{
		ID: CaptureSource, Name: "input." + CaptureSource,
		Logger:    slog.New(slog.DiscardHandler),
		Metrics:   prometheus.NewRegistry(),
		BatchSize: flow.DefaultBatchSize,
	})
	if err != nil {
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	src, ok := comp.(plugin.Source)
	fin, finite := comp.(plugin.Finite)
	if !ok || !finite {
		_ = comp.Shutdown(ctx)
		return nil, fmt.Errorf("read capture %s: %s is not a finite source", path, CaptureSource)
	}
	col := &collector{all: flow.NewBatch(1024)}
	if err := src.Start(ctx, col); err != nil {
		_ = src.Shutdown(ctx)
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	select {
	case <-fin.Done():
	case <-ctx.Done():
	}
	if err := src.Shutdown(ctx); err != nil {
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	if col.all.Len() == 0 {
		return nil, fmt.Errorf("read capture %s: %w", path, ErrEmptyInput)
	}
	return &Input{Name: path, Batch: col.all}, nil
}

// collector is the emitter ReadCapture hands the source: it deep-copies
// every emitted record into one batch.
type collector struct {
	mu  sync.Mutex
	all *flow.Batch
}

func (c *collector) NewBatch() *flow.Batch       { return flow.NewBatch(flow.DefaultBatchSize) }
func (c *collector) BatchSize() int              { return flow.DefaultBatchSize }
func (c *collector) BatchTimeout() time.Duration { return time.Second }

func (c *collector) Emit(_ context.Context, b *flow.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range b.Records {
		c.all.Append().CopyFrom(r, c.all)
	}
	return nil
}

// feeder refills batches with copies of the input's records, cycling
// through them.
type feeder struct {
	in  *flow.Batch
	pos int
}

// fill resets b and copies the next n records into it. Copies reuse b's
// record slots and arena, so a warm feeder does not allocate.
func (f *feeder) fill(b *flow.Batch, n int) {
	b.Reset()
	recs := f.in.Records
	for range n {
		b.Append().CopyFrom(recs[f.pos], b)
		f.pos++
		if f.pos == len(recs) {
			f.pos = 0
		}
	}
}

var _ plugin.Emitter = (*collector)(nil)
