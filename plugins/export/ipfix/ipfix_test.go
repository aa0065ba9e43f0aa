package ipfix_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	exporter "github.com/weir-flow/weir/plugins/export/ipfix"
)

// unknownIE is an enterprise IE no registry knows.
var unknownIE = flow.IEKey{Enterprise: 99999, Element: 42}

// batch builds n records with a 5-tuple, times, Antrea strings, a proxy
// stamp and two verbatim IEs (one variable-length).
func batch(first, n int) *flow.Batch {
	b := flow.NewBatch(n)
	for i := first; i < first+n; i++ {
		src, dst := "10.10.0.1", "10.20.0.2"
		if i%2 == 1 {
			src, dst = "fd00::1", "fd00::2"
		}
		r := plugintest.Record(b, src, dst, 6, uint16(i), 443, uint64(i), uint64(1500*i))
		r.SetUint(flow.FlowStart, uint64(time.Date(2026, 5, 6, 7, 8, 9, 123e6, time.UTC).UnixNano()))
		r.SetUint(flow.FlowEnd, uint64(time.Date(2026, 5, 6, 7, 8, 10, 456e6, time.UTC).UnixNano()))
		r.SetUint(flow.TCPControlBits, 0x1b)
		r.SetString(flow.SourcePodName, "client-7d9c")
		r.SetString(flow.SourcePodNamespace, "default")
		r.SetString(flow.DestinationServicePortName, "web/https")
		r.SetAddr(flow.OriginalExporterAddress, netip.MustParseAddr("192.0.2.7"))
		r.SetUint(flow.OriginalObservationDomainID, 77)
		r.Extra = append(r.Extra,
			flow.Field{Enterprise: unknownIE.Enterprise, Element: unknownIE.Element, Value: []byte{0xca, 0xfe, byte(i), byte(i >> 8)}},
			flow.Field{Enterprise: 99999, Element: 43, Variable: true, Value: []byte("opaque-" + string(rune('a'+i%26)))},
		)
	}
	return b
}

// sameRecord compares what export.ipfix must carry through unchanged.
func sameRecord(t *testing.T, got, want *flow.Record) {
	t.Helper()
	for f := flow.FieldID(0); int(f) < flow.NumFields; f++ {
		if want.Has(f) != got.Has(f) || want.Uint(f) != got.Uint(f) || want.String(f) != got.String(f) || want.Addr(f) != got.Addr(f) {
			t.Errorf("record %d: field %s = %v/%v/%q/%v, want %v/%v/%q/%v", want.SourceTransportPort, f,
				got.Has(f), got.Uint(f), got.String(f), got.Addr(f), want.Has(f), want.Uint(f), want.String(f), want.Addr(f))
		}
	}
	for _, w := range want.Extra {
		g := got.FindExtra(w.Key())
		if g == nil || !bytes.Equal(g.Value, w.Value) || g.Variable != w.Variable {
			t.Errorf("record %d: verbatim IE %s = %+v, want %+v", want.SourceTransportPort, w.Key(), g, w)
		}
	}
}

func newExporter(t *testing.T, cfg exporter.Config) (*exporter.Exporter, *prometheus.Registry) {
	t.Helper()
	set := plugin.NopSettings(exporter.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	e, err := exporter.New(&cfg, set)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	return e, reg
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name)
}

// udpCollector receives datagrams on loopback and decodes them.
type udpCollector struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	sizes   []int
	dec     *ipfix.Decoder
	got     *flow.Batch
	errs    []error
	stopped chan struct{}
}

func newUDPCollector(t *testing.T) *udpCollector {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &udpCollector{conn: c, dec: ipfix.NewDecoder(ipfix.DecoderOptions{}), got: flow.NewBatch(0), stopped: make(chan struct{})}
	go func() {
		defer close(u.stopped)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.sizes = append(u.sizes, n)
			if _, err := u.dec.Decode(u.got, buf[:n], from); err != nil {
				u.errs = append(u.errs, err)
			}
			u.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-u.stopped })
	return u
}

func (u *udpCollector) records() []*flow.Record {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*flow.Record(nil), u.got.Records...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUDP(t *testing.T) {
	col := newUDPCollector(t)
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.ObservationDomainID, cfg.MaxMessageSize = col.conn.LocalAddr().String(), 42, 512
	e, reg := newExporter(t, cfg)
	want := batch(1, 300)
	if err := e.Export(context.Background(), want); err != nil {
		t.Fatalf("Export: %v", err)
	}
	waitFor(t, "300 records", func() bool { return len(col.records()) >= 300 })
	got := col.records()
	for i, w := range want.Records {
		sameRecord(t, got[i], w)
		if got[i].ObservationDomainID != 42 {
			t.Errorf("record %d: domain %d, want 42", i, got[i].ObservationDomainID)
		}
	}
	col.mu.Lock()
	for _, n := range col.sizes {
		if n > 512 {
			t.Errorf("datagram of %d bytes over max_message_size 512", n)
		}
	}
	if len(col.errs) > 0 {
		t.Errorf("collector decode errors: %v", col.errs)
	}
	msgs := len(col.sizes)
	col.mu.Unlock()
	if n := metric(t, reg, "weir_export_ipfix_messages_total"); int(n) != msgs {
		t.Errorf("weir_export_ipfix_messages_total = %v, collector got %d", n, msgs)
	}
}

// TestTemplateRefresh: after template_refresh, a collector that missed the
// first messages (restarted) can decode again.
func TestTemplateRefresh(t *testing.T) {
	col := newUDPCollector(t)
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.TemplateRefresh = col.conn.LocalAddr().String(), 50*time.Millisecond
	e, _ := newExporter(t, cfg)
	if err := e.Export(context.Background(), batch(1, 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first batch", func() bool { return len(col.records()) == 5 })
	col.mu.Lock()
	col.dec = ipfix.NewDecoder(ipfix.DecoderOptions{}) // the collector restarts
	col.mu.Unlock()
	time.Sleep(60 * time.Millisecond)
	if err := e.Export(context.Background(), batch(100, 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second batch decoded without old templates", func() bool { return len(col.records()) == 10 })
}

func TestUDPCollectorDown(t *testing.T) {
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	l.Close() // nobody listens: the kernel answers with ICMP port unreachable
	cfg := *exporter.DefaultConfig()
	cfg.Address = addr
	e, reg := newExporter(t, cfg)
	// A refusal (ICMP port unreachable) is about a datagram already sent:
	// it is counted as a send error and logged; Export reports only the
	// records it dropped, never the whole batch as failed.
	for i := 0; i < 20 && metric(t, reg, "weir_export_ipfix_send_errors_total") == 0; i++ {
		if err := e.Export(context.Background(), batch(1, 10)); err != nil && !plugin.Drops(err, func(string, int) {}) {
			t.Fatalf("Export = %v, want nil or only drops", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := metric(t, reg, "weir_export_ipfix_send_errors_total"); n == 0 {
		t.Error("weir_export_ipfix_send_errors_total = 0")
	}
}

// tcpCollector accepts connections and decodes each with its own decoder.
type tcpCollector struct {
	ln    net.Listener
	mu    sync.Mutex
	got   *flow.Batch
	conns []net.Conn
	errs  []error
	wg    sync.WaitGroup
}

func newTCPCollector(t *testing.T, addr string) *tcpCollector {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &tcpCollector{ln: ln, got: flow.NewBatch(0)}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			c.wg.Add(1)
			go c.serve(conn)
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *tcpCollector) serve(conn net.Conn) {
	defer c.wg.Done()
	dec := ipfix.NewDecoder(ipfix.DecoderOptions{})
	from := conn.RemoteAddr().(*net.TCPAddr).AddrPort()
	br := bufio.NewReader(conn)
	var buf []byte
	var seq uint32 // data records received on this connection (RFC 7011 §3.1)
	for {
		msg, err := ipfix.ReadMessage(br, buf)
		if err != nil {
			return
		}
		buf = msg[:0]
		c.mu.Lock()
		if got := binary.BigEndian.Uint32(msg[8:]); got != seq {
			c.errs = append(c.errs, fmt.Errorf("sequence number %d, want %d", got, seq))
		}
		n, err := dec.Decode(c.got, msg, from)
		if err != nil {
			c.errs = append(c.errs, err)
		}
		seq += uint32(n)
		c.mu.Unlock()
	}
}

func (c *tcpCollector) close() {
	c.ln.Close()
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *tcpCollector) records() []*flow.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*flow.Record(nil), c.got.Records...)
}

func TestTCP(t *testing.T) {
	col := newTCPCollector(t, "127.0.0.1:0")
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.Transport = col.ln.Addr().String(), "tcp"
	e, reg := newExporter(t, cfg)
	want := batch(1, 1000)
	if err := e.Export(context.Background(), want); err != nil {
		t.Fatalf("Export: %v", err)
	}
	waitFor(t, "1000 records", func() bool { return len(col.records()) >= 1000 })
	for i, g := range col.records() {
		sameRecord(t, g, want.Records[i])
	}
	if n := metric(t, reg, "weir_export_ipfix_connects_total"); n != 1 {
		t.Errorf("connects = %v, want 1", n)
	}
}

// TestTCPReconnect: the collector drops the connection; the next Export
// reconnects and resends the templates, so a fresh session decodes it.
func TestTCPReconnect(t *testing.T) {
	col := newTCPCollector(t, "127.0.0.1:0")
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.Transport = col.ln.Addr().String(), "tcp"
	e, reg := newExporter(t, cfg)
	if err := e.Export(context.Background(), batch(1, 10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first batch", func() bool { return len(col.records()) == 10 })
	col.mu.Lock()
	for _, c := range col.conns {
		c.Close()
	}
	col.mu.Unlock()
	// The exporter's watcher sees the close; give it a moment.
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Export(ctx, batch(100, 10)); err != nil {
		t.Fatalf("Export after the collector closed: %v", err)
	}
	waitFor(t, "second batch on a new session", func() bool { return len(col.records()) >= 20 })
	if n := metric(t, reg, "weir_export_ipfix_connects_total"); n != 2 {
		t.Errorf("connects = %v, want 2", n)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.errs) > 0 {
		t.Errorf("collector errors: %v", col.errs)
	}
}

// TestTCPCollectorLate: Export waits (with backoff) for a collector that
// comes up later, and gives up when ctx ends.
func TestTCPCollectorLate(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.Transport = addr, "tcp"
	e, reg := newExporter(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	err = e.Export(ctx, batch(1, 3))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Export to nobody = %v, want the deadline", err)
	}
	if n := metric(t, reg, "weir_export_ipfix_dial_errors_total"); n == 0 {
		t.Error("dial errors not counted")
	}
	done := make(chan error, 1)
	go func() { done <- e.Export(context.Background(), batch(1, 3)) }()
	time.Sleep(200 * time.Millisecond)
	col := newTCPCollector(t, addr)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Export did not reconnect")
	}
	waitFor(t, "records", func() bool { return len(col.records()) == 3 })
}

// Shutdown gives up a retrying Export when its ctx ends.
func TestShutdownStopsRetries(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.Transport = addr, "tcp"
	e, err := exporter.New(&cfg, plugin.NopSettings(exporter.ID))
	if err != nil {
		t.Fatal(err)
	}
	e.Start(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Export(context.Background(), batch(1, 3)) }()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.Shutdown(ctx); err == nil {
		t.Error("Shutdown with an Export stuck retrying returned nil, want the deadline")
	}
	if err := <-done; err == nil {
		t.Error("the abandoned Export returned nil")
	}
	if err := e.Export(context.Background(), batch(1, 1)); !errors.Is(err, exporter.ErrStopped) {
		t.Errorf("Export after Shutdown = %v, want ErrStopped", err)
	}
}

func TestLifecycle(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			plugintest.Lifecycle(t, func() plugin.Component {
				cfg := *exporter.DefaultConfig()
				cfg.Address, cfg.Transport = "127.0.0.1:9", transport
				e, err := exporter.New(&cfg, plugin.NopSettings(exporter.ID))
				if err != nil {
					t.Fatal(err)
				}
				return e
			})
		})
	}
}
