package ipfix_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/plugin"
	exporter "github.com/weir-flow/weir/plugins/export/ipfix"
)

// TestUDPPathMTUDefault: with max_message_size 0, messages to a loopback
// collector fill the loopback path (up to 65507 bytes) instead of 1400,
// and every record arrives.
func TestUDPPathMTUDefault(t *testing.T) {
	col := newUDPCollector(t)
	cfg := *exporter.DefaultConfig()
	cfg.Address = col.conn.LocalAddr().String()
	e, reg := newExporter(t, cfg)
	const n = 1000
	if err := e.Export(context.Background(), batch(0, n)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every record decoded", func() bool { return len(col.records()) == n })
	col.mu.Lock()
	sizes := append([]int(nil), col.sizes...)
	col.mu.Unlock()
	largest := 0
	for _, s := range sizes {
		largest = max(largest, s)
		if s > 65507 {
			t.Errorf("datagram of %d bytes over the loopback path's 65507", s)
		}
	}
	if largest <= 1472 {
		t.Errorf("largest datagram %d bytes: the default did not use the loopback MTU", largest)
	}
	if got := metric(t, reg, "weir_export_ipfix_records_total"); got != n {
		t.Errorf("weir_export_ipfix_records_total = %v, want %d", got, n)
	}
	if got := metric(t, reg, "weir_export_ipfix_messages_total"); int(got) != len(sizes) {
		t.Errorf("weir_export_ipfix_messages_total = %v, collector got %d datagrams", got, len(sizes))
	}
}

// TestUDPAccounting: every record given to Export is either in a message
// the kernel took (records_total) or counted as dropped
// (records_dropped_total{reason="send_error"}), whether the collector is
// unreachable (ICMP port unreachable: the refused message is retried) or a
// message cannot be sent at all (65535 bytes over IPv4 loopback: EMSGSIZE).
func TestUDPAccounting(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size, per   int
		listen      bool
		wantDropped bool
	}{
		{"port unreachable", 512, 20, false, false},
		{"datagram too large", 65535, 1000, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if !tc.listen {
				l.Close()
			}
			cfg := *exporter.DefaultConfig()
			cfg.Address, cfg.MaxMessageSize = l.LocalAddr().String(), tc.size
			e, reg := newExporter(t, cfg)
			total, reported := 0, 0
			for range 10 {
				err := e.Export(context.Background(), batch(0, tc.per))
				plugin.Drops(err, func(_ string, n int) { reported += n })
				total += tc.per
				time.Sleep(2 * time.Millisecond)
			}
			sent := metric(t, reg, "weir_export_ipfix_records_total")
			dropped := labeled(t, reg, "weir_export_ipfix_records_dropped_total", "reason", "send_error")
			if tc.wantDropped && dropped == 0 {
				t.Error("no record counted as dropped")
			}
			if reported != int(dropped) {
				t.Errorf("Export reported %d records dropped to the engine, the metric says %v", reported, dropped)
			}
			if int(sent+dropped) != total {
				t.Errorf("records sent %v + dropped %v = %v, want the %d exported", sent, dropped, sent+dropped, total)
			}
		})
	}
}
