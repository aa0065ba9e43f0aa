package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/test/weirtest"
)

// badMessages returns hand-made malformed IPFIX messages, in sending order.
func badMessages() []struct {
	name string
	msg  []byte
} {
	u16s := func(v ...uint16) []byte {
		var b []byte
		for _, x := range v {
			b = binary.BigEndian.AppendUint16(b, x)
		}
		return b
	}
	set := func(id uint16, body []byte) []byte { return append(u16s(id, uint16(4+len(body))), body...) }
	message := func(domain uint32, sets ...[]byte) []byte {
		m := make([]byte, 16)
		binary.BigEndian.PutUint16(m[0:], 10)
		binary.BigEndian.PutUint32(m[4:], 1780000000)
		binary.BigEndian.PutUint32(m[12:], domain)
		for _, s := range sets {
			m = append(m, s...)
		}
		binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
		return m
	}
	tmpl := set(2, u16s(256, 2, 8, 4, 12, 4))
	lyingLong := message(101, tmpl)
	binary.BigEndian.PutUint16(lyingLong[2:], uint16(len(lyingLong)+64))
	lyingShort := message(102, tmpl)
	binary.BigEndian.PutUint16(lyingShort[2:], 10)
	setOverrun := message(103, tmpl)
	binary.BigEndian.PutUint16(setOverrun[18:], 500)
	return []struct {
		name string
		msg  []byte
	}{
		{"message length beyond the datagram", lyingLong},
		{"message length below the header", lyingShort},
		{"set length overrunning the message", setOverrun},
		{"template overrunning its set", message(104, set(2, u16s(300, 60, 8, 4, 12, 4)))},
		{"options template overrunning its set", message(105, set(3, u16s(301, 9, 1, 149, 4)))},
		{"data set for an unknown template", message(106, set(999, bytes.Repeat([]byte{7}, 24)))},
		{"zero-length set", message(107, []byte{0, 2, 0, 0}, tmpl)},
		{"reserved set ID", message(108, set(1, []byte{0, 0, 0, 0}))},
		{"NetFlow v9 header", append([]byte{0, 9}, message(109, tmpl)[2:]...)},
		{"truncated header", []byte{0, 10, 0, 16, 1, 2}},
	}
}

// problems sums the counters that record malformed or unusable input.
func problems(m map[string]float64) float64 {
	return m["weir_source_ipfix_malformed_messages_total"] + m["weir_source_ipfix_malformed_sets_total"] +
		m["weir_source_ipfix_pending_held_total"]
}

// goodRecords encodes n records numbered by source port, in domain.
func goodRecords(t *testing.T, domain uint32, first, n int) [][]byte {
	t.Helper()
	b := flow.NewBatch(n)
	for i := first; i < first+n; i++ {
		plugintest.Record(b, "192.0.2.1", "192.0.2.2", 17, uint16(i), 53, 1, uint64(i))
	}
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: domain, MaxMessageSize: 1400})
	var msgs [][]byte
	if err := enc.Encode(b.Records, time.Now(), func(m []byte) error {
		msgs = append(msgs, bytes.Clone(m))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// TestBadInput: random bytes and every kind of malformed message over UDP,
// and a non-IPFIX TCP stream: weir counts each one, logs the exporter,
// keeps running, and still emits every good record sent afterwards.
func TestBadInput(t *testing.T) {
	udpPort, tcpPort := weirtest.FreePort(t, "udp"), weirtest.FreePort(t, "tcp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 64, timeout: 50ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "127.0.0.1:%d"}
  processors:
    - proxy: {}
  exporters:
    - export.jsonl: {path: %q}
`, udpPort, tcpPort, jsonl))
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Each kind of bad message must move a counter on its own.
	waitMore := func(kind string, before float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for problems(w.Scrape(t)) <= before {
			if time.Now().After(deadline) {
				t.Errorf("%s: not counted (malformed messages + sets + held sets stayed at %v)", kind, before)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	rng := rand.New(rand.NewPCG(7, 11))
	before := problems(w.Scrape(t))
	for i := 0; i < 300; i++ {
		p := make([]byte, 1+rng.IntN(1400))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if i%3 == 0 && len(p) > 2 {
			p[0], p[1] = 0, 10 // passes the version check, fails deeper
		}
		c.Write(p)
	}
	waitMore("random bytes", before)
	for _, b := range badMessages() {
		before := problems(w.Scrape(t))
		if _, err := c.Write(b.msg); err != nil {
			t.Fatal(err)
		}
		waitMore(b.name, before)
	}

	// A TCP peer that does not speak IPFIX is cut off and counted.
	bad, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	bad.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n" + strings.Repeat("x", 100)))
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); err == nil {
		t.Error("weir kept a non-IPFIX TCP stream open")
	}
	bad.Close()
	w.WaitMetric(t, "weir_source_ipfix_tcp_framing_errors_total", 1)

	if !w.Running() {
		t.Fatalf("weir died on bad input:\n%s", w.Stderr.String())
	}
	log := w.Stderr.String()
	if !strings.Contains(log, "malformed ipfix message") || !strings.Contains(log, "exporter="+c.LocalAddr().String()) {
		t.Errorf("no malformed-message log naming exporter %s:\n%s", c.LocalAddr(), log)
	}

	// Good records after all that, over UDP and TCP.
	for _, m := range goodRecords(t, 3, 1000, 200) {
		c.Write(m)
	}
	good, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range goodRecords(t, 4, 5000, 100) {
		good.Write(m)
	}
	good.Close()
	w.WaitMetric(t, "weir_source_ipfix_records_total", 300)
	w.Stop(t)

	seen := map[string]bool{}
	for _, l := range jsonlLines(t, jsonl) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if d := m["observationDomainId"]; d == float64(3) || d == float64(4) {
			seen[fmt.Sprint(d, "/", m["sourceTransportPort"])] = true
		}
	}
	for i := 1000; i < 1200; i++ {
		if !seen[fmt.Sprint(3, "/", i)] {
			t.Errorf("good UDP record %d missing from the JSONL", i)
		}
	}
	for i := 5000; i < 5100; i++ {
		if !seen[fmt.Sprint(4, "/", i)] {
			t.Errorf("good TCP record %d missing from the JSONL", i)
		}
	}
	if len(seen) != 300 {
		t.Errorf("JSONL has %d distinct good records, want 300", len(seen))
	}
}
