package bench

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	_ "github.com/weir-flow/weir/plugins/export/jsonl"
	_ "github.com/weir-flow/weir/plugins/filter/protocol"
	_ "github.com/weir-flow/weir/plugins/proxy"
)

// failing is a test processor: it fails on every other batch after
// dropping its first record, and counts its lifecycle calls.
type failing struct {
	calls             int
	started, shutdown *atomic.Int32
}

type failingConfig struct{}

func (failingConfig) Validate() error { return nil }

var failingStarts, failingShutdowns atomic.Int32

func init() {
	plugin.Register(plugin.Info{
		ID:        "benchtest.failing",
		Summary:   "test processor for internal/bench",
		NewConfig: func() plugin.Config { return &failingConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) {
			return &failing{started: &failingStarts, shutdown: &failingShutdowns}, nil
		},
	})
}

var errOdd = errors.New("odd batch")

func (f *failing) Start(context.Context) error { f.started.Add(1); return nil }
func (f *failing) Shutdown(context.Context) error {
	f.shutdown.Add(1)
	return nil
}
func (f *failing) Process(_ context.Context, b *flow.Batch) error {
	f.calls++
	if f.calls%2 == 1 {
		return nil
	}
	first := b.Records[0]
	b.Retain(func(r *flow.Record) bool { return r != first }) // a partial change, then the error
	return errOdd
}

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func newTestChain(t *testing.T, yaml string, opts ChainOptions) *Chain {
	t.Helper()
	c, err := NewChain(context.Background(), parse(t, yaml), opts)
	if err != nil {
		t.Fatalf("NewChain: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

const twoStages = `
pipeline:
  batch: {size: 128}
  processors:
    - filter.protocol: {protocols: [tcp, udp]}
    - proxy: {}
`

// checkAddsUp checks the accounting every result must satisfy.
func checkAddsUp(t *testing.T, res *Result, fed uint64) {
	t.Helper()
	if res.Records != fed || res.Total.In != fed {
		t.Fatalf("fed %d, chain in %d; want %d", res.Records, res.Total.In, fed)
	}
	if len(res.Stages) == 0 {
		t.Fatal("no stages")
	}
	if res.Stages[0].In != fed {
		t.Errorf("first stage in = %d, want %d", res.Stages[0].In, fed)
	}
	var procOut uint64
	procs := 0
	for i, s := range res.Stages {
		if s.In-s.Dropped != s.Out {
			t.Errorf("%s: in %d - dropped %d != out %d", s.Name, s.In, s.Dropped, s.Out)
		}
		if s.Kind == "processor" {
			procs++
			procOut = s.Out
			if i+1 < len(res.Stages) && res.Stages[i+1].In != s.Out {
				t.Errorf("%s out %d != %s in %d", s.Name, s.Out, res.Stages[i+1].Name, res.Stages[i+1].In)
			}
		}
		if s.In > 0 && (s.NsPerRecordP50 <= 0 || s.NsPerRecordP99 < s.NsPerRecordP50 || s.RecordsPerSecond <= 0) {
			t.Errorf("%s: p50 %v, p99 %v, records/s %v", s.Name, s.NsPerRecordP50, s.NsPerRecordP99, s.RecordsPerSecond)
		}
	}
	if procs > 0 && (res.Total.Out != procOut || res.Sink.Records != procOut) {
		t.Errorf("chain out %d, sink %d; want the last processor's out %d", res.Total.Out, res.Sink.Records, procOut)
	}
	var stageSecs float64
	for _, s := range res.Stages {
		stageSecs += s.Seconds
	}
	if d := res.Total.Seconds - stageSecs; d > 1e-9 || d < -1e-9 {
		t.Errorf("chain seconds %v != sum of stages %v", res.Total.Seconds, stageSecs)
	}
	if res.Memory.PeakHeapBytes == 0 {
		t.Error("peak heap not sampled")
	}
}

func TestRunAddsUp(t *testing.T) {
	spec, _ := ParseSpec("flows=10000,tcp=0.5,udp=0.25,icmp=0.25")
	in := Generate(spec, 1)
	c := newTestChain(t, twoStages, ChainOptions{Name: "two"})
	if c.BatchSize() != 128 {
		t.Fatalf("batch size %d, want pipeline.batch.size 128", c.BatchSize())
	}
	res, err := c.Run(context.Background(), in, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, res, 10000)
	var kept uint64
	for _, r := range in.Batch.Records {
		if r.ProtocolIdentifier == 6 || r.ProtocolIdentifier == 17 {
			kept++
		}
	}
	if res.Stages[0].Out != kept {
		t.Errorf("filter kept %d, want the %d TCP/UDP records of the input", res.Stages[0].Out, kept)
	}
	if res.Batches != (10000+127)/128 || res.Stages[0].Plugin != "filter.protocol" || res.Stages[1].Plugin != "proxy" {
		t.Errorf("batches %d, stages %+v", res.Batches, res.Stages)
	}
	if res.WarmupRecords == 0 {
		t.Error("no warm-up by default")
	}
	// Neither stage allocates per record.
	for _, s := range res.Stages {
		if s.AllocRecords == 0 || s.AllocsPerRecord > 0.05 {
			t.Errorf("%s: %v allocs/record over %d records; want ~0", s.Name, s.AllocsPerRecord, s.AllocRecords)
		}
	}
	// The input is untouched: the proxy stamped copies only.
	for _, r := range in.Batch.Records {
		if r.Present.Has(flow.OriginalObservationDomainID) {
			t.Fatal("the run modified the input")
		}
	}
}

func TestRunBatchOverrideAndRecords(t *testing.T) {
	spec, _ := ParseSpec("flows=1000")
	in := Generate(spec, 1)
	c := newTestChain(t, twoStages, ChainOptions{BatchSize: 64})
	res, err := c.Run(context.Background(), in, RunOptions{Records: 2500, Warmup: -1, AllocBatches: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, res, 2500)
	if res.BatchSize != 64 || res.Batches != (2500+63)/64 || res.WarmupRecords != 0 {
		t.Errorf("batch %d, batches %d, warm-up %d", res.BatchSize, res.Batches, res.WarmupRecords)
	}
	if res.Stages[0].AllocRecords != 0 {
		t.Errorf("allocation pass ran with AllocBatches -1")
	}
}

func TestRunDuration(t *testing.T) {
	spec, _ := ParseSpec("flows=1000")
	c := newTestChain(t, twoStages, ChainOptions{})
	var calls int
	res, err := c.Run(context.Background(), Generate(spec, 1), RunOptions{
		Duration: 50 * time.Millisecond, Warmup: -1, AllocBatches: 1,
		Progress: func(uint64, time.Duration) { calls++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, res, res.Records)
	if res.WallSeconds < 0.05 || res.Records == 0 || res.Records%128 != 0 {
		t.Errorf("wall %vs, %d records; want >= 50ms of whole batches", res.WallSeconds, res.Records)
	}
	if calls == 0 {
		t.Error("Progress never called")
	}
}

func TestRunErroringStage(t *testing.T) {
	startsBefore, shutdownsBefore := failingStarts.Load(), failingShutdowns.Load()
	c := newTestChain(t, `
pipeline:
  batch: {size: 100}
  processors:
    - benchtest.failing: {}
    - proxy: {}
`, ChainOptions{})
	if failingStarts.Load() != startsBefore+1 {
		t.Fatal("NewChain did not start the processor")
	}
	spec, _ := ParseSpec("flows=1000")
	res, err := c.Run(context.Background(), Generate(spec, 1), RunOptions{Warmup: -1, AllocBatches: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, res, 1000)
	s := res.Stages[0]
	if s.Errored != 500 || s.Out != 995 || !strings.Contains(s.FirstError, "odd batch") {
		t.Errorf("errored %d, out %d, first error %q; want 500, 995, odd batch", s.Errored, s.Out, s.FirstError)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if failingShutdowns.Load() != shutdownsBefore+1 {
		t.Errorf("Close twice shut the processor down %d times, want 1", failingShutdowns.Load()-shutdownsBefore)
	}
}

func TestRunWithIO(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.jsonl")
	yaml := `
pipeline:
  processors:
    - filter.protocol: {protocols: [tcp]}
  exporters:
    - export.jsonl: {path: "` + out + `"}
`
	spec, _ := ParseSpec("flows=3000")
	in := Generate(spec, 1)
	c := newTestChain(t, yaml, ChainOptions{WithIO: true})
	res, err := c.Run(context.Background(), in, RunOptions{Warmup: -1, AllocBatches: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, res, 3000)
	if !res.WithIO || len(res.Stages) != 2 || res.Stages[1].Kind != "exporter" || res.Stages[1].Plugin != "export.jsonl" {
		t.Fatalf("stages %+v, with_io %v", res.Stages, res.WithIO)
	}
	if exp := res.Stages[1]; exp.In != res.Stages[0].Out || exp.Out != exp.In {
		t.Errorf("exporter in %d out %d; want the filter's out %d", exp.In, exp.Out, res.Stages[0].Out)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := uint64(0)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines++
	}
	if lines != res.Sink.Records {
		t.Errorf("exporter wrote %d lines, sink counted %d", lines, res.Sink.Records)
	}
	// Without WithIO the exporter is not even built.
	plain := newTestChain(t, yaml, ChainOptions{})
	if len(plain.stages) != 1 {
		t.Errorf("without WithIO: %d stages, want 1", len(plain.stages))
	}
}

func TestNewChainErrors(t *testing.T) {
	startsBefore, shutdownsBefore := failingStarts.Load(), failingShutdowns.Load()
	_, err := NewChain(context.Background(), parse(t, `
pipeline:
  processors:
    - benchtest.failing: {}
  exporters:
    - export.jsonl: {path: "/nonexistent-dir/x/out.jsonl"}
`), ChainOptions{WithIO: true})
	if err == nil {
		t.Fatal("NewChain with an exporter that cannot open its file: no error")
	}
	if failingShutdowns.Load() != shutdownsBefore+1 {
		t.Errorf("built processor not shut down after the failure (starts %d)", failingStarts.Load()-startsBefore)
	}
}

func TestRunEmptyInput(t *testing.T) {
	c := newTestChain(t, twoStages, ChainOptions{})
	_, err := c.Run(context.Background(), &Input{Name: "empty", Batch: flow.NewBatch(1)}, RunOptions{})
	if !errors.Is(err, ErrEmptyInput) {
		t.Fatalf("err = %v, want ErrEmptyInput", err)
	}
}

func TestRunCancelled(t *testing.T) {
	c := newTestChain(t, twoStages, ChainOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	spec, _ := ParseSpec("flows=100")
	if _, err := c.Run(ctx, Generate(spec, 1), RunOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestFeederDoesNotAllocate(t *testing.T) {
	spec, _ := ParseSpec("flows=1000")
	in := Generate(spec, 1)
	f := &feeder{in: in.Batch}
	b := flow.NewBatch(256)
	f.fill(b, 256) // grow slots and arena once
	for range 4 {
		f.fill(b, 256)
	}
	allocs := testing.AllocsPerRun(50, func() { f.fill(b, 256) })
	if allocs > 0 {
		t.Errorf("fill allocates %v times per batch", allocs)
	}
}
