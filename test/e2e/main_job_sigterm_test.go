package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/weir-flow/weir/test/weirtest"
)

// TestSIGTERMLosesNothing: records are still arriving (UDP and TCP) when
// weir gets SIGTERM; it drains its sockets, flushes every queue and
// exporter, exits 0, and the JSONL holds every record sent.
func TestSIGTERMLosesNothing(t *testing.T) {
	udpPort, tcpPort := weirtest.FreePort(t, "udp"), weirtest.FreePort(t, "tcp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 256, timeout: 10s}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "127.0.0.1:%d", readers: 2}
  processors:
    - proxy: {}
  exporters:
    - export.jsonl: {path: %q}
`, udpPort, tcpPort, jsonl))
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	tc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	const nUDP, nTCP = 30000, 20000
	udpMsgs, tcpMsgs := goodRecords(t, 3, 0, nUDP), goodRecords(t, 4, 0, nTCP)
	for i := 0; i < max(len(udpMsgs), len(tcpMsgs)); i++ {
		if i < len(udpMsgs) {
			u.Write(udpMsgs[i])
		}
		if i < len(tcpMsgs) {
			if _, err := tc.Write(tcpMsgs[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The batch timeout is 10s: whatever weir holds now is only in its
	// sockets, readers and queues.
	drops := w.Scrape(t)["weir_source_ipfix_kernel_drops_total"]
	w.Stop(t)
	if drops != 0 {
		t.Fatalf("the kernel dropped %v datagrams: the sender outran the socket buffer, the test proves nothing", drops)
	}
	counts := map[float64]int{}
	for _, l := range jsonlLines(t, jsonl) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		counts[m["observationDomainId"].(float64)]++
	}
	if counts[3] != nUDP || counts[4] != nTCP {
		t.Errorf("after SIGTERM the JSONL holds %d UDP and %d TCP records, want %d and %d", counts[3], counts[4], nUDP, nTCP)
	}
}
