package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/core/rpchost"
	_ "github.com/weir-flow/weir/plugins/export/jsonl"
	_ "github.com/weir-flow/weir/plugins/source/pcap"
)

// rpcRepoRoot is the repository root, from this file's location.
func rpcRepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// buildSubnetLabels builds examples/rpc/subnetlabels into a temporary
// directory, so the test does not depend on `make examples`.
func buildSubnetLabels(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "subnetlabels")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/rpc/subnetlabels")
	cmd.Dir = rpcRepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build subnetlabels: %v\n%s", err, out)
	}
	return bin
}

// runPipeline runs a YAML pipeline with a finite source to completion.
func runPipeline(t *testing.T, yaml string, reg *prometheus.Registry) *pipeline.Pipeline {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	ctx := context.Background()
	p, err := pipeline.New(ctx, cfg, pipeline.Options{Registerer: reg})
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("source never finished")
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return p
}

func readJSONL(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s line %d: %v", path, i+1, err)
		}
		out = append(out, m)
	}
	return out
}

// referenceLabels is a plain, independent implementation of the
// subnetlabels semantics: for each key, the value of the longest prefix in
// the CSV that contains addr and sets the key.
type referenceRow struct {
	prefix     netip.Prefix
	key, value string
}

func loadReference(t *testing.T, path string) []referenceRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []referenceRow
	for _, row := range rows[1:] { // header
		p, err := netip.ParsePrefix(row[0])
		if err != nil {
			a := netip.MustParseAddr(row[0])
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, referenceRow{p.Masked(), row[1], row[2]})
	}
	return out
}

func referenceLabels(rows []referenceRow, addr string, existing any) (string, bool) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "", false
	}
	best := map[string]int{}
	labels := map[string]string{}
	for _, row := range rows {
		if !row.prefix.Contains(a) {
			continue
		}
		if b, ok := best[row.key]; !ok || row.prefix.Bits() > b {
			best[row.key] = row.prefix.Bits()
			labels[row.key] = row.value
		}
	}
	if len(labels) == 0 {
		return "", false
	}
	merged := map[string]any{}
	for k, v := range labels {
		merged[k] = v
	}
	if s, ok := existing.(string); ok && s != "" {
		var cur map[string]any
		if json.Unmarshal([]byte(s), &cur) == nil {
			for k, v := range cur {
				merged[k] = v // the record's own labels win
			}
		}
	}
	js, _ := json.Marshal(merged)
	return string(js), true
}

func canonical(recs []map[string]any) []string {
	out := make([]string, len(recs))
	for i, m := range recs {
		js, _ := json.Marshal(m)
		out[i] = string(js)
	}
	slices.Sort(out)
	return out
}

// TestRPCSubnetLabelsMatchesReference replays real IPFIX (softflowd's
// export of real traffic) through the rpc plugin and compares the output
// with the same records, unprocessed, labelled by a plain in-process
// implementation of the CSV semantics.
func TestRPCSubnetLabelsMatchesReference(t *testing.T) {
	root := rpcRepoRoot()
	bin := buildSubnetLabels(t)
	capture := filepath.Join(root, "test", "testdata", "softflowd-ipfix.pcap")
	table := filepath.Join(root, "examples", "rpc", "subnetlabels", "subnets.csv")
	dir := t.TempDir()
	plain, labelled := filepath.Join(dir, "plain.jsonl"), filepath.Join(dir, "labelled.jsonl")

	runPipeline(t, fmt.Sprintf(`
pipeline:
  batch: {size: 16, timeout: 50ms}
  sources:
    - source.pcap: {path: %q}
  exporters:
    - export.jsonl: {path: %q}
`, capture, plain), nil)
	reg := prometheus.NewRegistry()
	p := runPipeline(t, fmt.Sprintf(`
pipeline:
  batch: {size: 16, timeout: 50ms}
  sources:
    - source.pcap: {path: %q}
  processors:
    - rpc: {cmd: %q, config: {table: %q}, on_error: fail-closed, timeout: 5s}
  exporters:
    - export.jsonl: {path: %q}
`, capture, bin, table, labelled), reg)

	for _, s := range p.Stats() {
		if s.Errored != 0 || s.Filtered != 0 || s.Overflow != 0 {
			t.Errorf("stage %s: %+v", s.Stage, s)
		}
	}
	got, want := readJSONL(t, labelled), readJSONL(t, plain)
	if len(want) == 0 {
		t.Fatal("the capture gave no records")
	}
	rows := loadReference(t, table)
	var v4, v6, labelledCount int
	for _, m := range want {
		for _, dir := range []string{"source", "destination"} {
			addr, ok := m[dir+"IPv4Address"].(string)
			if ok {
				v4++
			} else if addr, ok = m[dir+"IPv6Address"].(string); ok {
				v6++
			}
			if js, ok := referenceLabels(rows, addr, m[dir+"PodLabels"]); ok {
				m[dir+"PodLabels"] = js
				labelledCount++
			}
		}
	}
	if v4 == 0 || v6 == 0 || labelledCount == 0 {
		t.Fatalf("weak test data: %d IPv4 and %d IPv6 addresses, %d labelled", v4, v6, labelledCount)
	}
	g, w := canonical(got), canonical(want)
	if len(g) != len(w) {
		t.Fatalf("%d records through rpc, %d without", len(g), len(w))
	}
	for i := range g {
		if g[i] != w[i] {
			t.Errorf("record %d differs:\n rpc:       %s\n reference: %s", i, g[i], w[i])
		}
	}
	t.Logf("%d records, %d addresses labelled", len(g), labelledCount)
}

// rpcGen is a test source: Batches batches of Size records, one every
// Interval, from 10.1.2.3 to 10.1.0.1.
type rpcGenConfig struct {
	Batches  int           `koanf:"batches"`
	Size     int           `koanf:"size"`
	Interval time.Duration `koanf:"interval"`
}

func (c *rpcGenConfig) Validate() error { return nil }

type rpcGen struct {
	cfg     rpcGenConfig
	emitted atomic.Int64
	done    chan struct{}
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

// rpcGens lets tests reach the source instances the pipeline built.
var rpcGens sync.Map // name → *rpcGen

func (g *rpcGen) Start(ctx context.Context, out plugin.Emitter) error {
	ctx, g.cancel = context.WithCancel(context.WithoutCancel(ctx))
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(g.done)
		for i := 0; i < g.cfg.Batches; i++ {
			b := out.NewBatch()
			for j := 0; j < g.cfg.Size; j++ {
				plugintest.Record(b, "10.77.0.1", "10.77.0.2", 6, uint16(i), uint16(j), 1, 100)
			}
			if err := out.Emit(ctx, b); err != nil {
				return
			}
			g.emitted.Add(int64(g.cfg.Size))
			time.Sleep(g.cfg.Interval)
		}
	}()
	return nil
}

func (g *rpcGen) Shutdown(context.Context) error {
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
	return nil
}

func (g *rpcGen) Done() <-chan struct{} { return g.done }

type rpcSinkConfig struct{}

func (*rpcSinkConfig) Validate() error { return nil }

var rpcSinks sync.Map // name → *plugintest.Sink

func init() {
	plugin.Register(plugin.Info{
		ID:        "source.e2e_rpc_gen",
		Summary:   "test source for the rpc e2e tests",
		NewConfig: func() plugin.Config { return &rpcGenConfig{Batches: 100, Size: 64, Interval: time.Millisecond} },
		New: func(cfg plugin.Config, set plugin.Settings) (plugin.Component, error) {
			g := &rpcGen{cfg: *cfg.(*rpcGenConfig), done: make(chan struct{})}
			rpcGens.Store(set.Name, g)
			return g, nil
		},
	})
	plugin.Register(plugin.Info{
		ID:        "export.e2e_rpc_sink",
		Summary:   "test sink for the rpc e2e tests",
		NewConfig: func() plugin.Config { return &rpcSinkConfig{} },
		New: func(cfg plugin.Config, set plugin.Settings) (plugin.Component, error) {
			s := plugintest.NewSink()
			rpcSinks.Store(set.Name, s)
			return s, nil
		},
	})
}

// pidsOf returns the running processes whose executable is bin.
func pidsOf(bin string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
				s := string(stat)
				if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) && s[i+2] == 'Z' {
					continue
				}
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestRPCKill9MidStream runs a pipeline through the rpc plugin, kills the
// plugin with SIGKILL halfway, and checks that weir restarted it, counted
// the affected batches, lost no record (fail-open) and enriched again
// after the restart. Shutdown leaves no plugin process.
func TestRPCKill9MidStream(t *testing.T) {
	root := rpcRepoRoot()
	bin := buildSubnetLabels(t)
	table := filepath.Join(root, "examples", "rpc", "subnetlabels", "subnets.csv")
	reg := prometheus.NewRegistry()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
pipeline:
  batch: {size: 64, timeout: 50ms}
  queue: {when_full: block}
  sources:
    - source.e2e_rpc_gen: {batches: 400, size: 64, interval: 2ms}
  processors:
    - rpc: {cmd: %q, config: {table: %q}, on_error: fail-open, restart_backoff: {initial: 50ms}}
  exporters:
    - export.e2e_rpc_sink: {}
`, bin, table)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := pipeline.New(ctx, cfg, pipeline.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { t.Logf("pipeline ran %s", time.Since(begin)) }()
	v, _ := rpcGens.Load("sources[0].source.e2e_rpc_gen")
	gen := v.(*rpcGen)
	for gen.emitted.Load() < 100*64 {
		time.Sleep(time.Millisecond)
	}
	pids := pidsOf(bin)
	if len(pids) != 1 {
		t.Fatalf("%d plugin processes running, want 1", len(pids))
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("source never finished")
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	s, _ := rpcSinks.Load("exporters[0].export.e2e_rpc_sink")
	sink := s.(*plugintest.Sink)
	recs := sink.Records()
	if len(recs) != 400*64 {
		t.Errorf("sink got %d records, want %d", len(recs), 400*64)
	}
	var plain int
	for _, r := range recs {
		if r.SourcePodLabels == "" {
			plain++
		}
	}
	if last := recs[len(recs)-1]; last.SourcePodLabels == "" {
		t.Errorf("the last record was not enriched: no restart?")
	}
	var errored uint64
	for _, st := range p.Stats() {
		if st.Plugin == rpchost.ID {
			errored = st.Errored
		}
	}
	if errored != uint64(plain) {
		t.Errorf("engine counted %d errored records, %d records came out unenriched", errored, plain)
	}
	metric := func(name string) float64 {
		mfs, _ := reg.Gather()
		var sum float64
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	if got := metric("weir_rpc_restarts_total"); got != 1 {
		t.Errorf("weir_rpc_restarts_total = %v, want 1", got)
	}
	if got := metric("weir_rpc_errors_total"); got*64 != float64(plain) {
		t.Errorf("weir_rpc_errors_total = %v batches, %d records unenriched", got, plain)
	}
	if left := pidsOf(bin); len(left) != 0 {
		t.Errorf("plugin processes left after Shutdown: %v", left)
	}
	t.Logf("%d records, %d passed unenriched during the restart", len(recs), plain)
}

// TestRPCValidateCheck is `weir validate` on rpc configs: Check starts the
// plugin, and a checksum mismatch, a missing binary or a rejected config
// are reported with the stage's path and the binary's name.
func TestRPCValidateCheck(t *testing.T) {
	root := rpcRepoRoot()
	bin := buildSubnetLabels(t)
	table := filepath.Join(root, "examples", "rpc", "subnetlabels", "subnets.csv")
	tests := []struct {
		name, rpc string
		want      error
		mention   string
	}{
		{"ok", fmt.Sprintf(`{cmd: %q, config: {table: %q}}`, bin, table), nil, ""},
		{"checksum", fmt.Sprintf(`{cmd: %q, config: {table: %q}, sha256: %s}`, bin, table, strings.Repeat("ab", 32)), rpchost.ErrChecksum, "subnetlabels"},
		{"missing", `{cmd: ./no-such-plugin}`, rpchost.ErrNotFound, "no-such-plugin"},
		{"bad table", fmt.Sprintf(`{cmd: %q, config: {table: /no/such.csv}}`, bin), rpchost.ErrInit, "/no/such.csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(`
pipeline:
  sources:
    - source.e2e_rpc_gen: {}
  processors:
    - rpc: `+tt.rpc+`
  exporters:
    - export.e2e_rpc_sink: {}
`), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Check(context.Background())
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check: %v, want %v", err, tt.want)
			}
			if err != nil && (!strings.Contains(err.Error(), tt.mention) || !strings.Contains(err.Error(), "processors[0]")) {
				t.Errorf("error %q does not name %q and the stage", err, tt.mention)
			}
		})
	}
}

var _ flow.FieldID // the records compared are flow records
