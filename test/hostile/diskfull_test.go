package hostile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
	"golang.org/x/sys/unix"
)

// TestDiskFullAndRecovery: export.jsonl on a 512 KiB tmpfs. While the
// disk is full, batches are retried then dropped and counted; the file
// never ends mid-line; once space is freed, records are written again
// without a restart. Every record sent is written or counted.
func TestDiskFullAndRecovery(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	jsonl := filepath.Join(dir, "flows.jsonl")
	udpPort := weirtest.FreePort(t, "udp")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 256, timeout: 50ms}
  # The exporter's queue overflows while it retries: count it (drop), as
  # the accounting below expects, rather than hold the source (auto).
  queue: {when_full: drop}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "", readers: 1}
  exporters:
    - export.jsonl: {path: %q, retry_for: 300ms}
`, udpPort, jsonl))
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := 0
	send := func(n int) {
		for _, m := range records(t, 1, sent, n, 1400) {
			c.Write(m)
		}
		sent += n
		w.WaitSample(t, "weir_source_ipfix_records_total", "", float64(sent))
	}
	send(500)
	w.WaitSample(t, "weir_export_jsonl_records_written_total", "", 500)
	// Fill the disk.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	send(3000)
	w.WaitSample(t, "weir_export_jsonl_records_dropped_total", "", 1)
	// Space returns: writing resumes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	written := w.Sample(t, "weir_export_jsonl_records_written_total", "")
	send(1000)
	w.WaitSample(t, "weir_export_jsonl_records_written_total", "", written+1000)
	// While the exporter retried, its queue filled and the engine dropped
	// (and counted) what did not fit: written + dropped by the exporter +
	// dropped by the queue must cover what was sent.
	accounted := func() float64 {
		return w.Sample(t, "weir_export_jsonl_records_written_total", "") +
			w.Sample(t, "weir_export_jsonl_records_dropped_total", "") +
			w.Sample(t, "weir_stage_records_dropped_total", `reason="queue_full"`)
	}
	for range 600 {
		if accounted() >= float64(sent) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	dropped := int(w.Sample(t, "weir_export_jsonl_records_dropped_total", "") +
		w.Sample(t, "weir_stage_records_dropped_total", `reason="queue_full"`))
	w.Stop(t)
	data, err := os.ReadFile(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Fatalf("file ends mid-line")
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'})
	for _, l := range lines {
		if !json.Valid(l) {
			t.Fatalf("broken line %q", l)
		}
	}
	t.Logf("sent %d, written %d, dropped %d", sent, len(lines), dropped)
	if len(lines)+dropped != sent {
		t.Errorf("written %d + dropped %d != sent %d", len(lines), dropped, sent)
	}
}
