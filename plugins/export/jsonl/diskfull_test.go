package jsonl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

// fill writes a filler file until the disk is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return p
		}
	}
}

func diskBatch(first, n int) *flow.Batch {
	b := flow.NewBatch(n)
	for i := range n {
		plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, uint16(first+i), 443, 1, 100)
	}
	return b
}

// checkLines checks that the file holds only whole JSON lines and returns
// their source ports.
func checkLines(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("file ends mid-line: %q", data[max(0, len(data)-40):])
	}
	var ports []int
	for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		ports = append(ports, int(m["sourceTransportPort"].(float64)))
	}
	return ports
}

// TestDiskFull reproduces issue 12: on a full disk the file never ends
// mid-line, records that cannot be written are counted, and writing
// resumes once space is freed — within retry_for, the batch is delivered
// whole. Through the page cache (a 256 KiB tmpfs) and with O_DIRECT (a
// 1 MiB ext4).
func TestDiskFull(t *testing.T) {
	t.Run("page cache", func(t *testing.T) { diskFull(t, mountFS(t, "tmpfs", "256k"), DirectAuto) })
	t.Run("O_DIRECT", func(t *testing.T) { diskFull(t, mountFS(t, "ext4", "1M"), DirectOn) })
}

func diskFull(t *testing.T, dir, mode string) {
	path := filepath.Join(dir, "flows.jsonl")
	cfg := DefaultConfig()
	cfg.Path, cfg.RetryFor, cfg.DirectIO = path, 0, mode
	set := plugin.NopSettings(ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	e, err := New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	var out plugintest.Outcome
	e.SetOutcome(&out)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	if (e.direct != nil) != (mode == DirectOn) {
		t.Fatalf("direct_io %s: O_DIRECT used %v", mode, e.direct != nil)
	}
	ctx := context.Background()
	if err := exportWait(ctx, e, diskBatch(0, 100)); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, dir)

	// No retry: the records that do not fit are dropped, whatever was cut
	// short is removed.
	if err := exportWait(ctx, e, diskBatch(1000, 2000)); err != nil {
		t.Fatalf("Export on a full disk: %v, want nil (drops are reported when written)", err)
	}
	ports := checkLines(t, path)
	dropped := int(counter(t, reg, "weir_export_jsonl_records_dropped_total"))
	if len(ports)+dropped != 2100 || dropped == 0 {
		t.Errorf("%d lines + %d dropped, want 2100 with some dropped", len(ports), dropped)
	}
	// The engine learns the same through the outcome: the unwritten
	// records dropped (write_error), the others delivered.
	if d, w := out.Counts(); d != len(ports) || len(w) != 1 || w[plugin.DropWriteError] != dropped {
		t.Errorf("outcome: delivered %d, dropped %v; want %d and write_error %d", d, w, len(ports), dropped)
	}

	// With retries: the writer waits, space comes back, the batch goes
	// through whole.
	e.cfg.RetryFor = time.Minute
	done := make(chan error, 1)
	go func() { done <- exportWait(ctx, e, diskBatch(5000, 500)) }()
	before := counter(t, reg, "weir_export_jsonl_write_errors_total")
	for counter(t, reg, "weir_export_jsonl_write_errors_total") == before {
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Export after space was freed: %v", err)
	}
	ports = checkLines(t, path)
	seen := map[int]int{}
	for _, p := range ports {
		seen[p]++
	}
	for p := 5000; p < 5500; p++ {
		if seen[p] != 1 {
			t.Fatalf("record %d written %d times, want once", p, seen[p])
		}
	}
	if got := counter(t, reg, "weir_export_jsonl_records_dropped_total"); int(got) != dropped {
		t.Errorf("dropped grew to %v during a successful retry", got)
	}
	if d, _ := out.Counts(); d != len(ports) {
		t.Errorf("outcome: delivered %d, file has %d lines", d, len(ports))
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name)
}
