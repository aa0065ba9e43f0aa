package e2e

// End-to-end tests of `weir bench`: the weir binary built by TestMain run on
// the configs of configs/bench.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"image"
	_ "image/png"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/weir-flow/weir/internal/bench"
	"github.com/weir-flow/weir/test/weirtest"
)

// runBench runs weir with args from the repository root and returns its
// stdout; a non-zero exit fails the test with stderr.
func runBench(t *testing.T, args ...string) []byte {
	t.Helper()
	stdout, stderr, err := runWeirCmd(t, args...)
	if err != nil {
		t.Fatalf("weir %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

func runWeirCmd(t *testing.T, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	cmd := exec.Command(weirBin, args...)
	cmd.Dir = weirtest.RepoRoot()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.Bytes(), errb.Bytes(), err
}

// benchReport decodes `weir bench --json` output strictly.
func benchReport(t *testing.T, data []byte) *bench.Report {
	t.Helper()
	var rep bench.Report
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("bench --json output does not parse: %v\n%s", err, data)
	}
	if rep.Host == nil || rep.Host.CPUs < 1 {
		t.Errorf("no host description: %+v", rep.Host)
	}
	return &rep
}

// checkBenchAddsUp checks one run's figures: the chain's records in are the
// input, each processor's records out are the next stage's records in, the
// sink got the last processor's output.
func checkBenchAddsUp(t *testing.T, res *bench.Result, input uint64) {
	t.Helper()
	if res.Records != input || res.Total.In != input {
		t.Fatalf("%s: fed %d, chain in %d; want the input's %d", res.Chain, res.Records, res.Total.In, input)
	}
	if len(res.Stages) == 0 || res.Stages[0].In != input {
		t.Fatalf("%s: first stage %+v; want in = %d", res.Chain, res.Stages, input)
	}
	last := res.Stages[0].Out
	for i, s := range res.Stages {
		if s.In-s.Dropped != s.Out {
			t.Errorf("%s %s: in %d - dropped %d != out %d", res.Chain, s.Name, s.In, s.Dropped, s.Out)
		}
		if s.Kind != "processor" {
			continue
		}
		if i > 0 && res.Stages[i-1].Kind == "processor" && res.Stages[i-1].Out != s.In {
			t.Errorf("%s: %s out %d != %s in %d", res.Chain, res.Stages[i-1].Name, res.Stages[i-1].Out, s.Name, s.In)
		}
		last = s.Out
		if s.NsPerRecordP50 <= 0 || s.RecordsPerSecond <= 0 {
			t.Errorf("%s %s: p50 %v ns/record, %v records/s", res.Chain, s.Name, s.NsPerRecordP50, s.RecordsPerSecond)
		}
	}
	if res.Total.Out != last || res.Sink.Records != last {
		t.Errorf("%s: chain out %d, sink %d; want the last processor's %d", res.Chain, res.Total.Out, res.Sink.Records, last)
	}
}

func TestBenchJSONCountsMatchInput(t *testing.T) {
	for _, batch := range []string{"64", "256"} {
		t.Run("batch "+batch, func(t *testing.T) {
			out := runBench(t, "bench", "-c", "configs/bench/protocol-proxy.yaml",
				"--synthetic", "flows=3000,ipv6=0.5", "--seed", "5", "--batch", batch, "--json", "--alloc-batches", "4")
			rep := benchReport(t, out)
			if len(rep.Runs) != 1 || rep.Comparison != nil {
				t.Fatalf("want one run, got %d runs, comparison %v", len(rep.Runs), rep.Comparison != nil)
			}
			res := rep.Runs[0]
			checkBenchAddsUp(t, res, 3000)
			if strconv.Itoa(res.BatchSize) != batch || len(res.Stages) != 2 ||
				res.Stages[0].Plugin != "filter.protocol" || res.Stages[1].Plugin != "proxy" {
				t.Errorf("batch %d, stages %+v", res.BatchSize, res.Stages)
			}
			if !strings.Contains(res.Input, "flows=3000") || !strings.Contains(res.Input, "seed=5") {
				t.Errorf("input %q does not describe the spec and seed", res.Input)
			}
		})
	}
	t.Run("records cycles the input", func(t *testing.T) {
		rep := benchReport(t, runBench(t, "bench", "-c", "configs/bench/protocol.yaml",
			"--synthetic", "flows=1000", "--records", "4500", "--json", "--rounds", "2"))
		if len(rep.Runs) != 2 || rep.RunsNsPerRecord == nil || rep.RunsNsPerRecord.N != 2 {
			t.Fatalf("want 2 runs and their spread: %d, %+v", len(rep.Runs), rep.RunsNsPerRecord)
		}
		for _, r := range rep.Runs {
			checkBenchAddsUp(t, r, 4500)
		}
	})
}

var ratioLine = regexp.MustCompile(`(?m)^ratio +other/base ([0-9.]+)× \(p50 ns/record, median of (\d+) rounds; min ([0-9.]+)×, max ([0-9.]+)×`)

// checkCompare runs a comparison and checks its text and JSON forms.
func checkCompare(t *testing.T, base, other string, extra ...string) *bench.Comparison {
	t.Helper()
	args := append([]string{"bench", "-c", base, "--compare", other, "--rounds", "3"}, extra...)
	text := string(runBench(t, args...))
	m := ratioLine.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no ratio line in:\n%s", text)
	}
	ratio, _ := strconv.ParseFloat(m[1], 64)
	lo, _ := strconv.ParseFloat(m[3], 64)
	hi, _ := strconv.ParseFloat(m[4], 64)
	if m[2] != "3" || !(ratio > 0) || math.IsInf(ratio, 0) || lo > ratio || ratio > hi {
		t.Errorf("ratio %v (min %v, max %v) over %s rounds", ratio, lo, hi, m[2])
	}
	for _, want := range []string{"base      " + base, "other     " + other, "base, median round:", "other, median round:"} {
		if !strings.Contains(text, want) {
			t.Errorf("comparison text lacks %q:\n%s", want, text)
		}
	}
	rep := benchReport(t, runBench(t, append(args, "--json")...))
	cmp := rep.Comparison
	if cmp == nil || len(cmp.Rounds) != 3 || cmp.Ratio.N != 3 {
		t.Fatalf("comparison JSON: %+v", cmp)
	}
	return cmp
}

func TestBenchComparePrintsRatio(t *testing.T) {
	cmp := checkCompare(t, "configs/bench/protocol.yaml", "configs/bench/protocol-proxy.yaml", "--synthetic", "flows=5000", "--batch", "64")
	for _, r := range cmp.Rounds {
		checkBenchAddsUp(t, r.Base, 5000)
		checkBenchAddsUp(t, r.Other, 5000)
		// Same filter, same input: the same records survive in both.
		if r.Base.Stages[0].Out != r.Other.Stages[0].Out {
			t.Errorf("filters kept %d and %d records of the same input", r.Base.Stages[0].Out, r.Other.Stages[0].Out)
		}
		if r.Ratio <= 0 || r.Ratio != r.Other.Total.NsPerRecordP50/r.Base.Total.NsPerRecordP50 {
			t.Errorf("round ratio %v", r.Ratio)
		}
	}
}

func TestBenchPlot(t *testing.T) {
	dir := t.TempDir()
	svg, png := filepath.Join(dir, "stages.svg"), filepath.Join(dir, "cmp.png")
	out := runBench(t, "bench", "-c", "configs/bench/protocol-proxy.yaml", "--synthetic", "flows=2000", "--plot", svg)
	if !strings.Contains(string(out), "plot      "+svg) {
		t.Errorf("output does not name the plot:\n%s", out)
	}
	data, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	var root string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not valid XML: %v", svg, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" || !bytes.Contains(data, []byte("proxy")) {
		t.Errorf("svg root %q, names proxy: %v", root, bytes.Contains(data, []byte("proxy")))
	}
	runBench(t, "bench", "-c", "configs/bench/protocol.yaml", "--compare", "configs/bench/protocol-proxy.yaml",
		"--rounds", "1", "--synthetic", "flows=2000", "--plot", png, "--json")
	f, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, format, err := image.Decode(f)
	if err != nil || format != "png" || img.Bounds().Dx() < 200 {
		t.Fatalf("png: %v, format %q", err, format)
	}
	if _, stderr, err := runWeirCmd(t, "bench", "-c", "configs/bench/protocol.yaml", "--synthetic", "flows=100", "--plot", filepath.Join(dir, "x.bmp")); err == nil ||
		!strings.Contains(string(stderr), "unsupported plot format") {
		t.Errorf("--plot x.bmp: %v, %s", err, stderr)
	}
}

func TestBenchRefusesWhatValidateRefuses(t *testing.T) {
	cases := map[string]string{
		"unknown key": `
pipeline:
  processors:
    - filter.protocol: {protocols: [tcp], protocls: [udp]}
`,
		"unknown plugin": `
pipeline:
  processors:
    - filter.nosuch: {}
`,
		"bad value": `
pipeline:
  batch: {size: -1}
  processors:
    - filter.protocol: {protocols: [tcp]}
`,
		"missing file": "",
	}
	dir := t.TempDir()
	for name, yaml := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if yaml != "" {
				if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, vErr, err := runWeirCmd(t, "validate", "-c", path)
			if err == nil {
				t.Fatalf("validate accepted %s", name)
			}
			out, bErr, err := runWeirCmd(t, "bench", "-c", path, "--synthetic", "flows=100")
			if err == nil {
				t.Fatalf("bench accepted what validate refuses:\n%s", out)
			}
			if string(bErr) != string(vErr) {
				t.Errorf("bench says\n%s\nvalidate says\n%s", bErr, vErr)
			}
			// Also as the --compare side.
			_, cErr, err := runWeirCmd(t, "bench", "-c", "configs/bench/protocol.yaml", "--compare", path, "--synthetic", "flows=100")
			if err == nil || string(cErr) != string(vErr) {
				t.Errorf("bench --compare: %v\n%s\nvalidate says\n%s", err, cErr, vErr)
			}
		})
	}
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"--synthetic", "flows=0"},
			{"--synthetic", "tcp=0.9,udp=0.9"},
			{"--input", "x.pcap", "--synthetic", "flows=1"},
			{"--rounds", "-1"},
			{"--input", filepath.Join(dir, "missing.pcap")},
		} {
			if out, _, err := runWeirCmd(t, append([]string{"bench", "-c", "configs/bench/protocol.yaml"}, args...)...); err == nil {
				t.Errorf("bench %v succeeded:\n%s", args, out)
			}
		}
	})
}

// TestBenchCaptureInput feeds the records of an IPFIX capture and checks
// their count against what `weir run` replays from the same file.
func TestBenchCaptureInput(t *testing.T) {
	capture := filepath.Join(weirtest.RepoRoot(), "test", "testdata", "softflowd-ipfix.pcap")
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "out.jsonl")
	cfg := filepath.Join(dir, "replay.yaml")
	yaml := "pipeline:\n  queue: {when_full: block}\n  sources:\n    - source.pcap: {path: " + strconv.Quote(capture) +
		"}\n  processors:\n    - filter.protocol: {protocols: [tcp, udp, icmp]}\n  exporters:\n    - export.jsonl: {path: " + strconv.Quote(jsonl) + "}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	runBench(t, "run", "-c", cfg)
	f, err := os.Open(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	var lines uint64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines++
	}
	f.Close()

	rep := benchReport(t, runBench(t, "bench", "-c", cfg, "--input", capture, "--json", "--with-io"))
	res := rep.Runs[0]
	if res.Input != capture || !res.WithIO {
		t.Errorf("input %q, with_io %v", res.Input, res.WithIO)
	}
	// --with-io ran the exporter too, appending one line per record kept.
	if res.Stages[0].Out != lines || len(res.Stages) != 2 || res.Stages[1].Kind != "exporter" || res.Stages[1].In != lines {
		t.Errorf("bench kept %d records (stages %+v); weir run exported %d", res.Stages[0].Out, res.Stages, lines)
	}
	checkBenchAddsUp(t, res, res.Records)

	// Without --with-io the capture's records all enter the chain.
	plain := benchReport(t, runBench(t, "bench", "-c", cfg, "--input", capture, "--json")).Runs[0]
	if plain.WithIO || len(plain.Stages) != 1 || plain.Stages[0].Out != lines {
		t.Errorf("without --with-io: %+v", plain.Stages)
	}
	checkBenchAddsUp(t, plain, plain.Records)
}

// TestBenchProgressBar checks the bar shows on a terminal (a pty made by
// script(1)) and nowhere else.
func TestBenchProgressBar(t *testing.T) {
	_, stderr, err := runWeirCmd(t, "bench", "-c", "configs/bench/protocol.yaml", "--synthetic", "flows=2000")
	if err != nil || len(stderr) != 0 {
		t.Errorf("stdout not a terminal: err %v, stderr %q; want a quiet run", err, stderr)
	}
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatal("script(1) is not installed (Debian package bsdutils)")
	}
	// Enough records that the bar renders before the run ends.
	cmd := exec.Command(script, "-qec", weirBin+" bench -c configs/bench/protocol-proxy.yaml --synthetic flows=20000 --records 3000000 --alloc-batches -1", "/dev/null")
	cmd.Dir = weirtest.RepoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("weir bench under a pty: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("round 1/1")) || !bytes.Contains(out, []byte("%")) {
		t.Errorf("no progress bar on a terminal:\n%q", out)
	}
	if !bytes.Contains(out, []byte("sink")) {
		t.Errorf("no report after the bar:\n%s", out)
	}
}
