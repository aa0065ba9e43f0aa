package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"image"
	_ "image/png"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func testReport(t *testing.T, compare bool) *Report {
	t.Helper()
	spec, _ := ParseSpec("flows=2000")
	in := Generate(spec, 1)
	base := newTestChain(t, twoStages, ChainOptions{Name: "two.yaml"})
	if !compare {
		res, err := base.Run(context.Background(), in, RunOptions{AllocBatches: 2})
		if err != nil {
			t.Fatal(err)
		}
		return &Report{Runs: []*Result{res}}
	}
	other := newTestChain(t, `
pipeline:
  processors:
    - proxy: {}
`, ChainOptions{Name: "proxy.yaml"})
	cmp, err := Compare(context.Background(), base, other, in, 2, RunOptions{AllocBatches: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Report{Comparison: cmp}
}

func TestReportJSON(t *testing.T) {
	for _, compare := range []bool{false, true} {
		rep := testReport(t, compare)
		var buf bytes.Buffer
		if err := rep.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		var back Report
		dec := json.NewDecoder(&buf)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&back); err != nil {
			t.Fatalf("decode: %v", err)
		}
		var runs []*Result
		if compare {
			if back.Comparison == nil || len(back.Comparison.Rounds) != 2 {
				t.Fatalf("comparison lost: %+v", back.Comparison)
			}
			for _, r := range back.Comparison.Rounds {
				runs = append(runs, r.Base, r.Other)
			}
		} else {
			runs = back.Runs
		}
		for _, r := range runs {
			if r.Records != 2000 || r.Total.In != 2000 {
				t.Errorf("round-tripped records %d, chain in %d; want 2000", r.Records, r.Total.In)
			}
		}
	}
	// Field names are stable snake_case.
	var buf bytes.Buffer
	_ = testReport(t, false).WriteJSON(&buf)
	for _, key := range []string{`"records_in"`, `"ns_per_record_p99"`, `"allocs_per_record"`, `"peak_rss_bytes"`, `"peak_heap_bytes"`, `"batch_size"`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("JSON has no %s", key)
		}
	}
}

func TestReportText(t *testing.T) {
	var buf bytes.Buffer
	if err := testReport(t, false).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"chain     two.yaml", "processors[0]  filter.protocol", "processors[1]  proxy", "\nchain ", "\nsink ", "memory    peak RSS", "records/s", "allocs/rec"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	if err := testReport(t, true).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out = buf.String()
	for _, want := range []string{"base      two.yaml", "other     proxy.yaml", "ratio     other/base ", "×", "base, median round:", "other, median round:"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison report lacks %q:\n%s", want, out)
		}
	}
	// A failing writer's error is returned.
	if err := testReport(t, false).WriteText(failWriter{}); err == nil {
		t.Error("WriteText to a failing writer: no error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPlot(t *testing.T) {
	dir := t.TempDir()
	for _, compare := range []bool{false, true} {
		rep := testReport(t, compare)
		svg := filepath.Join(dir, "stages.svg")
		if err := rep.Plot(svg); err != nil {
			t.Fatalf("plot svg: %v", err)
		}
		data, err := os.ReadFile(svg)
		if err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(bytes.NewReader(data))
		root := ""
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("svg is not XML: %v", err)
			}
			if se, ok := tok.(xml.StartElement); ok && root == "" {
				root = se.Name.Local
			}
		}
		if root != "svg" {
			t.Errorf("svg root element %q", root)
		}
		if !bytes.Contains(data, []byte("filter.protocol")) || !bytes.Contains(data, []byte("ns/record")) {
			t.Errorf("svg lacks the stage or axis labels")
		}
		png := filepath.Join(dir, "stages.png")
		if err := rep.Plot(png); err != nil {
			t.Fatalf("plot png: %v", err)
		}
		f, err := os.Open(png)
		if err != nil {
			t.Fatal(err)
		}
		img, format, err := image.Decode(f)
		f.Close()
		if err != nil || format != "png" || img.Bounds().Dx() < 100 || img.Bounds().Dy() < 100 {
			t.Fatalf("png: %v, format %q", err, format)
		}
	}
	if err := testReport(t, false).Plot(filepath.Join(dir, "x.txt")); !errors.Is(err, ErrPlotFormat) {
		t.Errorf("plot .txt: %v, want ErrPlotFormat", err)
	}
	if err := (&Report{}).Plot(filepath.Join(dir, "x.svg")); err == nil {
		t.Error("plot of an empty report: no error")
	}
}

func TestHostInfo(t *testing.T) {
	h := HostInfo()
	if h.CPUs < 1 || h.GOMAXPROCS < 1 || h.GoVersion == "" || h.GOOS == "" {
		t.Fatalf("host %+v", h)
	}
	if runtime.GOOS == "linux" && h.LoadAverage < 0 {
		t.Errorf("no load average on Linux: %+v", h)
	}
	var buf bytes.Buffer
	rep := testReport(t, false)
	rep.Host = &h
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "host      "+h.GOOS+"/"+h.GOARCH) {
		t.Errorf("report does not start with the host line:\n%s", buf.String())
	}
}
