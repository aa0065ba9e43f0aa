package ipfix_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	exporter "github.com/weir-flow/weir/plugins/export/ipfix"
)

func labeled(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name, label, value)
}

// TestTCPOversizedRecord reproduces the wedge of issue 12: one record that
// no message can hold (a 65,492-byte variable-length IE plus the proxy's
// stamp) among 109 good ones. It must be dropped and counted alone; the
// 109 reach the collector exactly once on one connection.
func TestTCPOversizedRecord(t *testing.T) {
	col := newTCPCollector(t, "127.0.0.1:0")
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.Transport = col.ln.Addr().String(), "tcp"
	e, reg := newExporter(t, cfg)
	b := batch(1, 110)
	big := b.Records[50]
	big.Extra = append(big.Extra, flow.Field{Enterprise: 99999, Element: 44, Variable: true, Value: make([]byte, 65492)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Export tells the engine which record it dropped and why.
	drops := map[string]int{}
	if err := e.Export(ctx, b); !plugin.Drops(err, func(r string, n int) { drops[r] += n }) || len(drops) != 1 || drops[plugin.DropRecordTooLarge] != 1 {
		t.Fatalf("Export = %v (drops %v), want only 1 record dropped for record_too_large", err, drops)
	}
	if err := e.Export(ctx, batch(200, 5)); err != nil {
		t.Fatalf("Export after the oversized record: %v", err)
	}
	waitFor(t, "114 records", func() bool { return len(col.records()) >= 114 })
	time.Sleep(50 * time.Millisecond) // duplicates would arrive now
	if n := len(col.records()); n != 114 {
		t.Errorf("collector got %d records, want 114 (109+5, each once)", n)
	}
	for _, c := range []struct {
		name string
		want float64
	}{
		{"weir_export_ipfix_connects_total", 1},
		{"weir_export_ipfix_send_errors_total", 0},
		{"weir_export_ipfix_records_resent_total", 0},
	} {
		if got := metric(t, reg, c.name); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if got := labeled(t, reg, "weir_export_ipfix_records_dropped_total", "reason", "record_too_large"); got != 1 {
		t.Errorf("records_dropped_total{record_too_large} = %v, want 1", got)
	}
}

// stalledCollector accepts one connection and reads nothing, so the
// exporter's data piles up unacknowledged; crash resets it like a
// collector killed with kill -9 (unread data: RST).
type stalledCollector struct {
	ln   net.Listener
	conn chan *net.TCPConn
}

func newStalledCollector(t *testing.T) *stalledCollector {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stalledCollector{ln: ln, conn: make(chan *net.TCPConn, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := c.(*net.TCPConn)
		_ = tc.SetReadBuffer(64 << 10)
		s.conn <- tc
	}()
	return s
}

func (s *stalledCollector) crash(t *testing.T) {
	t.Helper()
	c := <-s.conn
	_ = c.SetLinger(0)
	c.Close()
	s.ln.Close()
}

// TestTCPCrashedCollector reproduces issue 12's crashed collector: records
// written but not acknowledged when the connection resets are replayed on
// the next connection from the resend window (counted as resent) or, with
// no window, counted as possibly lost — never reported as plainly sent.
func TestTCPCrashedCollector(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window int64
	}{
		{"resend_window", 4 << 20},
		{"no_window", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stalled := newStalledCollector(t)
			cfg := *exporter.DefaultConfig()
			cfg.Address, cfg.Transport = stalled.ln.Addr().String(), "tcp"
			cfg.ResendWindow = config.ByteSize(tc.window)
			cfg.MaxBackoff = 100 * time.Millisecond
			e, reg := newExporter(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// ~1 MB: more than the stalled collector's receive buffer, less
			// than the exporter's send buffer, so Export returns with
			// data unacknowledged.
			const first = 6000
			if err := e.Export(ctx, batch(0, first)); err != nil {
				t.Fatalf("Export: %v", err)
			}
			addr := stalled.ln.Addr().String()
			stalled.crash(t)
			// The collector comes back on the same port and reads.
			col := newTCPCollector(t, addr)
			if err := e.Export(ctx, batch(first, 10)); err != nil {
				t.Fatalf("Export after the crash: %v", err)
			}
			resent := metric(t, reg, "weir_export_ipfix_records_resent_total")
			lost := metric(t, reg, "weir_export_ipfix_records_possibly_lost_total")
			t.Logf("resent %v, possibly lost %v of %d", resent, lost, first)
			if tc.window > 0 {
				if resent == 0 || lost != 0 {
					t.Errorf("resent %v, possibly lost %v: want >0 resent and none lost", resent, lost)
				}
			} else if resent != 0 || lost == 0 {
				t.Errorf("resent %v, possibly lost %v: want none resent and >0 possibly lost", resent, lost)
			}
			want := int(resent) + 10
			waitFor(t, "replayed and new records", func() bool { return len(col.records()) >= want })
			time.Sleep(50 * time.Millisecond)
			if n := len(col.records()); n != want {
				t.Errorf("new collector got %d records, want %d", n, want)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			if len(col.errs) > 0 {
				t.Errorf("collector errors (templates must precede replayed data): %v", col.errs[0])
			}
		})
	}
}

// oversizedSource emits one batch: 110 records, the 51st too large for any
// IPFIX message.
type oversizedSource struct{ done chan struct{} }

func (s *oversizedSource) Start(ctx context.Context, out plugin.Emitter) error {
	b := batch(1, 110)
	b.Records[50].Extra = append(b.Records[50].Extra, flow.Field{Enterprise: 99999, Element: 44, Variable: true, Value: make([]byte, 65492)})
	err := out.Emit(ctx, b)
	close(s.done)
	return err
}
func (s *oversizedSource) Shutdown(context.Context) error { return nil }
func (s *oversizedSource) Done() <-chan struct{}          { return s.done }

type noConfig struct{}

func (*noConfig) Validate() error { return nil }

func init() {
	plugin.Register(plugin.Info{ID: "source.test_oversized", NewConfig: func() plugin.Config { return &noConfig{} },
		New: func(plugin.Config, plugin.Settings) (plugin.Component, error) {
			return &oversizedSource{done: make(chan struct{})}, nil
		}})
}

// TestEngineCountsDrops runs export.ipfix in the engine: the record it
// cannot encode is counted by the engine as dropped{reason=record_too_large},
// not as out, so the exporter stage's out + dropped == in.
func TestEngineCountsDrops(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			var addr string
			var received func() int
			if transport == "tcp" {
				col := newTCPCollector(t, "127.0.0.1:0")
				addr, received = col.ln.Addr().String(), func() int { return len(col.records()) }
			} else {
				col := newUDPCollector(t)
				addr, received = col.conn.LocalAddr().String(), func() int { return len(col.records()) }
			}
			cfg, err := config.Parse([]byte(`
pipeline:
  sources:
    - source.test_oversized: {}
  exporters:
    - export.ipfix: {address: "`+addr+`", transport: `+transport+`}
`), nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := pipeline.New(context.Background(), cfg, pipeline.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			<-p.Done()
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "109 records at the collector", func() bool { return received() >= 109 })
			for _, s := range p.Stats() {
				if s.Kind != "exporter" {
					continue
				}
				if s.In != 110 || s.Out != 109 || s.Dropped[plugin.DropRecordTooLarge] != 1 || s.Errored != 0 {
					t.Errorf("exporter in %d, out %d, dropped %v, errored %d; want 110, 109, record_too_large 1, 0", s.In, s.Out, s.Dropped, s.Errored)
				}
			}
		})
	}
}

// rawBatch encodes want's records into messages of at most size bytes and
// returns them as raw records (source.ipfix raw: true), stamped as the
// proxy stamps them.
func rawBatch(t *testing.T, want *flow.Batch, size int) *flow.Batch {
	t.Helper()
	exp := netip.MustParseAddrPort("192.0.2.7:4739")
	raw := flow.NewBatch(0)
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{ObservationDomainID: 9, MaxMessageSize: size})
	if err := enc.Encode(want.Records, time.Now(), func(m []byte) error {
		r := ipfix.AppendRaw(raw, m, exp, time.Now())
		r.OriginalExporterAddress = exp.Addr()
		r.Present.Add(flow.OriginalExporterAddress)
		r.OriginalObservationDomainID = r.ObservationDomainID
		r.Present.Add(flow.OriginalObservationDomainID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestTCPRaw: raw records re-exported over TCP arrive whole, with
// sequence numbers that count their data records (batch's records already
// carry an original exporter, which the copy keeps: the first proxy wins).
func TestTCPRaw(t *testing.T) {
	col := newTCPCollector(t, "127.0.0.1:0")
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.Transport = col.ln.Addr().String(), "tcp"
	e, reg := newExporter(t, cfg)
	want := batch(1, 1000)
	raw := rawBatch(t, want, 1400)
	if err := e.Export(context.Background(), raw); err != nil {
		t.Fatalf("Export: %v", err)
	}
	waitFor(t, "1000 records", func() bool { return len(col.records()) >= 1000 })
	col.mu.Lock()
	errs := col.errs
	col.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("collector errors: %v", errs)
	}
	for i, g := range col.records() {
		sameRecord(t, g, want.Records[i])
	}
	if n := metric(t, reg, "weir_export_ipfix_records_total"); n != 1000 {
		t.Errorf("records_total = %v, want 1000", n)
	}
}

// TestRawSendErrorsCountRawRecords: when no connection can be made, the
// engine is told the raw records it gave were dropped (send_error), and
// the exporter's metric counts their data records.
func TestRawSendErrorsCountRawRecords(t *testing.T) {
	col := newTCPCollector(t, "127.0.0.1:0")
	addr := col.ln.Addr().String()
	col.close() // nothing listens there any more
	cfg := *exporter.DefaultConfig()
	cfg.Address, cfg.Transport = addr, "tcp"
	e, reg := newExporter(t, cfg)
	raw := rawBatch(t, batch(1, 300), 1400)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := e.Export(ctx, raw)
	var de *plugin.DroppedError
	if !errors.As(err, &de) || de.Reason != plugin.DropSendError || de.Records != raw.Len() {
		t.Fatalf("Export = %v, want %d raw records dropped (send_error)", err, raw.Len())
	}
	if n := metric(t, reg, "weir_export_ipfix_records_dropped_total"); n != 300 {
		t.Errorf("records_dropped_total = %v, want the 300 data records", n)
	}
}
