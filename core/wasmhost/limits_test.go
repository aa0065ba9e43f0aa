package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

func TestBoundTables(t *testing.T) {
	mod := func(table []byte) []byte {
		b := []byte("\x00asm\x01\x00\x00\x00")
		if table != nil {
			b = append(b, 4, byte(len(table)))
			b = append(b, table...)
		}
		return append(b, 0, 3, 1, 'x', 0) // a custom section after it
	}
	for _, tc := range []struct {
		name      string
		table     []byte
		want      []byte
		wantError error
	}{
		{"no table", nil, nil, nil},
		{"min only", []byte{1, 0x70, 0x00, 0x01}, []byte{1, 0x70, 0x01, 0x01, 0x80, 0x08}, nil},                    // max 1024
		{"max above", []byte{1, 0x70, 0x01, 0x02, 0xff, 0xff, 0x03}, []byte{1, 0x70, 0x01, 0x02, 0x80, 0x08}, nil}, // max 65535 → 1024
		{"max below", []byte{1, 0x70, 0x01, 0x02, 0x10}, []byte{1, 0x70, 0x01, 0x02, 0x10}, nil},
		{"starts too large", []byte{1, 0x70, 0x00, 0x81, 0x08}, nil, ErrTableLimit}, // min 1025
		{"truncated", []byte{1, 0x70}, nil, ErrNotWasm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := boundTables(mod(tc.table), 1024)
			if tc.wantError != nil {
				if !errors.Is(err, tc.wantError) {
					t.Fatalf("err %v, want %v", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := mod(tc.want)
			if tc.table == nil {
				want = mod(nil)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got % x\nwant % x", got, want)
			}
		})
	}
}

// growOps are weir_process prefixes that grow the module past its limits
// and trap (unreachable) when the grow fails, as a guest whose allocator
// cannot get memory does.
var growOps = map[string][]byte{
	// memory.grow 64 pages (4 MiB) past a 1 MiB memory_limit.
	"memory": {0x41, 0xc0, 0x00, 0x40, 0x00, 0x41, 0x7f, 0x46, 0x04, 0x40, 0x00, 0x0b},
	// table.grow 2^27 null references (1 GiB of host memory) past
	// table_limit.
	"table": {0xd0, 0x70, 0x41, 0x80, 0x80, 0x80, 0xc0, 0x00, 0xfc, 0x0f, 0x00, 0x41, 0x7f, 0x46, 0x04, 0x40, 0x00, 0x0b},
}

// growSource emits 5 batches of 10 records, then closes Done.
type growSource struct{ done chan struct{} }

func (s *growSource) Start(ctx context.Context, out plugin.Emitter) error {
	defer close(s.done)
	for range 5 {
		if err := out.Emit(ctx, plugintest.MixedBatch(10)); err != nil {
			return err
		}
	}
	return nil
}
func (s *growSource) Shutdown(context.Context) error { return nil }
func (s *growSource) Done() <-chan struct{}          { return s.done }

type growSourceConfig struct{}

func (*growSourceConfig) Validate() error { return nil }

func init() {
	plugin.Register(plugin.Info{ID: "source.test_wasmgrow", NewConfig: func() plugin.Config { return &growSourceConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) {
			return &growSource{done: make(chan struct{})}, nil
		}})
}

// TestGrowPastLimits runs, in the engine, modules that grow linear memory
// past memory_limit and a table past table_limit: the grow fails in the
// module (which traps), the host counts a crash and replaces the instance,
// and the engine applies on_error — every batch passes (fail-open) or is
// dropped and counted (fail-closed). Nothing crashes the process, and the
// host allocates nothing for the refused growth.
func TestGrowPastLimits(t *testing.T) {
	dir := t.TempDir()
	for _, what := range []string{"memory", "table"} {
		var table []byte
		if what == "table" {
			table = []byte{1, 0x70, 0x00, 0x01} // one funcref table, 1 element, no maximum
		}
		path := filepath.Join(dir, what+".wasm")
		if err := os.WriteFile(path, handwrittenModule(growOps[what], table), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, onError := range []string{plugin.FailOpen, plugin.FailClosed} {
			t.Run(what+"/"+onError, func(t *testing.T) {
				var before, after runtimeMem
				before.read()
				cfg, err := config.Parse([]byte(fmt.Sprintf(`
pipeline:
  sources:
    - source.test_wasmgrow: {}
  processors:
    - wasm: {path: %q, memory_limit: 1MiB, table_limit: 4096, instances: 1, cache_dir: "off", on_error: %s}
  exporters:
    - export.test_wasmsink: {}
`, path, onError)), nil)
				if err != nil {
					t.Fatal(err)
				}
				p, err := pipeline.New(context.Background(), cfg, pipeline.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				select {
				case <-p.Done():
				case <-time.After(30 * time.Second):
					t.Fatal("source never finished")
				}
				if err := p.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				after.read()
				var proc, exp pipeline.Snapshot
				for _, s := range p.Stats() {
					switch s.Kind {
					case "processor":
						proc = s
					case "exporter":
						exp = s
					}
				}
				if proc.In != 50 || proc.Errored+proc.ErrorDropped != 50 {
					t.Fatalf("processor in %d, errored %d, error-dropped %d; want every one of 50 records in a failed batch", proc.In, proc.Errored, proc.ErrorDropped)
				}
				switch onError {
				case plugin.FailOpen:
					if proc.ErroredBy[plugin.ReasonCrash] != 50 || exp.In != 50 {
						t.Errorf("errored %v, exporter in %d; want crash 50, 50", proc.ErroredBy, exp.In)
					}
				case plugin.FailClosed:
					if proc.ErrorDropped != 50 || exp.In != 0 {
						t.Errorf("error-dropped %d, exporter in %d; want 50, 0", proc.ErrorDropped, exp.In)
					}
				}
				// The refused growth (4 MiB of memory, 1 GiB of table) was
				// never allocated.
				if grew := int64(after.sys) - int64(before.sys); grew > 256<<20 {
					t.Errorf("the Go runtime's memory grew by %d MiB", grew>>20)
				}
			})
		}
	}
}

type wasmSink struct{}

func (wasmSink) Start(context.Context) error               { return nil }
func (wasmSink) Shutdown(context.Context) error            { return nil }
func (wasmSink) Export(context.Context, *flow.Batch) error { return nil }

func init() {
	plugin.Register(plugin.Info{ID: "export.test_wasmsink", NewConfig: func() plugin.Config { return &growSourceConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) { return wasmSink{}, nil }})
}

// runtimeMem is the Go runtime's view of the process's memory.
type runtimeMem struct{ sys uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.sys = s.Sys
}
