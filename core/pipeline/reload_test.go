package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

// stream emits records with octetDeltaCount 0, 1, 2, ... until Shutdown;
// sent is how many it emitted.
type stream struct {
	sent   atomic.Uint64
	stop   chan struct{}
	wg     sync.WaitGroup
	starts atomic.Int32
}

func (s *stream) Start(ctx context.Context, out plugin.Emitter) error {
	s.starts.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			b := out.NewBatch()
			for range 7 {
				plugintest.Record(b, "10.0.0.1", "10.0.0.2", 17, 1, 53, 1, s.sent.Load()+uint64(b.Len()))
			}
			n := uint64(b.Len())
			if err := out.Emit(ctx, b); err != nil {
				return
			}
			s.sent.Add(n)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	return nil
}

func (s *stream) Shutdown(context.Context) error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
	return nil
}

type tagConfig struct {
	Tag  int    `koanf:"tag"`
	Fail bool   `koanf:"fail"`
	File string `koanf:"file"` // stands for a WASM module or RPC binary
}

func (tagConfig) Validate() error { return nil }

func (c *tagConfig) Files(string) []string {
	if c.File == "" {
		return nil
	}
	return []string{c.File}
}

// counter is a stateful processor: it counts the records it saw. Every
// instance is recorded under its tag, so tests can tell a kept instance
// from a new one.
type counter struct {
	tag     int
	seen    atomic.Uint64
	stopped atomic.Bool
}

func (c *counter) Start(context.Context) error    { return nil }
func (c *counter) Shutdown(context.Context) error { c.stopped.Store(true); return nil }
func (c *counter) Process(_ context.Context, b *flow.Batch) error {
	if c.stopped.Load() {
		return errors.New("process after shutdown")
	}
	c.seen.Add(uint64(b.Len()))
	return nil
}

var (
	instMu    sync.Mutex
	instances = map[int][]*counter{}
	streams   []*stream
)

func init() {
	plugin.Register(plugin.Info{ID: "source.test_stream", NewConfig: func() plugin.Config { return &tagConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) {
			s := &stream{stop: make(chan struct{})}
			instMu.Lock()
			streams = append(streams, s)
			instMu.Unlock()
			return s, nil
		}})
	plugin.Register(plugin.Info{ID: "filter.test_counter", NewConfig: func() plugin.Config { return &tagConfig{} },
		New: func(c plugin.Config, _ plugin.Settings) (plugin.Component, error) {
			cfg := c.(*tagConfig)
			if cfg.Fail {
				return nil, fmt.Errorf("tag %d: refusing to build", cfg.Tag)
			}
			p := &counter{tag: cfg.Tag}
			instMu.Lock()
			instances[cfg.Tag] = append(instances[cfg.Tag], p)
			instMu.Unlock()
			return p, nil
		}})
}

func instancesOf(tag int) []*counter {
	instMu.Lock()
	defer instMu.Unlock()
	return append([]*counter(nil), instances[tag]...)
}

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestReload: under a steady stream, reloads keep unchanged stages (same
// instance, state intact), replace changed ones, refuse a config whose
// stage cannot be built without touching the running pipeline, and no
// record is lost or duplicated.
func TestReload(t *testing.T) {
	const head = `
pipeline:
  batch: {size: 64, timeout: 10ms}
  queue: {when_full: block}
  sources:
    - name: in
      source.test_stream: {}
  exporters:
    - name: out
      export.test_sink: {name: reload-sink}
`
	ctx := context.Background()
	p, err := pipeline.New(ctx, parse(t, head+"  processors:\n    - name: keep\n      filter.test_counter: {tag: 101}\n"), pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Ready(); err != nil {
		t.Fatalf("Ready after Start: %v", err)
	}
	waitSeen := func(c *counter, more uint64) {
		t.Helper()
		target := c.seen.Load() + more
		deadline := time.Now().Add(10 * time.Second)
		for c.seen.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("processor tag %d saw no new records", c.tag)
			}
			time.Sleep(time.Millisecond)
		}
	}
	keep := instancesOf(101)[0]
	waitSeen(keep, 500)

	steps := []struct {
		name     string
		chain    string
		wantErr  string
		replaced []string
		added    []string
		removed  []string
	}{
		{"add a processor after the kept one", "    - name: keep\n      filter.test_counter: {tag: 101}\n    - filter.test_counter: {tag: 102}\n",
			"", nil, []string{"processors[1] (filter.test_counter)"}, nil},
		{"change the added one", "    - name: keep\n      filter.test_counter: {tag: 101}\n    - filter.test_counter: {tag: 103}\n",
			"", []string{"processors[1] (filter.test_counter)"}, nil, nil},
		{"refused: a stage that cannot be built", "    - filter.test_counter: {tag: 104, fail: true}\n",
			"tag 104: refusing to build", nil, nil, nil},
		{"remove the second", "    - name: keep\n      filter.test_counter: {tag: 101}\n",
			"", nil, nil, []string{"processors[1] (filter.test_counter)"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := p.Stats()
			res, err := p.Reload(ctx, parse(t, head+"  processors:\n"+st.chain))
			if st.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), st.wantErr) || !strings.Contains(err.Error(), "unchanged") {
					t.Fatalf("Reload = %v, want a refusal with %q", err, st.wantErr)
				}
				after := p.Stats()
				if len(after) != len(before) {
					t.Fatalf("a refused reload changed the stages: %v → %v", before, after)
				}
				for i := range after {
					if after[i].Stage != before[i].Stage || after[i].Plugin != before[i].Plugin {
						t.Fatalf("a refused reload changed the stages: %v → %v", before, after)
					}
				}
				if err := p.Ready(); err != nil {
					t.Errorf("Ready after a refused reload: %v", err)
				}
				waitSeen(keep, 200)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.Replaced) != fmt.Sprint(st.replaced) || fmt.Sprint(res.Added) != fmt.Sprint(st.added) || fmt.Sprint(res.Removed) != fmt.Sprint(st.removed) {
				t.Errorf("replaced %v added %v removed %v, want %v %v %v", res.Replaced, res.Added, res.Removed, st.replaced, st.added, st.removed)
			}
			for _, k := range []string{"in (source.test_stream)", "keep (filter.test_counter)", "out (export.test_sink)"} {
				if !strings.Contains(fmt.Sprint(res.Kept), k) {
					t.Errorf("kept %v, want %s among them", res.Kept, k)
				}
			}
			waitSeen(keep, 200)
		})
	}
	if n := len(instancesOf(101)); n != 1 {
		t.Errorf("the unchanged processor was built %d times, want once", n)
	}
	if keep.stopped.Load() {
		t.Error("the unchanged processor was shut down by a reload")
	}
	for _, tag := range []int{102, 103} {
		if in := instancesOf(tag); len(in) != 1 || !in[0].stopped.Load() {
			t.Errorf("processor tag %d: %d instances, want 1, shut down once replaced", tag, len(in))
		}
	}
	instMu.Lock()
	src := streams[len(streams)-1]
	instMu.Unlock()
	if src.starts.Load() != 1 {
		t.Errorf("the unchanged source was started %d times", src.starts.Load())
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Ready(); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("Ready after Shutdown = %v, want shutting down", err)
	}
	// Every record sent arrived exactly once.
	sent := src.sent.Load()
	seen := map[uint64]int{}
	for _, r := range sink("reload-sink").Records() {
		seen[r.OctetDeltaCount]++
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if uint64(len(seen)) != sent || dups != 0 {
		t.Errorf("sink has %d distinct records and %d duplicates, the source sent %d", len(seen), dups, sent)
	}
	if keep.seen.Load() != sent {
		t.Errorf("the kept processor saw %d records, want all %d", keep.seen.Load(), sent)
	}
}

// Before Start the pipeline is not ready and cannot be reloaded.
func TestReloadNotRunning(t *testing.T) {
	cfg := parse(t, "pipeline:\n  sources: [{source.test_stream: {}}]\n  exporters: [{export.test_sink: {name: nr}}]\n")
	p, err := pipeline.New(context.Background(), cfg, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Ready(); err == nil {
		t.Error("Ready before Start = nil")
	}
	if _, err := p.Reload(context.Background(), cfg); err == nil {
		t.Error("Reload before Start succeeded")
	}
	_ = p.Shutdown(context.Background())
}

// A stage whose config is unchanged but whose file (a rebuilt WASM module,
// a new RPC binary) changed is replaced; an untouched file keeps it.
func TestReloadRebuiltFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plugin.bin")
	os.WriteFile(file, []byte("v1"), 0o644)
	yaml := fmt.Sprintf(`
pipeline:
  sources: [{source.test_stream: {}}]
  processors: [{filter.test_counter: {tag: 201, file: %q}}]
  exporters: [{export.test_sink: {name: rebuilt}}]
`, file)
	ctx := context.Background()
	p, err := pipeline.New(ctx, parse(t, yaml), pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	res, err := p.Reload(ctx, parse(t, yaml))
	if err != nil || res.Changed() {
		t.Fatalf("reload with nothing changed: %+v, %v", res, err)
	}
	os.WriteFile(file, []byte("v2"), 0o644)
	res, err = p.Reload(ctx, parse(t, yaml))
	if err != nil || fmt.Sprint(res.Replaced) != "[processors[0] (filter.test_counter)]" {
		t.Fatalf("reload after the file changed: replaced %v, %v", res.Replaced, err)
	}
	if n := len(instancesOf(201)); n != 2 {
		t.Errorf("%d instances, want 2", n)
	}
}

// A push-down source applied the first processor's selection itself, so a
// reload that changes that processor rebuilds the source and pushes the new
// one down; a reload that keeps it keeps the source.
func TestReloadPushDown(t *testing.T) {
	yaml := func(tag int) string {
		return fmt.Sprintf(`
pipeline:
  sources: [{source.test_pushdown: {records: 10}}]
  processors: [{filter.test_counter: {tag: %d}}]
  exporters: [{export.test_sink: {name: reload-pushdown}}]
`, tag)
	}
	ctx := context.Background()
	p, err := pipeline.New(ctx, parse(t, yaml(301)), pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	if got := <-pushedDown; got != plugin.Processor(instancesOf(301)[0]) {
		t.Fatalf("pushed down %T, want the first processor", got)
	}
	res, err := p.Reload(ctx, parse(t, yaml(301)))
	if err != nil || res.Changed() {
		t.Fatalf("unchanged reload: %+v %v", res, err)
	}
	select {
	case <-pushedDown:
		t.Fatal("PushDown called again although nothing changed")
	default:
	}
	res, err = p.Reload(ctx, parse(t, yaml(302)))
	if err != nil {
		t.Fatal(err)
	}
	if got := <-pushedDown; got != plugin.Processor(instancesOf(302)[0]) {
		t.Fatalf("after the reload pushed down %T, want the new first processor", got)
	}
	if fmt.Sprint(res.Replaced) != "[sources[0] (source.test_pushdown) processors[0] (filter.test_counter)]" {
		t.Errorf("replaced %v, want the source and the processor", res.Replaced)
	}
}
