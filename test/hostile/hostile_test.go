package hostile

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/test/weirtest"
)

// records encodes n small records into messages of at most size bytes.
func records(t *testing.T, domain uint32, first, n, size int) [][]byte {
	t.Helper()
	b := flow.NewBatch(n)
	for i := range n {
		r := b.Append()
		r.SetAddr(flow.SourceAddress, netip.MustParseAddr("10.1.0.1"))
		r.SetAddr(flow.DestinationAddress, netip.MustParseAddr("10.2.0.2"))
		r.SetUint(flow.ProtocolIdentifier, 17)
		r.SetUint(flow.SourceTransportPort, uint64((first+i)%65536))
		r.SetUint(flow.PacketDeltaCount, uint64(first+i))
	}
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: domain, MaxMessageSize: size})
	var msgs [][]byte
	if err := enc.Encode(b.Records, time.Now(), func(m []byte) error {
		msgs = append(msgs, append([]byte(nil), m...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// collector is an IPFIX-over-TCP collector counting the records it decodes.
type collector struct {
	ln    net.Listener
	mu    sync.Mutex
	got   int
	conns int
	errs  []error
}

func newCollector(t *testing.T) *collector {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns++
			c.mu.Unlock()
			go func() {
				defer conn.Close()
				dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
				br := bufio.NewReaderSize(conn, 1<<16)
				b := flow.NewBatch(0)
				from := conn.RemoteAddr().(*net.TCPAddr).AddrPort()
				for {
					msg, err := ipfix.ReadMessage(br, nil)
					if err != nil {
						return
					}
					b.Reset()
					n, err := dec.Decode(b, msg, from)
					c.mu.Lock()
					c.got += n
					if err != nil {
						c.errs = append(c.errs, err)
					}
					c.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

func (c *collector) records() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got
}

// TestOversizedRecordOverTCP: a legal 65,535-byte message whose one record
// carries a 65,492-byte variable-length IE, among 109 good records; after
// the proxy stamps it, it fits no message. export.ipfix over TCP must drop
// and count that record alone: the collector gets the 109 once, on one
// connection, and weir stops cleanly.
func TestOversizedRecordOverTCP(t *testing.T) {
	col := newCollector(t)
	tcpPort := weirtest.FreePort(t, "tcp")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 256, timeout: 100ms}
  sources:
    - source.ipfix: {udp: "", tcp: "127.0.0.1:%d"}
  processors:
    - proxy: {}
  exporters:
    - export.ipfix: {address: %q, transport: tcp}
`, tcpPort, col.ln.Addr().String()))
	// The oversized record: one IE, alone in its message.
	b := flow.NewBatch(1)
	r := b.Append()
	r.Extra = append(r.Extra, flow.Field{Enterprise: 99999, Element: 1, Variable: true, Value: make([]byte, 65492)})
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: 1, MaxMessageSize: 65535})
	var big []byte
	if err := enc.Encode(b.Records, time.Now(), func(m []byte) error { big = append([]byte(nil), m...); return nil }); err != nil {
		t.Fatalf("encode the oversized record: %v", err)
	}
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := append(records(t, 2, 0, 50, 65535), big)
	msgs = append(msgs, records(t, 3, 50, 59, 65535)...)
	for _, m := range msgs {
		if _, err := conn.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	w.WaitSample(t, "weir_export_ipfix_records_dropped_total", `reason="record_too_large"`, 1)
	deadline := time.Now().Add(30 * time.Second)
	for col.records() < 109 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// The engine counts the dropped record as dropped, not out: the
	// exporter stage's out + dropped == in.
	const stage = `stage="exporters[0]"`
	w.WaitSample(t, "weir_stage_records_out_total", stage, 109)
	in, out := w.Sample(t, "weir_stage_records_in_total", stage), w.Sample(t, "weir_stage_records_out_total", stage)
	dropped := w.Sample(t, "weir_stage_records_dropped_total", stage)
	tooLarge := w.Sample(t, "weir_stage_records_dropped_total", `reason="record_too_large",`+stage)
	if in != 110 || out != 109 || dropped != 1 || tooLarge != 1 {
		t.Errorf("exporter stage: in %v, out %v, dropped %v (record_too_large %v); want 110, 109, 1 (1)", in, out, dropped, tooLarge)
	}
	w.Stop(t)
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.got != 109 || col.conns != 1 {
		t.Errorf("collector got %d records on %d connections, want 109 on 1", col.got, col.conns)
	}
}

// TestIdleConnectionsAndSoftflowd: 1,100 TCP connections that each send 5
// bytes and stop must not keep a real softflowd's records out: they are
// refused past max_connections_per_exporter or closed by
// tcp_header_timeout, and softflowd's 109 records all arrive.
func TestIdleConnectionsAndSoftflowd(t *testing.T) {
	capture := weirtest.SharedCapture(t)
	tcpPort := weirtest.FreePort(t, "tcp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 256, timeout: 100ms}
  sources:
    - source.ipfix: {udp: "", tcp: "127.0.0.1:%d", tcp_header_timeout: 5s}
  exporters:
    - export.jsonl: {path: %q}
`, tcpPort, jsonl))
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for range 1100 {
		c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort))
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(idle), err)
		}
		c.Write([]byte{0, 10, 0, 200, 0})
		idle = append(idle, c)
	}
	out, err := exec.Command("softflowd", "-P", "tcp", "-r", capture, "-v", "10", "-n", fmt.Sprintf("127.0.0.1:%d", tcpPort)).CombinedOutput()
	if err != nil {
		t.Fatalf("softflowd: %v\n%s", err, out)
	}
	w.WaitSample(t, "weir_source_ipfix_records_total", "", 109)
	refused := w.Sample(t, "weir_source_ipfix_tcp_connections_refused_total", `reason="max_connections_per_exporter"`)
	if refused < 1100-16 {
		t.Errorf("%v idle connections refused, want at least %d", refused, 1100-16)
	}
	w.WaitSample(t, "weir_source_ipfix_tcp_timeouts_total", `reason="header"`, 16)
	w.Stop(t)
	if n := weirtest.CountLines(t, jsonl); n != 109 {
		t.Errorf("%d records written, want softflowd's 109", n)
	}
}

// TestFloodsBoundedByLimits: template floods (800 templates of 16,000
// fields, 51 MB on the wire), data sets whose template never comes and
// header-only datagrams from 12,000 ports grow weir's RSS by no more than
// the configured limits (plus the fixed cost of the sockets and runtime).
func TestFloodsBoundedByLimits(t *testing.T) {
	udpPort := weirtest.FreePort(t, "udp")
	const (
		templateBytes = 16 << 20
		heldBytes     = 16 << 20
		sessions      = 5000
	)
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  sources:
    - source.ipfix:
        udp: "127.0.0.1:%d"
        tcp: ""
        readers: 1
        rcvbuf: 4MiB
        limits:
          sessions: %d
          sessions_per_exporter: %d
          template_fields: 16383
          template_bytes: %d
          template_bytes_per_exporter: %d
          held_bytes: %d
          held_bytes_per_exporter: %d
  exporters:
    - export.jsonl: {path: "/dev/null"}
`, udpPort, sessions, sessions, templateBytes, templateBytes, heldBytes, heldBytes))
	time.Sleep(500 * time.Millisecond)
	base := w.RSS(t)
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort}
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Pace the sender on what weir has read, so the kernel does not drop
	// the flood before weir sees it.
	paced := func(i int) {
		if i%50 == 49 {
			w.WaitSample(t, "weir_source_ipfix_messages_total", "", float64(0)) // scrape: yields
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range 800 {
		c.Write(wideTemplate(uint16(256+i), 16000, i))
		paced(i)
	}
	// From 12,000 ports: 4,000 data sets of 16 KB whose template never
	// comes (64 MB held if nothing bounded it), then header-only messages.
	body := make([]byte, 16000)
	for p := range 12000 {
		s, err := net.DialUDP("udp", nil, to)
		if err != nil {
			t.Fatal(err)
		}
		if p < 4000 {
			s.Write(message(1, setBytes(300, body)))
		} else {
			s.Write(message(1))
		}
		s.Close()
		paced(p)
	}
	w.WaitSample(t, "weir_source_ipfix_limit_refusals_total", `reason="template_bytes"`, 1)
	w.WaitSample(t, "weir_source_ipfix_limit_refusals_total", `reason="held_bytes"`, 1)
	w.WaitSample(t, "weir_source_ipfix_limit_refusals_total", `reason="sessions"`, 1)
	grown := w.RSS(t) - base
	if g := w.Sample(t, "weir_source_ipfix_template_bytes", ""); g > templateBytes {
		t.Errorf("template bytes %v over the limit %d", g, templateBytes)
	}
	if g := w.Sample(t, "weir_source_ipfix_held_bytes", ""); g > heldBytes {
		t.Errorf("held bytes %v over the limit %d", g, heldBytes)
	}
	if g := w.Sample(t, "weir_source_ipfix_sessions", ""); g > sessions {
		t.Errorf("sessions %v over the limit %d", g, sessions)
	}
	// Limits, 2 KiB per session, and 64 MiB for the rest: socket buffer,
	// the Go heap's slack (GOGC doubles the live heap before collecting).
	bound := int64(2*(templateBytes+heldBytes) + sessions*2048 + 64<<20)
	t.Logf("RSS grew %d MiB (bound %d MiB)", grown>>20, bound>>20)
	if grown > bound {
		t.Errorf("RSS grew by %d MiB, more than the limits allow (%d MiB)", grown>>20, bound>>20)
	}
	w.Stop(t)
}

// TestSIGTERMBacklog: weir is stopped (SIGSTOP) while exporters fill its
// socket buffer, then gets SIGTERM. Every record sent is written or
// counted as lost on shutdown; with the default drain bound, none is lost.
func TestSIGTERMBacklog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drain string
	}{{"default drain", "5s"}, {"no drain", "0s"}} {
		t.Run(tc.name, func(t *testing.T) {
			udpPort := weirtest.FreePort(t, "udp")
			jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
			w := startWeir(t, fmt.Sprintf(`
pipeline:
  batch: {size: 256, timeout: 10s}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: "", readers: 1, rcvbuf: 32MiB, shutdown_drain: %s}
  exporters:
    - export.jsonl: {path: %q}
`, udpPort, tc.drain, jsonl))
			if err := w.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const n = 100000
			for _, m := range records(t, 1, 0, n, 1400) {
				if _, err := c.Write(m); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := w.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			w.Wait(t)
			written := weirtest.CountLines(t, jsonl)
			lost := w.LogValue(t, "source stopped", "lost_on_shutdown")
			drops := w.LogValue(t, "source stopped", "kernel_drops")
			t.Logf("written %d, lost on shutdown %d, kernel drops %d", written, lost, drops)
			if drops != 0 {
				t.Fatalf("the kernel dropped %d datagrams: the buffer was too small, the test proves nothing", drops)
			}
			if written+lost != n {
				t.Errorf("written %d + lost %d = %d, want every one of %d accounted", written, lost, written+lost, n)
			}
			if tc.drain == "5s" && lost != 0 {
				t.Errorf("%d lost with a 5s drain", lost)
			}
		})
	}
}

// wideTemplate is a message defining template id with n unassigned IANA
// fields of 4 bytes.
func wideTemplate(id uint16, n, variant int) []byte {
	rec := binary.BigEndian.AppendUint16(nil, id)
	rec = binary.BigEndian.AppendUint16(rec, uint16(n))
	for i := range n {
		rec = binary.BigEndian.AppendUint16(rec, uint16(1000+(i+variant)%8000))
		rec = binary.BigEndian.AppendUint16(rec, 4)
	}
	return message(1, setBytes(2, rec))
}

func setBytes(id uint16, body []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(body)))
	return append(b, body...)
}

func message(domain uint32, sets ...[]byte) []byte {
	n := 16
	for _, s := range sets {
		n += len(s)
	}
	b := binary.BigEndian.AppendUint16(nil, 10)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = binary.BigEndian.AppendUint32(b, uint32(time.Now().Unix()))
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, domain)
	for _, s := range sets {
		b = append(b, s...)
	}
	return b
}
