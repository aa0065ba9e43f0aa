//go:build linux

package ipfix_test

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/weir-flow/weir/core/plugin"
	source "github.com/weir-flow/weir/plugins/source/ipfix"
)

// TestShutdownAccountsTCPBacklog: what a TCP connection still holds when
// shutdown_drain ends is counted, not silently dropped with the socket —
// whole messages by their records (lost_on_shutdown_records_total) and a
// trailing partial message by its bytes (lost_on_shutdown_bytes_total).
// Every record sent is emitted or counted lost.
func TestShutdownAccountsTCPBacklog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drain time.Duration
	}{
		{"no drain", 0},
		{"short drain", 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loopbackConfig()
			cfg.UDP, cfg.Readers = "", 1
			cfg.ShutdownDrain = tc.drain
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
			c, err := net.Dial("tcp", s.TCPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.(*net.TCPConn).SetWriteBuffer(8 << 20)
			const n = 3000
			msgs := encode(t, newEncoder(1), records(0, n))
			var stream bytes.Buffer
			for _, m := range msgs {
				stream.Write(m)
			}
			const partial = 100 // the first bytes of one more message
			stream.Write(msgs[len(msgs)-1][:partial])
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(stream.Bytes()); err != nil {
				t.Fatalf("write %d bytes: %v", stream.Len(), err)
			}
			// Everything sent is in Weir's socket (or already read).
			waitFor(t, "the stream to leave the client", func() bool { return outq(c) == 0 })
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			emitted := len(em.Records())
			lost := int(metric(t, reg, "weir_source_ipfix_lost_on_shutdown_records_total"))
			lostBytes := metric(t, reg, "weir_source_ipfix_lost_on_shutdown_bytes_total")
			t.Logf("emitted %d, lost on shutdown %d records, %d messages, %v bytes", emitted, lost,
				int(metric(t, reg, "weir_source_ipfix_lost_on_shutdown_messages_total")), lostBytes)
			if emitted+lost != n || lost == 0 {
				t.Errorf("emitted %d + lost %d = %d, want %d with some lost", emitted, lost, emitted+lost, n)
			}
			if lostBytes != partial {
				t.Errorf("lost_on_shutdown_bytes_total = %v, want %d (the partial message)", lostBytes, partial)
			}
		})
	}
}

// outq returns the bytes c has not yet had acknowledged (SIOCOUTQ).
func outq(c net.Conn) int {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	_ = raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
	return n
}
