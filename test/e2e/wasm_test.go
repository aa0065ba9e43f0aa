package e2e

// The WASM plugin host end to end, through the weir binary: the WASM
// protocolfilter against the built-in filter.protocol on real captures,
// the misbehave module's every failure inside a running pipeline, and
// what `weir validate` says about modules that are not Weir plugins.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/wasmhost/wasmhosttest"
	"github.com/weir-flow/weir/test/weirtest"
)

// wasmModule builds a Go package of the repository as a WASM reactor into
// the directory of the weir binary (removed by TestMain), once per run.
func wasmModule(t *testing.T, pkg string) string {
	t.Helper()
	path, err := wasmhosttest.Build(filepath.Dir(weirBin), pkg)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// protocolConfigs are given, verbatim, to filter.protocol and to the WASM
// protocolfilter.
var protocolConfigs = map[string]string{
	"tcp":          `{protocols: [tcp]}`,
	"udp and icmp": `{protocols: [UDP, icmp]}`,
	"numbers":      `{protocols: [58, "17"]}`,
	"groups":       `{protocols: [web, dns, alt], groups: {alt: [{protocol: tcp, ports: ["8000-8100"]}, {protocol: udp, ports: [5353]}]}}`,
}

// sortedLines returns the lines of a JSONL file, sorted: the two filters
// see batches in different orders only if the engine reorders them, which
// does not matter here.
func sortedLines(t *testing.T, path string) []string {
	t.Helper()
	lines := jsonlLines(t, path)
	slices.Sort(lines)
	return lines
}

// compareFiltered checks that two JSONL outputs are the same, and that the
// filter kept some records of all and dropped others.
func compareFiltered(t *testing.T, builtinPath, wasmPath string, all int) {
	t.Helper()
	b, w := sortedLines(t, builtinPath), sortedLines(t, wasmPath)
	if len(b) == 0 || len(b) >= all {
		t.Errorf("filter.protocol kept %d of %d records: the config does not filter this capture", len(b), all)
	}
	if !slices.Equal(b, w) {
		var onlyB, onlyW []string
		for _, l := range b {
			if !slices.Contains(w, l) {
				onlyB = append(onlyB, l)
			}
		}
		for _, l := range w {
			if !slices.Contains(b, l) {
				onlyW = append(onlyW, l)
			}
		}
		t.Fatalf("outputs differ: filter.protocol kept %d records, wasm protocolfilter %d\nonly built-in: %v\nonly wasm:     %v", len(b), len(w), onlyB, onlyW)
	}
}

// TestWASMProtocolFilterCaptureReplay replays the project's softflowd
// capture (source.pcap) through each filter with the same config.
func TestWASMProtocolFilterCaptureReplay(t *testing.T) {
	wasm := wasmModule(t, "./examples/wasm/protocolfilter")
	capture := filepath.Join(weirtest.RepoRoot(), "test", "testdata", "softflowd-ipfix.pcap")
	dir := t.TempDir()
	run := func(name, processor string) string {
		out := filepath.Join(dir, name+".jsonl")
		cfg := filepath.Join(dir, name+".yaml")
		yaml := fmt.Sprintf(`
pipeline:
  batch: {size: 8, timeout: 50ms}
  sources:
    - source.pcap: {path: %q}
  processors:
    - %s
  exporters:
    - export.jsonl: {path: %q}
`, capture, processor, out)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := runWeirCmd(t, "run", "-c", cfg); err != nil {
			t.Fatalf("weir run %s: %v\n%s", name, err, stderr)
		}
		return out
	}
	all := len(jsonlLines(t, run("all", "proxy: {}")))
	if all < 20 {
		t.Fatalf("the capture replays %d records", all)
	}
	for name, cfg := range protocolConfigs {
		t.Run(name, func(t *testing.T) {
			slug := strings.ReplaceAll(name, " ", "-")
			b := run(slug+"-builtin", "filter.protocol: "+cfg)
			w := run(slug+"-wasm", fmt.Sprintf("wasm: {path: %q, config: %s, cache_dir: %q}", wasm, cfg, wasmhosttest.CacheDir()))
			compareFiltered(t, b, w, all)
		})
	}
}

// TestWASMProtocolFilterSoftflowd turns ../shared/testdata/netns-mix.pcap
// into IPFIX with softflowd once, then sends that export, message by
// message from one socket, to a running weir per filter (source.ipfix):
// softflowd's times are relative to its uptime, so two softflowd runs do
// not export quite the same flows.
func TestWASMProtocolFilterSoftflowd(t *testing.T) {
	needTools(t, "softflowd")
	capture := weirtest.SharedCapture(t)
	wasm := wasmModule(t, "./examples/wasm/protocolfilter")
	rec := newUDPRecorder(t)
	runSoftflowd(t, capture, rec.port())
	var export [][]byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		msgs := rec.messages()
		if len(msgs) > 0 && len(msgs) == len(export) || time.Now().After(deadline) {
			break
		}
		export = msgs
	}
	if len(export) == 0 {
		t.Fatal("softflowd exported nothing")
	}
	sender, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	dir := t.TempDir()
	run := func(name, processor string) (path string, records int) {
		port := weirtest.FreePort(t, "udp")
		out := filepath.Join(dir, name+".jsonl")
		w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 8, timeout: 50ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "127.0.0.1:0"}
  processors:
    - %s
  exporters:
    - export.jsonl: {path: %q}
`, port, processor, out))
		to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		for _, m := range export {
			if _, err := sender.WriteToUDP(m, to); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond) // no burst beyond the socket buffer
		}
		records = waitSettled(t, w, "weir_source_ipfix_records_total")
		w.Stop(t)
		return out, records
	}
	allPath, all := run("all", "proxy: {}")
	if n := len(jsonlLines(t, allPath)); n != all || all < 20 {
		t.Fatalf("without a filter: %d lines for %d records", n, all)
	}
	for name, cfg := range protocolConfigs {
		t.Run(name, func(t *testing.T) {
			slug := strings.ReplaceAll(name, " ", "-")
			b, nb := run(slug+"-builtin", "filter.protocol: "+cfg)
			w, nw := run(slug+"-wasm", fmt.Sprintf("wasm: {path: %q, config: %s, cache_dir: %q}", wasm, cfg, wasmhosttest.CacheDir()))
			if nb != all || nw != all {
				t.Fatalf("the two weirs decoded %d and %d records, the first %d", nb, nw, all)
			}
			compareFiltered(t, b, w, all)
		})
	}
}

// waitSettled waits until a counter is positive and has not moved for a
// second, and returns it.
func waitSettled(t *testing.T, w *weirProc, name string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last, since := -1.0, time.Now()
	for {
		v := w.Scrape(t)[name]
		if v != last {
			last, since = v, time.Now()
		}
		if v > 0 && time.Since(since) > time.Second {
			return int(v)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v and still moving, or zero, after 30s\n%s", name, v, w.Stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWASMMisbehaveFailOpen runs the misbehave module in every mode inside
// a running weir fed by softflowd: every record still comes out, the
// failures are counted by reason (the host's and the engine's counters, the
// same reasons) and logged with the module's path, and weir exits 0 on
// SIGTERM.
func TestWASMMisbehaveFailOpen(t *testing.T) {
	needTools(t, "softflowd")
	capture := weirtest.SharedCapture(t)
	module := wasmModule(t, "./examples/wasm/misbehave")
	modes := map[string]string{
		"loop": "timeout", "trap": "crash", "panic": "crash", "oom": "crash", "garbage": "bad_answer",
	}
	for mode, reason := range modes {
		t.Run(mode, func(t *testing.T) {
			port := weirtest.FreePort(t, "udp")
			out := filepath.Join(t.TempDir(), "flows.jsonl")
			timeout := "300ms"
			if mode == "oom" {
				timeout = "20s" // filling 32 MiB takes a while on a loaded machine
			}
			w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 2, timeout: 20ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "127.0.0.1:0"}
  processors:
    - wasm:
        path: %q
        config: {mode: %s, every: 2}
        on_error: fail-open
        timeout: %s
        memory_limit: 32MiB
        instances: 1
        cache_dir: %q
  exporters:
    - export.jsonl: {path: %q}
`, port, module, mode, timeout, wasmhosttest.CacheDir(), out))
			runSoftflowd(t, capture, port)
			records := waitSettled(t, w, "weir_source_ipfix_records_total")
			// Every record reaches the exporter, the failed batches too.
			deadline := time.Now().Add(60 * time.Second)
			for labelled(t, w, "weir_stage_records_out_total", `stage="exporters[0]"`) < float64(records) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			m := w.Scrape(t)
			if m["weir_wasm_errors_total"] == 0 || !w.HasSample(t, "weir_wasm_errors_total", fmt.Sprintf("reason=%q", reason)) {
				t.Errorf("no weir_wasm_errors_total{reason=%q}: %v", reason, m["weir_wasm_errors_total"])
			}
			if !w.HasSample(t, "weir_stage_records_errored_total", fmt.Sprintf("reason=%q", reason)) {
				t.Errorf("no weir_stage_records_errored_total{reason=%q}", reason)
			}
			if m["weir_wasm_restarts_total"] < m["weir_wasm_errors_total"] {
				t.Errorf("%v restarts for %v errors", m["weir_wasm_restarts_total"], m["weir_wasm_errors_total"])
			}
			if !w.Running() {
				t.Fatalf("weir exited:\n%s", w.Stderr.String())
			}
			logs := w.Stderr.String()
			if !strings.Contains(logs, "processor failed on a batch") || !strings.Contains(logs, "wasm "+module) || !strings.Contains(logs, "reason="+reason) {
				t.Errorf("the failure is not logged with the module's path and reason %s:\n%s", reason, logs)
			}
			w.Stop(t)
			if n := len(jsonlLines(t, out)); n != records {
				t.Fatalf("fail-open let %d of %d records through", n, records)
			}
		})
	}
}

// labelled returns the sum of the samples of metric name whose labels
// include label (e.g. `stage="exporters[0]"`).
func labelled(t *testing.T, w *weirProc, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + w.Metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// TestWASMValidateRefuses checks that `weir validate` refuses a module of
// another ABI version, a module without the ABI exports, a file that is
// not WebAssembly and a config the module rejects, each with a message
// that says so, and accepts the good module.
func TestWASMValidateRefuses(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.wasm")
	if err := os.WriteFile(text, []byte("these are notes, not a module\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("\x00asm\x01\x00\x00\x00\xff\xff"), 0o644); err != nil {
		t.Fatal(err)
	}
	protocolfilter := wasmModule(t, "./examples/wasm/protocolfilter")
	capture := filepath.Join(weirtest.RepoRoot(), "test", "testdata", "softflowd-ipfix.pcap")
	// A whole pipeline, so that `weir run` would run if the module loaded.
	const pipelineWith = `
pipeline:
  sources:
    - source.pcap: {path: %q}
  processors:
    - wasm: {path: %q, config: %s, cache_dir: %q}
  exporters:
    - export.jsonl: {path: %q}
`
	cases := []struct {
		name, path, config string
		want               []string // in stderr
	}{
		{"wrong abi version", wasmModule(t, "./core/wasmhost/testdata/guests/badversion"), "null",
			[]string{"abi version 99 is not supported", "supports abi version 1"}},
		{"missing exports", wasmModule(t, "./core/wasmhost/testdata/guests/noexports"), "null",
			[]string{"not a weir plugin", "missing exports", "weir_abi_version", "weir_process"}},
		{"not wasm", text, "null", []string{"not a WebAssembly module", "notes.wasm"}},
		{"broken wasm", garbage, "null", []string{"not a WebAssembly module", "garbage.wasm"}},
		{"config rejected", protocolfilter, "{protocols: [[6]]}", []string{"module rejected its config", "protocols[0]"}},
		{"missing file", filepath.Join(dir, "absent.wasm"), "null", []string{"absent.wasm"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
			yaml := fmt.Sprintf(pipelineWith, capture, c.path, c.config, wasmhosttest.CacheDir(), filepath.Join(dir, "out.jsonl"))
			if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err := runWeirCmd(t, "validate", "-c", cfg)
			if err == nil {
				t.Fatalf("validate accepted it:\n%s%s", stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(string(stderr), w) {
					t.Errorf("validate's message lacks %q:\n%s", w, stderr)
				}
			}
			// The same refusal stops `weir run` before it starts.
			if _, runErr, err := runWeirCmd(t, "run", "-c", cfg); err == nil || !strings.Contains(string(runErr), c.want[0]) {
				t.Errorf("weir run: %v\n%s", err, runErr)
			}
		})
	}
	t.Run("good module", func(t *testing.T) {
		cfg := filepath.Join(dir, "good.yaml")
		yaml := fmt.Sprintf(pipelineWith, capture, protocolfilter, "{protocols: [tcp]}", wasmhosttest.CacheDir(), filepath.Join(dir, "out.jsonl"))
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := runWeirCmd(t, "validate", "-c", cfg); err != nil {
			t.Fatalf("validate refused the good module: %v\n%s", err, stderr)
		}
	})
}
