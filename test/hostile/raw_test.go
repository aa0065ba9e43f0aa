package hostile

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
)

// TestRawForwarderHostileInput: a forwarder that re-exports raw messages
// (source.ipfix raw: true → proxy → export.ipfix) is sent, between good
// messages, datagrams it cannot read (too short, wrong version) and one
// whose second set overruns it. The unreadable ones are dropped and
// counted as malformed, one per message; the overrun's good set still
// goes out; the collector gets every good record and weir stops cleanly.
func TestRawForwarderHostileInput(t *testing.T) {
	col := newCollector(t)
	udpPort := weirtest.FreePort(t, "udp")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 16, timeout: 50ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "", raw: true}
  processors:
    - proxy: {}
  exporters:
    - export.ipfix: {address: %q, transport: tcp}
`, udpPort, col.ln.Addr().String()))

	good := records(t, 1, 0, 40, 1400)
	overrun := append([]byte(nil), records(t, 2, 40, 10, 1400)[0]...)
	overrun = append(overrun, 1, 44, 0, 40, 9, 9) // a set of 40 bytes in 6
	binary.BigEndian.PutUint16(overrun[2:], uint16(len(overrun)))
	badVersion := append([]byte(nil), good[0]...)
	binary.BigEndian.PutUint16(badVersion, 9)
	datagrams := append([][]byte{{0, 10, 0, 1}, badVersion, overrun}, good...)

	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, d := range datagrams {
		if _, err := conn.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	const want = 50 // 40 good + the overrun message's 10
	w.WaitSample(t, "weir_export_ipfix_raw_records_total", `path="copied"`, want)
	w.WaitSample(t, "weir_export_ipfix_records_dropped_total", `reason="malformed"`, 2)
	if got := w.Sample(t, "weir_export_ipfix_raw_malformed_messages_total", ""); got != 1 {
		t.Errorf("raw_malformed_messages_total = %v, want 1 (the overrun)", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for col.records() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// One raw record per datagram: 2 dropped as malformed, the rest out.
	const stage = `stage="exporters[0]"`
	in, out := w.Sample(t, "weir_stage_records_in_total", stage), w.Sample(t, "weir_stage_records_out_total", stage)
	malformed := w.Sample(t, "weir_stage_records_dropped_total", `reason="malformed",`+stage)
	if in != float64(len(datagrams)) || out != in-2 || malformed != 2 {
		t.Errorf("exporter stage: in %v, out %v, dropped malformed %v; want %d, %d, 2", in, out, malformed, len(datagrams), len(datagrams)-2)
	}
	w.Stop(t)
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.got != want || len(col.errs) > 0 {
		t.Errorf("collector got %d records (errors %v), want %d", col.got, col.errs, want)
	}
}
