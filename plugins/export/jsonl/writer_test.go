package jsonl

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

// exportWait exports b and waits until its lines are written or dropped
// (ExportAcked's stored).
func exportWait(ctx context.Context, e *Exporter, b *flow.Batch) error {
	stored := make(chan struct{})
	var once sync.Once
	err := e.ExportAcked(ctx, b, func() { once.Do(func() { close(stored) }) })
	<-stored
	return err
}

// gate is a writer that records each write and blocks while it is shut.
type gate struct {
	mu     sync.Mutex
	open   chan struct{} // closed: writes go through
	data   bytes.Buffer
	writes []int
	held   chan struct{} // receives when a write starts waiting
}

func newGate(open bool) *gate {
	g := &gate{open: make(chan struct{}), held: make(chan struct{}, 100)}
	if open {
		close(g.open)
	}
	return g
}

func (g *gate) Write(p []byte) (int, error) {
	select {
	case <-g.open:
	default:
		g.held <- struct{}{}
		<-g.open
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes = append(g.writes, len(p))
	return g.data.Write(p)
}

func (g *gate) lines(t *testing.T) []string {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.data.String()
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n") {
		t.Fatalf("output ends mid-line: %q", s[max(0, len(s)-40):])
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// TestFlushPolicy checks that a batch's lines are in the output once its
// ExportAcked reports them stored, without Shutdown or a timer, and that
// the engine hears of them only then (plugin.Deferred).
func TestFlushPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	e, err := New(&Config{Path: path}, plugin.NopSettings(ID))
	if err != nil {
		t.Fatal(err)
	}
	var out plugintest.Outcome
	e.SetOutcome(&out)
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(ctx)
	for i := range 5 {
		if err := exportWait(ctx, e, diskBatch(100*i, 7)); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(data, []byte{'\n'}); n != 7*(i+1) {
			t.Fatalf("after batch %d the file has %d lines, want %d", i, n, 7*(i+1))
		}
		if d, _ := out.Counts(); d != 7*(i+1) {
			t.Fatalf("after batch %d: %d delivered, want %d", i, d, 7*(i+1))
		}
	}
}

// TestWriterGathersBatches holds the writer in a write while Export goes
// on: the batches that arrive meanwhile are gathered into writes of at
// most a chunk, the exporter waits (backpressure) instead of buffering
// more, and Shutdown writes everything, in order.
func TestWriterGathersBatches(t *testing.T) {
	g := newGate(false)
	e := NewWriter(DefaultConfig(), g)
	var out plugintest.Outcome
	e.SetOutcome(&out)
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const batches, per = 200, 100
	exported := make(chan error, 1)
	go func() {
		var err error
		for i := range batches {
			err = errors.Join(err, e.Export(ctx, diskBatch(i*per, per)))
		}
		exported <- err
	}()
	<-g.held // the first write waits; Export fills the other chunks, then waits
	for {
		e.mu.Lock()
		full := len(e.ready) == 1 && len(e.ready[0].buf) >= chunkSize && len(e.spare) == 0
		e.mu.Unlock()
		if full {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(g.open)
	if err := <-exported; err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	lines := g.lines(t)
	if len(lines) != batches*per {
		t.Fatalf("%d lines, want %d", len(lines), batches*per)
	}
	for i, l := range lines {
		if want := `"sourceTransportPort":` + itoa(i) + ","; !strings.Contains(l, want) {
			t.Fatalf("line %d is %s, want %s in it", i, l, want)
		}
	}
	line := len(lines[len(lines)-1]) + 1
	big := 0
	for _, n := range g.writes {
		if n > chunkSize+line {
			t.Errorf("a write of %d bytes, want at most a chunk (%d) and a line", n, chunkSize)
		}
		if n > 10*per*line {
			big++
		}
	}
	if big == 0 {
		t.Errorf("writes %v: none gathered more than 10 batches", g.writes)
	}
	if d, w := out.Counts(); d != batches*per || len(w) != 0 {
		t.Errorf("outcome: delivered %d, dropped %v; want %d, none", d, w, batches*per)
	}
}

// TestShutdownDeadline: when Shutdown's ctx ends while the writer is held
// in a write, the chunks not yet written are dropped (reason shutdown) and
// counted, the write in progress completes, and nothing is counted twice.
func TestShutdownDeadline(t *testing.T) {
	g := newGate(false)
	e := NewWriter(DefaultConfig(), g)
	var out plugintest.Outcome
	e.SetOutcome(&out)
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Export(ctx, diskBatch(0, 10)); err != nil {
		t.Fatal(err)
	}
	<-g.held
	if err := e.Export(ctx, diskBatch(10, 20)); err != nil { // ready, behind the held write
		t.Fatal(err)
	}
	expired, cancel := context.WithCancel(ctx)
	cancel()
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(expired) }()
	// Shutdown has flagged the rest abandoned before it waits for the
	// writer; let the held write finish only once it is waiting.
	for !e.abandoned.Load() {
		runtime.Gosched()
	}
	close(g.open)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	if n := len(g.lines(t)); n != 10 {
		t.Errorf("%d lines written, want the 10 of the held write", n)
	}
	if d, w := out.Counts(); d != 10 || len(w) != 1 || w[plugin.DropShutdown] != 20 {
		t.Errorf("outcome: delivered %d, dropped %v; want 10 and shutdown 20", d, w)
	}
	if got := e.shutDropped.Load(); got != 20 {
		t.Errorf("shutdown drops counted %d, want 20", got)
	}
}

// TestExportAfterShutdown: the batch fails, its stored callback runs once.
func TestExportAfterShutdown(t *testing.T) {
	e := NewWriter(DefaultConfig(), newGate(true))
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := e.ExportAcked(ctx, plugintest.MixedBatch(3), func() { calls++ }); err == nil {
		t.Error("Export after Shutdown succeeded")
	}
	if calls != 1 {
		t.Errorf("stored called %d times, want 1", calls)
	}
	if err := e.Start(ctx); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

func itoa(i int) string { return string(putUint(make([]byte, 0, 24), uint64(i))) }

// TestBatchLargerThanChunk: a batch of more than a chunk is handed over in
// several writes, each at most a chunk and a line, and its stored
// callback runs only once all of them are written.
func TestBatchLargerThanChunk(t *testing.T) {
	g := newGate(true)
	e := NewWriter(DefaultConfig(), g)
	var out plugintest.Outcome
	e.SetOutcome(&out)
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(ctx)
	const n = 12000 // about 3 MB of lines
	if err := exportWait(ctx, e, diskBatch(0, n)); err != nil {
		t.Fatal(err)
	}
	lines := g.lines(t)
	if len(lines) != n {
		t.Fatalf("%d lines when stored ran, want %d", len(lines), n)
	}
	g.mu.Lock()
	writes := append([]int(nil), g.writes...)
	g.mu.Unlock()
	if len(writes) < 3 {
		t.Errorf("writes %v, want the batch split into chunks", writes)
	}
	longest := 0
	for _, l := range lines {
		longest = max(longest, len(l)+1)
	}
	for _, w := range writes {
		if w > chunkSize+longest {
			t.Errorf("a write of %d bytes, want at most a chunk and a line", w)
		}
	}
	if d, _ := out.Counts(); d != n {
		t.Errorf("delivered %d, want %d", d, n)
	}
}
