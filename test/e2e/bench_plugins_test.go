package e2e

// `weir bench` on the WASM, RPC and Kubernetes plugins: the built-in
// filter.protocol against the WASM protocolfilter, and a chain of WASM
// filter → RPC enricher → enrich.podlabels over 10 000 generated Pods.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/weir-flow/weir/test/weirtest"
)

// benchBuild builds a Go package of the repository to out with extra
// environment (GOOS=wasip1 …), so the test does not depend on `make
// examples`.
func benchBuild(t *testing.T, pkg, out string, env []string, flags ...string) {
	t.Helper()
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = weirtest.RepoRoot()
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// benchPlugins builds the WASM protocolfilter and the RPC subnetlabels
// examples into dir.
func benchPlugins(t *testing.T, dir string) (wasm, rpc string) {
	t.Helper()
	wasm = filepath.Join(dir, "protocolfilter.wasm")
	benchBuild(t, "./examples/wasm/protocolfilter", wasm, []string{"GOOS=wasip1", "GOARCH=wasm"}, "-buildmode=c-shared")
	rpc = filepath.Join(dir, "subnetlabels")
	benchBuild(t, "./examples/rpc/subnetlabels", rpc, nil)
	return wasm, rpc
}

func writeBenchConfig(t *testing.T, dir, name, processors string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	yaml := "pipeline:\n  processors:\n" + processors
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBenchCompareBuiltinWithWASM(t *testing.T) {
	dir := t.TempDir()
	wasm, _ := benchPlugins(t, dir)
	cfg := writeBenchConfig(t, dir, "wasm.yaml",
		"    - wasm: {path: "+strconv.Quote(wasm)+", config: {protocols: [tcp]}, cache_dir: off}\n")
	cmp := checkCompare(t, "configs/bench/protocol.yaml", cfg, "--synthetic", "flows=4000", "--batch", "64")
	for i, r := range cmp.Rounds {
		checkBenchAddsUp(t, r.Base, 4000)
		checkBenchAddsUp(t, r.Other, 4000)
		// The WASM filter and the built-in one keep the same records.
		if b, w := r.Base.Stages[0], r.Other.Stages[0]; w.Plugin != "wasm" || w.Out != b.Out || w.Errored != 0 {
			t.Errorf("round %d: wasm %s kept %d (errored %d), filter.protocol kept %d", i+1, w.Plugin, w.Out, w.Errored, b.Out)
		}
	}
}

func TestBenchPluginChain(t *testing.T) {
	dir := t.TempDir()
	wasm, rpc := benchPlugins(t, dir)
	pods := filepath.Join(dir, "pods.json")
	spec := "flows=6000,pods=10000,ipv6=0.3"
	out := runBench(t, "bench", "--synthetic", spec, "--write-pods", pods)
	if !strings.Contains(string(out), "10000 Pods") {
		t.Errorf("--write-pods says %s", out)
	}
	table := filepath.Join(weirtest.RepoRoot(), "configs", "bench", "subnets.csv")
	cfg := writeBenchConfig(t, dir, "chain.yaml", ""+
		"    - wasm: {path: "+strconv.Quote(wasm)+", config: {protocols: [tcp, udp]}, cache_dir: off}\n"+
		"    - rpc: {cmd: "+strconv.Quote(rpc)+", config: {table: "+strconv.Quote(table)+"}}\n"+
		"    - enrich.podlabels: {file: "+strconv.Quote(pods)+", reload_interval: 0s, overwrite: true}\n"+
		"    - proxy: {}\n")
	// A chain for bench has no source or exporter, which is all that
	// `weir validate` (= what `weir run` needs) holds against it.
	if _, stderr, err := runWeirCmd(t, "validate", "-c", cfg); err == nil ||
		strings.TrimSpace(string(stderr)) != "weir: pipeline.sources: at least one source is required\npipeline.exporters: at least one exporter is required (export.jsonl with path \"-\" prints records)" {
		t.Fatalf("validate: %v\n%s", err, stderr)
	}
	rep := benchReport(t, runBench(t, "bench", "-c", cfg, "--synthetic", spec, "--json", "--alloc-batches", "4"))
	res := rep.Runs[0]
	checkBenchAddsUp(t, res, 6000)
	want := []string{"wasm", "rpc", "enrich.podlabels", "proxy"}
	for i, s := range res.Stages {
		if s.Plugin != want[i] || s.Errored != 0 {
			t.Errorf("stage %d: %s errored %d (%s); want %s without errors", i, s.Plugin, s.Errored, s.FirstError, want[i])
		}
	}
	if res.Stages[0].Dropped == 0 || res.Stages[1].Dropped != 0 || res.Stages[2].Dropped != 0 {
		t.Errorf("only the filter drops: %+v", res.Stages)
	}
	// The text table names every stage.
	text := string(runBench(t, "bench", "-c", cfg, "--synthetic", spec, "--alloc-batches", "-1"))
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("table lacks %s:\n%s", w, text)
		}
	}
}
