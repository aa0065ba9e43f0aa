package ipfix_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	source "github.com/weir-flow/weir/plugins/source/ipfix"
)

// emitter collects batches; its batch timeout is configurable.
type emitter struct {
	*plugintest.Sink
	size    int
	timeout time.Duration
	mu      sync.Mutex
	batches []int // sizes of emitted batches
}

func newEmitter(size int, timeout time.Duration) *emitter {
	return &emitter{Sink: plugintest.NewSink(), size: size, timeout: timeout}
}

func (e *emitter) NewBatch() *flow.Batch       { return flow.NewBatch(e.size) }
func (e *emitter) BatchSize() int              { return e.size }
func (e *emitter) BatchTimeout() time.Duration { return e.timeout }
func (e *emitter) Emit(ctx context.Context, b *flow.Batch) error {
	e.mu.Lock()
	e.batches = append(e.batches, b.Len())
	e.mu.Unlock()
	return e.Sink.Export(ctx, b)
}

// start builds and starts a source on loopback with ephemeral ports.
func start(t *testing.T, cfg source.Config, em plugin.Emitter) (*source.Source, *prometheus.Registry) {
	t.Helper()
	set := plugin.NopSettings(source.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	s, err := source.New(&cfg, set)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, reg
}

func loopbackConfig() source.Config {
	c := *source.DefaultConfig()
	c.UDP, c.TCP = "127.0.0.1:0", "127.0.0.1:0"
	c.RcvBuf = 1 << 20
	return c
}

// records builds n records whose source port numbers them from first.
func records(first, n int) *flow.Batch {
	b := flow.NewBatch(n)
	for i := first; i < first+n; i++ {
		r := plugintest.Record(b, "10.1.0.1", "10.2.0.2", 17, uint16(i), 4739, uint64(i), uint64(10*i))
		r.SetUint(flow.FlowStart, uint64(time.Date(2026, 3, 4, 5, 6, 7, 8e6, time.UTC).UnixNano()))
		r.Extra = append(r.Extra, flow.Field{Enterprise: 99999, Element: 42, Value: []byte{byte(i), byte(i >> 8)}})
	}
	return b
}

// encode returns the IPFIX messages that carry b (templates first).
func encode(t testing.TB, enc *ipfix.Encoder, b *flow.Batch) [][]byte {
	t.Helper()
	var msgs [][]byte
	if err := enc.Encode(b.Records, time.Unix(1772600767, 0), func(m []byte) error {
		msgs = append(msgs, bytes.Clone(m))
		return nil
	}); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return msgs
}

func newEncoder(domain uint32) *ipfix.Encoder {
	return ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: domain, MaxMessageSize: 1400})
}

// waitFor polls cond for up to 10s.
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

const anyDomain = 0xffffffff

// checkRecords checks that got holds exactly the records numbered
// first..first+n-1 (by source port), each once, from exporter.
func checkRecords(t *testing.T, got []*flow.Record, first, n int, exporter netip.AddrPort, domain uint32) {
	t.Helper()
	seen := map[uint16]bool{}
	for _, r := range got {
		i := int(r.SourceTransportPort)
		if i < first || i >= first+n || seen[r.SourceTransportPort] {
			t.Errorf("unexpected or duplicate record %d", i)
			continue
		}
		seen[r.SourceTransportPort] = true
		if exporter.IsValid() && r.Exporter != exporter {
			t.Errorf("record %d: exporter %v, want %v", i, r.Exporter, exporter)
		}
		if domain != anyDomain && r.ObservationDomainID != domain {
			t.Errorf("record %d: domain %d, want %d", i, r.ObservationDomainID, domain)
		}
		if r.PacketDeltaCount != uint64(i) || r.OctetDeltaCount != uint64(10*i) ||
			r.SourceAddress != netip.MustParseAddr("10.1.0.1") || r.ProtocolIdentifier != 17 {
			t.Errorf("record %d decoded as %+v", i, *r)
		}
		if f := r.FindExtra(flow.IEKey{Enterprise: 99999, Element: 42}); f == nil || !bytes.Equal(f.Value, []byte{byte(i), byte(i >> 8)}) {
			t.Errorf("record %d: unknown IE 99999/42 = %v", i, f)
		}
	}
	if len(seen) != n {
		t.Errorf("got %d distinct records of %d", len(seen), n)
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name)
}

func udpConn(t *testing.T, to *net.UDPAddr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c net.Conn, msgs [][]byte) {
	t.Helper()
	for _, m := range msgs {
		if _, err := c.Write(m); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

func TestUDP(t *testing.T) {
	em := newEmitter(64, 50*time.Millisecond)
	s, reg := start(t, loopbackConfig(), em)
	c := udpConn(t, s.UDPAddr())
	send(t, c, encode(t, newEncoder(5), records(1, 500)))
	waitFor(t, "500 records", func() bool { return em.Len() >= 500 })
	checkRecords(t, em.Records(), 1, 500, c.LocalAddr().(*net.UDPAddr).AddrPort(), 5)
	if n := metric(t, reg, "weir_source_ipfix_records_total"); n != 500 {
		t.Errorf("weir_source_ipfix_records_total = %v, want 500", n)
	}
	em.mu.Lock()
	defer em.mu.Unlock()
	for _, n := range em.batches {
		if n > 64+40 { // a batch is emitted once full; one message may overfill it
			t.Errorf("batch of %d records, want about 64", n)
		}
	}
}

// TestUDPReaders sends from many exporters to several SO_REUSEPORT readers:
// each exporter's templates must reach the decoder that decodes its data,
// so nothing waits for a template and every record arrives once.
func TestUDPReaders(t *testing.T) {
	cfg := loopbackConfig()
	cfg.Readers = 4
	em := newEmitter(256, 20*time.Millisecond)
	s, reg := start(t, cfg, em)
	const exporters, per = 16, 300
	var wg sync.WaitGroup
	conns := make([]*net.UDPConn, exporters)
	for i := range conns {
		conns[i] = udpConn(t, s.UDPAddr())
	}
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range encode(t, newEncoder(uint32(i)), records(i*per, per)) {
				c.Write(m)
				time.Sleep(100 * time.Microsecond) // stay within the socket buffers
			}
		}()
	}
	wg.Wait()
	waitFor(t, "every record", func() bool { return em.Len() >= exporters*per })
	checkRecords(t, em.Records(), 0, exporters*per, netip.AddrPort{}, anyDomain) // domains checked below
	byDomain := map[uint32]int{}
	for _, r := range em.Records() {
		byDomain[r.ObservationDomainID]++
		if want := uint32(int(r.SourceTransportPort) / per); r.ObservationDomainID != want {
			t.Errorf("record %d from domain %d, want %d", r.SourceTransportPort, r.ObservationDomainID, want)
		}
	}
	if len(byDomain) != exporters {
		t.Errorf("records from %d domains, want %d", len(byDomain), exporters)
	}
	if n := metric(t, reg, "weir_source_ipfix_pending_held_total"); n != 0 {
		t.Errorf("%v data sets waited for a template: an exporter's messages were split across readers", n)
	}
}

func TestTCP(t *testing.T) {
	em := newEmitter(128, 30*time.Millisecond)
	s, reg := start(t, loopbackConfig(), em)
	for round := 0; round < 2; round++ {
		c, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		// A fresh encoder per connection reuses template IDs: the new
		// session must not see the old one's templates.
		var stream []byte
		for _, m := range encode(t, newEncoder(9), records(1000*round, 700)) {
			stream = append(stream, m...)
		}
		// Write in odd-sized pieces so messages straddle reads.
		for len(stream) > 0 {
			n := min(len(stream), 333)
			if _, err := c.Write(stream[:n]); err != nil {
				t.Fatal(err)
			}
			stream = stream[n:]
		}
		waitFor(t, "tcp records", func() bool { return em.Len() >= 700*(round+1) })
		c.Close()
	}
	got := em.Records()
	checkRecords(t, got[:700], 0, 700, netip.AddrPort{}, 9)
	checkRecords(t, got[700:], 1000, 700, netip.AddrPort{}, 9)
	waitFor(t, "connections counted", func() bool { return metric(t, reg, "weir_source_ipfix_tcp_connections_total") == 2 })
}

func TestTCPBadFramingClosesOnlyThatSession(t *testing.T) {
	em := newEmitter(128, 30*time.Millisecond)
	s, reg := start(t, loopbackConfig(), em)
	bad, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write([]byte("GET / HTTP/1.1\r\nHost: weir\r\n\r\n"))
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); err == nil {
		t.Error("source answered a non-IPFIX stream instead of closing it")
	}
	waitFor(t, "framing error counted", func() bool {
		return metric(t, reg, "weir_source_ipfix_tcp_framing_errors_total") == 1
	})
	good, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	send(t, good, encode(t, newEncoder(1), records(1, 50)))
	waitFor(t, "good records", func() bool { return em.Len() >= 50 })
	checkRecords(t, em.Records(), 1, 50, good.LocalAddr().(*net.TCPAddr).AddrPort(), 1)
}

// TestIdleFlush: a reader with a partial batch and no more traffic still
// emits it once the batch timeout passes.
func TestIdleFlush(t *testing.T) {
	em := newEmitter(1000, 100*time.Millisecond)
	s, _ := start(t, loopbackConfig(), em)
	c := udpConn(t, s.UDPAddr())
	sent := time.Now()
	send(t, c, encode(t, newEncoder(1), records(1, 3)))
	waitFor(t, "3 records", func() bool { return em.Len() == 3 })
	if d := time.Since(sent); d < 100*time.Millisecond {
		t.Errorf("partial batch emitted after %v, before the 100ms batch timeout", d)
	}
	tc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	send(t, tc, encode(t, newEncoder(1), records(10, 3)))
	waitFor(t, "3 tcp records", func() bool { return em.Len() == 6 })
}

// Shutdown emits what readers hold, however far from full or due.
func TestShutdownFlushes(t *testing.T) {
	em := newEmitter(100000, time.Hour)
	set := plugin.NopSettings(source.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	s, err := source.New(ptr(loopbackConfig()), set)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	c := udpConn(t, s.UDPAddr())
	send(t, c, encode(t, newEncoder(1), records(1, 200)))
	tc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	send(t, tc, encode(t, newEncoder(2), records(1000, 100)))
	waitFor(t, "records decoded", func() bool { return metric(t, reg, "weir_source_ipfix_records_total") == 300 })
	if em.Len() != 0 {
		t.Fatalf("%d records emitted before shutdown with an hour-long timeout", em.Len())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if em.Len() != 300 {
		t.Errorf("after Shutdown the pipeline got %d records, want 300", em.Len())
	}
}

// Malformed input of every kind is counted and logged, and the good records
// sent afterwards still arrive.
func TestBadInput(t *testing.T) {
	em := newEmitter(64, 20*time.Millisecond)
	var logs syncBuffer
	set := plugin.NopSettings(source.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	set.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := source.New(ptr(loopbackConfig()), set)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	c := udpConn(t, s.UDPAddr())
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		p := make([]byte, 1+rng.IntN(1500))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if i%2 == 0 && len(p) >= 4 {
			p[0], p[1] = 0, 10 // looks like IPFIX, so the decoder digs in
		}
		c.Write(p)
	}
	for name, m := range BadMessages() {
		if _, err := c.Write(m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	send(t, c, encode(t, newEncoder(3), records(1, 100)))
	good := func() []*flow.Record {
		// The decoder salvages what it can from the bad messages (the
		// lying header carries a whole template and data set): keep only
		// the good exporter's domain.
		var out []*flow.Record
		for _, r := range em.Records() {
			if r.ObservationDomainID == 3 {
				out = append(out, r)
			}
		}
		return out
	}
	waitFor(t, "good records", func() bool { return len(good()) >= 100 })
	time.Sleep(50 * time.Millisecond)
	checkRecords(t, good(), 1, 100, c.LocalAddr().(*net.UDPAddr).AddrPort(), 3)
	malformed := metric(t, reg, "weir_source_ipfix_malformed_messages_total") + metric(t, reg, "weir_source_ipfix_malformed_sets_total")
	if malformed < float64(len(BadMessages())) {
		t.Errorf("malformed messages+sets = %v, want at least %d", malformed, len(BadMessages()))
	}
	if want := "exporter=" + c.LocalAddr().String(); !strings.Contains(logs.String(), want) {
		t.Errorf("no malformed-message log naming %s:\n%s", want, logs.String())
	}
	if n := metric(t, reg, "weir_source_ipfix_pending_held_total"); n < 1 {
		t.Errorf("weir_source_ipfix_pending_held_total = %v: the data set for an unknown template was not held", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BadMessages returns hand-made malformed IPFIX messages by name.
func BadMessages() map[string][]byte {
	tmpl := set(2, u16s(256, 2, 8, 4, 12, 4)) // template 256: src, dst IPv4
	data := set(256, []byte{10, 0, 0, 1, 10, 0, 0, 2})
	lyingHeader := message(7, tmpl, data)
	binary.BigEndian.PutUint16(lyingHeader[2:], uint16(len(lyingHeader)+50))
	shortHeader := message(7, data)
	binary.BigEndian.PutUint16(shortHeader[2:], 8)
	setOverrun := message(7, tmpl)
	binary.BigEndian.PutUint16(setOverrun[18:], 400)
	return map[string][]byte{
		"header length beyond the datagram": lyingHeader,
		"header length below 16":            shortHeader,
		"set overrunning the message":       setOverrun,
		"template overrunning its set":      message(8, set(2, u16s(257, 40, 8, 4, 12, 4))),
		"data set for an unknown template":  message(9, set(999, bytes.Repeat([]byte{1}, 16))),
		"zero-length set":                   message(10, []byte{0, 2, 0, 0}, tmpl),
		"set ID 1 (reserved)":               message(11, set(1, []byte{0, 0, 0, 0})),
		"version 9":                         append([]byte{0, 9}, message(12, tmpl)[2:]...),
	}
}

func u16s(v ...uint16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.BigEndian.AppendUint16(b, x)
	}
	return b
}

func set(id uint16, body []byte) []byte {
	return append(u16s(id, uint16(4+len(body))), body...)
}

func message(domain uint32, sets ...[]byte) []byte {
	m := make([]byte, 16)
	binary.BigEndian.PutUint16(m[0:], 10)
	binary.BigEndian.PutUint32(m[4:], 1772600767)
	binary.BigEndian.PutUint32(m[12:], domain)
	for _, s := range sets {
		m = append(m, s...)
	}
	binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
	return m
}

// TestKernelDrops overflows a small socket buffer before the source reads
// it: the kernel's drop count (SO_RXQ_OVFL) reaches the metric.
func TestKernelDrops(t *testing.T) {
	cfg := loopbackConfig()
	cfg.TCP, cfg.Readers, cfg.RcvBuf = "", 1, 4096
	set := plugin.NopSettings(source.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	s, err := source.New(&cfg, set) // bound, not reading yet
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	c := udpConn(t, s.UDPAddr())
	msgs := encode(t, newEncoder(1), records(1, 30))
	for i := 0; i < 500; i++ {
		c.Write(msgs[0])
	}
	em := newEmitter(64, 20*time.Millisecond)
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	c.Write(msgs[0]) // carries the drop count to the reader
	waitFor(t, "kernel drops counted", func() bool { return metric(t, reg, "weir_source_ipfix_kernel_drops_total") > 0 })
	if d, got := s.KernelDrops(), em.Len()/30; int(d)+got < 400 {
		t.Errorf("kernel drops %d + received messages %d < 500 sent", d, got)
	}
}

func TestListenErrors(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := loopbackConfig()
	cfg.UDP = busy.LocalAddr().String() // taken without SO_REUSEPORT
	if _, err := source.New(&cfg, plugin.NopSettings(source.ID)); err == nil {
		t.Error("New bound a UDP port another socket holds")
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		s, err := source.New(ptr(loopbackConfig()), plugin.NopSettings(source.ID))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func Example_ports() {
	cfg := *source.DefaultConfig()
	fmt.Println(cfg.UDP, cfg.TCP, cfg.RcvBuf)
	// Output: :4739 :4739 32MiB
}

// slowEmitter takes its time with every batch, like a pipeline under load.
type slowEmitter struct {
	*emitter
	delay time.Duration
}

func (e *slowEmitter) Emit(ctx context.Context, b *flow.Batch) error {
	time.Sleep(e.delay)
	return e.emitter.Emit(ctx, b)
}

// TestShutdownDrainsSockets: datagrams the kernel accepted before Shutdown
// are read and emitted, however long the pipeline takes, rather than lost
// with the socket.
func TestShutdownDrainsSockets(t *testing.T) {
	cfg := loopbackConfig()
	cfg.Readers, cfg.RcvBuf = 1, 16<<20
	em := &slowEmitter{emitter: newEmitter(64, time.Hour), delay: 5 * time.Millisecond}
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
	const n = 9000 // about 140 batches: 0.7s of emitting
	send(t, c, encode(t, newEncoder(1), records(0, n)))
	tc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	send(t, tc, encode(t, newEncoder(2), records(20000, 3000)))
	// A connection still in the listen backlog is not the source's yet.
	waitFor(t, "the connection accepted", func() bool { return metric(t, reg, "weir_source_ipfix_tcp_connections_total") == 1 })
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if s.KernelDrops() != 0 {
		t.Fatalf("kernel dropped %d datagrams; the test needs a larger buffer", s.KernelDrops())
	}
	var udp, tcp int
	for _, r := range em.Records() {
		if r.ObservationDomainID == 1 {
			udp++
		} else {
			tcp++
		}
	}
	if udp != n || tcp != 3000 {
		t.Errorf("after Shutdown: %d UDP and %d TCP records emitted, want %d and 3000", udp, tcp, n)
	}
}

func ptr[T any](v T) *T { return &v }
