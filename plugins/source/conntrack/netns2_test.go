package conntrack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	ct "github.com/ti-mo/conntrack"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/cputime"
	"github.com/weir-flow/weir/plugins/filter/protocol"
)

// TestShortConnectionViaEvents: a connection opened and deleted from the
// table between two polls is exported from its destroy event, with the
// final counters conntrack showed.
func TestShortConnectionViaEvents(t *testing.T) {
	tp := newTopo(t, true)
	for _, events := range []bool{true, false} {
		t.Run("events="+strconv.FormatBool(events), func(t *testing.T) {
			s, em := run(t, tp, func(c *Config) {
				c.PollInterval = time.Hour // only the dump at Start
				c.Events = events
			})
			port := httpServer(t, tp, tp.b4, 2000)
			httpGet(t, tp, tp.b4, port)
			cp, cb, crp, crb := conntrackL(t, tp, "-p", "tcp", "--dport", strconv.Itoa(int(port)))
			sh(t, "ip", "netns", "exec", tp.b, "conntrack", "-D", "-p", "tcp", "--dport", strconv.Itoa(int(port)))
			if !events {
				time.Sleep(time.Second)
				if c := sumConn(em, 6, tp.a4, port); c.records != 0 {
					t.Fatalf("without events, %d records of a connection no dump saw", c.records)
				}
				return
			}
			var c connSum
			waitFor(t, "the record from the destroy event", func() bool {
				c = sumConn(em, 6, tp.a4, port)
				return c.records > 0
			})
			if got := [4]uint64{c.dp, c.do, c.rdp, c.rdo}; got != [4]uint64{cp, cb, crp, crb} || c.reasons[0] != reasonEndOfFlow {
				t.Errorf("record deltas %v reasons %v, conntrack -L %v", got, c.reasons, [4]uint64{cp, cb, crp, crb})
			}
			if s.Stats().Events == 0 {
				t.Error("no events counted")
			}
		})
	}
}

// TestActiveTimeoutDeltas: a long TCP connection sending in bursts is
// exported at every active timeout; the deltas add up to the totals and to
// tcpdump's count.
func TestActiveTimeoutDeltas(t *testing.T) {
	tp := newTopo(t, true)
	_, em := run(t, tp, func(c *Config) {
		c.PollInterval = 100 * time.Millisecond
		c.ActiveTimeout = 300 * time.Millisecond
		c.IdleTimeout = time.Hour
	})
	l, _ := listen(t, tp.pathB, "tcp", net.JoinHostPort(tp.b6.String(), "0"))
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	go func() {
		c, err := l.Accept()
		if err == nil {
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					c.Close()
					return
				}
			}
		}
	}()
	capt := startCapture(t, tp, "tcp port "+strconv.Itoa(int(port)))
	c, err := dialIn(tp.pathA)(context.Background(), "tcp", net.JoinHostPort(tp.b6.String(), strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		c.Write([]byte(strings.Repeat("d", 1000*(i+1))))
		time.Sleep(200 * time.Millisecond)
	}
	c.Close()
	fp, fb, rp, rb := capt.count(t, tp.a6)
	var cs connSum
	waitFor(t, "the end of the connection", func() bool {
		cs = sumConn(em, 6, tp.a6, port)
		return hasReason(cs, reasonEndOfFlow)
	})
	active := 0
	for _, r := range cs.reasons {
		if r == reasonActive {
			active++
		}
	}
	if active < 2 {
		t.Errorf("%d active-timeout records (%v), want several", active, cs.reasons)
	}
	if got := [4]uint64{cs.dp, cs.do, cs.rdp, cs.rdo}; got != [4]uint64{cs.tp, cs.to, cs.rtp, cs.rto} {
		t.Errorf("deltas add up to %v, last totals %v", got, [4]uint64{cs.tp, cs.to, cs.rtp, cs.rto})
	}
	if got := [4]uint64{cs.dp, cs.do, cs.rdp, cs.rdo}; got != [4]uint64{fp, fb, rp, rb} {
		t.Errorf("deltas add up to %v, tcpdump counted %v", got, [4]uint64{fp, fb, rp, rb})
	}
}

// TestZoneAndMarkFilters: iptables puts one UDP flow in zone 7 and marks
// another 0x10; each filter keeps exactly its flow, and the kernel did the
// filtering (the dump returned only matching connections).
func TestZoneAndMarkFilters(t *testing.T) {
	tp := newTopo(t, true)
	_, pcZone := listen(t, tp.pathB, "udp", tp.b4.String()+":0")
	_, pcMark := listen(t, tp.pathB, "udp", tp.b4.String()+":0")
	_, pcOther := listen(t, tp.pathB, "udp", tp.b4.String()+":0")
	for _, pc := range []net.PacketConn{pcZone, pcMark, pcOther} {
		defer pc.Close()
	}
	zonePort := strconv.Itoa(pcZone.LocalAddr().(*net.UDPAddr).Port)
	markPort := strconv.Itoa(pcMark.LocalAddr().(*net.UDPAddr).Port)
	sh(t, "ip", "netns", "exec", tp.b, "iptables", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", zonePort, "-j", "CT", "--zone", "7")
	sh(t, "ip", "netns", "exec", tp.b, "iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "udp", "--dport", markPort, "-j", "CONNMARK", "--set-mark", "0x10")
	send := func(pc net.PacketConn) {
		c, err := dialIn(tp.pathA)(context.Background(), "udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hello"))
		c.Close()
	}
	for _, pc := range []net.PacketConn{pcZone, pcMark, pcOther} {
		send(pc)
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"zone", func(c *Config) { c.Zones = []int{7} }, zonePort},
		{"mark", func(c *Config) { c.Mark = MarkConfig{Value: 0x10, Mask: 0xff} }, markPort},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, em := run(t, tp, func(c *Config) { tc.mod(c); c.CtIEs = true })
			waitFor(t, "an idle record", func() bool { return em.Sink.Len() > 0 })
			time.Sleep(500 * time.Millisecond)
			for _, r := range em.Sink.Records() {
				if strconv.Itoa(int(r.DestinationTransportPort)) != tc.want {
					t.Errorf("record to port %d passed the %s filter (want only %s)", r.DestinationTransportPort, tc.name, tc.want)
				}
				if z := r.FindExtra(IECtZone); tc.name == "zone" && (z == nil || z.Value[1] != 7) {
					t.Errorf("ctZone = %v, want 7", z)
				}
				if m := r.FindExtra(IECtMark); tc.name == "mark" && (m == nil || m.Value[3] != 0x10) {
					t.Errorf("ctMark = %v, want 0x10", m)
				}
			}
			st := s.Stats()
			if st.Filtered[tc.name] != 0 {
				t.Errorf("%d connections filtered in user space; the kernel dump should have left them out", st.Filtered[tc.name])
			}
			if st.Dumped == 0 || st.Dumped > st.Polls {
				t.Errorf("dumps returned %d connections in %d polls, want one a poll", st.Dumped, st.Polls)
			}
		})
	}
}

// TestStoreFullPolicy: with room for two connections, the others are
// refused and counted, and the two kept are exported.
func TestStoreFullPolicy(t *testing.T) {
	tp := newTopo(t, true)
	for i := 0; i < 5; i++ {
		udpEcho(t, tp, tp.b4, 1, 10)
	}
	s, em := run(t, tp, func(c *Config) { c.MaxConnections = 2 })
	waitFor(t, "two idle records", func() bool { return em.Sink.Len() >= 2 })
	st := s.Stats()
	if st.Connections > 2 || st.StoreFull < 3 {
		t.Errorf("store holds %d, refused %d; want ≤ 2 and ≥ 3", st.Connections, st.StoreFull)
	}
}

// TestProtocolPushdown: a filter.protocol {udp} after the source is
// applied in the kernel dump: TCP connections are never returned.
func TestProtocolPushdown(t *testing.T) {
	tp := newTopo(t, true)
	port := httpServer(t, tp, tp.b4, 100)
	for i := 0; i < 3; i++ {
		httpGet(t, tp, tp.b4, port)
	}
	udpEcho(t, tp, tp.b4, 2, 10)
	cfg := DefaultConfig()
	cfg.NetNS, cfg.PollInterval, cfg.IdleTimeout = tp.pathB, 100*time.Millisecond, time.Second
	s, err := New(cfg, nopSettings())
	if err != nil {
		t.Fatal(err)
	}
	f, err := protocol.New(&protocol.Config{Protocols: []any{"udp"}}, plugin.NopSettings(protocol.ID))
	if err != nil {
		t.Fatal(err)
	}
	s.PushDown(f)
	em := plugintest.NewEmitter(64)
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	waitFor(t, "the UDP record", func() bool { return em.Sink.Len() > 0 })
	for _, r := range em.Sink.Records() {
		if r.ProtocolIdentifier != 17 {
			t.Errorf("protocol %d record built despite the pushed-down filter", r.ProtocolIdentifier)
		}
	}
	st := s.Stats()
	if st.Filtered["protocol"] != 0 || st.Dumped > st.Polls {
		t.Errorf("the kernel returned %d connections in %d polls (%d filtered in user space), want only the UDP one", st.Dumped, st.Polls, st.Filtered["protocol"])
	}
}

// TestStartErrors: the causes Start names.
func TestStartErrors(t *testing.T) {
	t.Run("accounting off", func(t *testing.T) {
		tp := newTopo(t, false)
		cfg := DefaultConfig()
		cfg.NetNS = tp.pathB
		s, err := New(cfg, nopSettings())
		if err != nil {
			t.Fatal(err)
		}
		err = s.Start(context.Background(), plugintest.NewEmitter(8))
		if !errors.Is(err, ErrAccountingOff) || !strings.Contains(err.Error(), "net.netfilter.nf_conntrack_acct") {
			t.Fatalf("Start = %v, want ErrAccountingOff naming the sysctl", err)
		}
		cfg.EnableAccounting = true
		s, _ = New(cfg, nopSettings())
		if err := s.Start(context.Background(), plugintest.NewEmitter(8)); err != nil {
			t.Fatalf("Start with enable_accounting: %v", err)
		}
		s.Shutdown(context.Background())
		if v, _ := readSysctl(tp.pathB, "net.netfilter.nf_conntrack_acct"); v != "1" {
			t.Errorf("nf_conntrack_acct = %q after enable_accounting, want 1", v)
		}
	})
	t.Run("no such netns", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.NetNS = "/var/run/netns/w14-absent"
		s, _ := New(cfg, nopSettings())
		if err := s.Start(context.Background(), plugintest.NewEmitter(8)); err == nil || !strings.Contains(err.Error(), "w14-absent") {
			t.Fatalf("Start = %v, want an error naming the netns", err)
		}
	})
}

func TestLifecycle(t *testing.T) {
	tp := newTopo(t, true)
	plugintest.Lifecycle(t, func() plugin.Component {
		cfg := DefaultConfig()
		cfg.NetNS = tp.pathB
		s, err := New(cfg, nopSettings())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// BenchmarkPollKernel is one real poll (ctnetlink dump, decoding, store
// update, expiry) of a table holding n TCP connections and n/100 UDP ones,
// created with conntrack's netlink API in a test namespace:
//   - all: every connection, no filter;
//   - udp-kernel: filter.protocol {udp} pushed into the dump request;
//   - udp-userspace: the same filter applied after an unfiltered dump.
//
// The difference between the last two is what the kernel push-down saves.
func BenchmarkPollKernel(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		tp := newTopo(b, true)
		sh(b, "ip", "netns", "exec", tp.b, "sysctl", "-qw", "net.netfilter.nf_conntrack_max=262144")
		var conn *ct.Conn
		if err := inNetNS(tp.pathB, func() (err error) { conn, err = ct.Dial(nil); return err }); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n+n/100; i++ {
			proto := uint8(6)
			if i >= n {
				proto = 17
			}
			src := netip.AddrFrom4([4]byte{10, 15, byte(i >> 8), byte(i)})
			f := ct.NewFlow(proto, 0, src, netip.MustParseAddr("10.16.0.1"), uint16(1024+i%50000), uint16(80+i/50000), 600, 0)
			if err := conn.Create(f); err != nil {
				b.Fatalf("create conntrack entry %d: %v", i, err)
			}
		}
		conn.Close()
		for _, mode := range []string{"all", "udp-kernel", "udp-userspace"} {
			b.Run(fmt.Sprintf("%d/%s", n, mode), func(b *testing.B) {
				cfg := DefaultConfig()
				cfg.NetNS, cfg.Events, cfg.MaxConnections = tp.pathB, false, 2*n
				// The run goroutine then has nothing to do: poll here.
				cfg.PollInterval, cfg.ActiveTimeout, cfg.IdleTimeout = time.Hour, time.Hour, time.Hour
				s, err := New(cfg, nopSettings())
				if err != nil {
					b.Fatal(err)
				}
				if mode != "all" {
					var set [256]bool
					set[17] = true
					s.protoSet = &set
				}
				if err := s.Start(context.Background(), plugintest.NewEmitter(256)); err != nil {
					b.Fatal(err)
				}
				defer s.Shutdown(context.Background())
				s.kernelOK = mode != "udp-userspace"
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cputime.Start()
				for i := 0; i < b.N; i++ {
					if err := s.poll(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				// CPU time includes the kernel's dump (system time).
				cpu.Report(b, b.N*(n+n/100), "conn")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n+n/100), "ns/conn")
			})
		}
	}
}
