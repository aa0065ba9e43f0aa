package jsonl

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

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

	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	buf    []byte
	enc    Encoder
}

// writeChunk is the most Export buffers before writing.
const writeChunk = 1 << 20

// New returns an exporter; the file is opened by Start.
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	path := cfg.Path
	if path != "-" && !filepath.IsAbs(path) && set.BaseDir != "" {
		path = filepath.Join(set.BaseDir, path)
	}
	return &Exporter{cfg: cfg, path: path, enc: Encoder{Extra: cfg.Extra}}, nil
}

// NewWriter returns an exporter writing to w, for tests and the bench.
func NewWriter(cfg *Config, w io.Writer) *Exporter {
	return &Exporter{cfg: cfg, w: w, enc: Encoder{Extra: cfg.Extra}}
}

// Start opens the output.
func (e *Exporter) Start(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w != nil {
		return nil
	}
	if e.path == "-" {
		e.w = os.Stdout
		return nil
	}
	f, err := os.OpenFile(e.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", e.path, err)
	}
	e.w, e.closer = f, f
	return nil
}

// Export writes b's records, one line each, and returns once they are
// written (see the flush policy in [Exporter]).
func (e *Exporter) Export(_ context.Context, b *flow.Batch) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w == nil {
		return fmt.Errorf("export.jsonl: Export before Start")
	}
	buf := e.buf[:0]
	for _, r := range b.Records {
		buf = e.enc.Append(buf, r)
		buf = append(buf, '\n')
		if len(buf) >= writeChunk {
			if err := e.write(buf); err != nil {
				e.buf = buf[:0]
				return err
			}
			buf = buf[:0]
		}
	}
	err := e.write(buf)
	e.buf = buf[:0]
	return err
}

func (e *Exporter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := e.w.Write(p); err != nil {
		return fmt.Errorf("write %s: %w", e.path, err)
	}
	return nil
}

// Shutdown flushes and closes the output. It is idempotent.
func (e *Exporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	if e.closer != nil {
		if cerr := e.closer.Close(); err == nil {
			err = cerr
		}
		e.closer = nil
	}
	e.w = nil
	return err
}

var _ plugin.Exporter = (*Exporter)(nil)
