package ipfix_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	source "github.com/weir-flow/weir/plugins/source/ipfix"
)

func labeled(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name, "reason", reason)
}

// dialFrom connects to addr from local address ip (another loopback
// address stands for another exporter).
func dialFrom(t *testing.T, ip string, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer waits until the server closes c.
func closedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection still open after 20s")
		}
	}
}

// TestTCPTimeouts: a connection that sends part of a header and stops,
// and one that sends nothing, are closed by tcp_header_timeout; one that
// sent a whole message and went quiet by tcp_idle_timeout.
func TestTCPTimeouts(t *testing.T) {
	cfg := loopbackConfig()
	cfg.TCPHeaderTimeout, cfg.TCPIdleTimeout = 300*time.Millisecond, 2*time.Second
	s, reg := start(t, cfg, newEmitter(64, 10*time.Millisecond))
	trickle := dialFrom(t, "127.0.0.1", s.TCPAddr())
	if _, err := trickle.Write([]byte{0, 10, 0, 100, 0}); err != nil {
		t.Fatal(err)
	}
	silent := dialFrom(t, "127.0.0.1", s.TCPAddr())
	closedByPeer(t, trickle)
	closedByPeer(t, silent)
	if n := labeled(t, reg, "weir_source_ipfix_tcp_timeouts_total", "header"); n != 2 {
		t.Errorf("header timeouts = %v, want 2", n)
	}
	quiet := dialFrom(t, "127.0.0.1", s.TCPAddr())
	send(t, quiet, encode(t, newEncoder(1), records(0, 10)))
	closedByPeer(t, quiet)
	if n := labeled(t, reg, "weir_source_ipfix_tcp_timeouts_total", "idle"); n != 1 {
		t.Errorf("idle timeouts = %v, want 1", n)
	}
	if n := metric(t, reg, "weir_source_ipfix_records_total"); n != 10 {
		t.Errorf("records = %v, want 10", n)
	}
}

// TestTCPPerExporterLimit: one address holding max_connections_per_exporter
// idle connections cannot keep another exporter out.
func TestTCPPerExporterLimit(t *testing.T) {
	cfg := loopbackConfig()
	cfg.MaxConnectionsPerExporter = 3
	em := newEmitter(64, 10*time.Millisecond)
	s, reg := start(t, cfg, em)
	for range 3 {
		dialFrom(t, "127.0.0.2", s.TCPAddr())
	}
	waitFor(t, "3 connections", func() bool { return metric(t, reg, "weir_source_ipfix_tcp_connections_total") == 3 })
	extra := dialFrom(t, "127.0.0.2", s.TCPAddr())
	closedByPeer(t, extra)
	if n := labeled(t, reg, "weir_source_ipfix_tcp_connections_refused_total", "max_connections_per_exporter"); n != 1 {
		t.Errorf("refused = %v, want 1", n)
	}
	real := dialFrom(t, "127.0.0.1", s.TCPAddr())
	send(t, real, encode(t, newEncoder(1), records(0, 109)))
	waitFor(t, "109 records from the other exporter", func() bool { return len(em.Records()) == 109 })
}

// TestAllowedExporters: messages and connections from outside
// allowed_exporters are refused and counted.
func TestAllowedExporters(t *testing.T) {
	cfg := loopbackConfig()
	cfg.AllowedExporters = []string{"127.0.0.2/32"}
	em := newEmitter(64, 10*time.Millisecond)
	s, reg := start(t, cfg, em)
	denied := udpConn(t, s.UDPAddr())
	send(t, denied, encode(t, newEncoder(1), records(0, 10)))
	allowed, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, s.UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer allowed.Close()
	send(t, allowed, encode(t, newEncoder(2), records(100, 10)))
	waitFor(t, "10 records", func() bool { return len(em.Records()) == 10 })
	waitFor(t, "refusals counted", func() bool { return metric(t, reg, "weir_source_ipfix_messages_not_allowed_total") >= 1 })
	for _, r := range em.Records() {
		if r.ObservationDomainID != 2 {
			t.Fatalf("record from a refused exporter: %+v", r)
		}
	}
	closedByPeer(t, dialFrom(t, "127.0.0.1", s.TCPAddr()))
	if n := labeled(t, reg, "weir_source_ipfix_tcp_connections_refused_total", "not_allowed"); n != 1 {
		t.Errorf("tcp refused not_allowed = %v, want 1", n)
	}
}

// TestShutdownAccountsBacklog reproduces issue 12's SIGTERM loss: with
// more queued in the socket than a slow pipeline takes before
// shutdown_drain, every record sent is either emitted or counted as lost
// on shutdown.
func TestShutdownAccountsBacklog(t *testing.T) {
	cfg := loopbackConfig()
	cfg.Readers, cfg.RcvBuf = 1, 16<<20
	cfg.ShutdownDrain = 100 * time.Millisecond
	em := &slowEmitter{emitter: newEmitter(64, time.Hour), delay: 20 * time.Millisecond}
	set := plugin.NopSettings(source.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	s, err := source.New(&cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	c := udpConn(t, s.UDPAddr())
	const n = 9000
	send(t, c, encode(t, newEncoder(1), records(0, n)))
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if s.KernelDrops() != 0 {
		t.Fatalf("kernel dropped %d datagrams; the test needs a larger buffer", s.KernelDrops())
	}
	emitted := len(em.Records())
	lost := int(metric(t, reg, "weir_source_ipfix_lost_on_shutdown_records_total"))
	t.Logf("emitted %d, lost on shutdown %d", emitted, lost)
	if emitted+lost != n || lost == 0 {
		t.Errorf("emitted %d + lost %d = %d, want %d with some lost (the drain bound is short)", emitted, lost, emitted+lost, n)
	}
}

// TestTemplateFloodRefused: 16,000-field templates are refused by
// limits.template_fields and counted; a normal exporter is unaffected.
func TestTemplateFloodRefused(t *testing.T) {
	cfg := loopbackConfig()
	em := newEmitter(64, 10*time.Millisecond)
	s, reg := start(t, cfg, em)
	c := udpConn(t, s.UDPAddr())
	msg := make([]byte, 16+4+4+16000*4)
	binary.BigEndian.PutUint16(msg, 10)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
	binary.BigEndian.PutUint16(msg[16:], 2)
	binary.BigEndian.PutUint16(msg[18:], uint16(len(msg)-16))
	binary.BigEndian.PutUint16(msg[20:], 300)
	binary.BigEndian.PutUint16(msg[22:], 16000)
	for i := range 16000 {
		binary.BigEndian.PutUint16(msg[24+4*i:], uint16(1000+i))
		binary.BigEndian.PutUint16(msg[26+4*i:], 4)
	}
	for range 20 {
		send(t, c, [][]byte{msg})
	}
	send(t, c, encode(t, newEncoder(1), records(0, 10)))
	waitFor(t, "10 records", func() bool { return len(em.Records()) == 10 })
	waitFor(t, "20 refusals", func() bool {
		return labeled(t, reg, "weir_source_ipfix_limit_refusals_total", "template_fields") == 20
	})
}
