package packetcapture_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/source/internal/netnstest"
	"github.com/weir-flow/weir/plugins/source/packetcapture"
)

// lab is two namespaces, client and server, linked by a veth pair (c0 –
// s0), with HTTP servers on the server's ports 8080 and 8081.
type lab struct {
	client, server string
}

const (
	clientIP  = "10.18.0.1"
	serverIP  = "10.18.0.2"
	clientIP6 = "fd18::1"
	serverIP6 = "fd18::2"
	convPort  = 40001 // the conversation's client port
	httpPort  = 8080
)

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{client: netnstest.New(t, "w18"), server: netnstest.New(t, "w18")}
	netnstest.Veth(t, l.client, "c0", []string{clientIP + "/24", clientIP6 + "/64"},
		l.server, "s0", []string{serverIP + "/24", serverIP6 + "/64"})
	for _, port := range []int{httpPort, httpPort + 1} {
		var ln net.Listener
		var err error
		netnstest.Do(t, l.server, func() { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)) })
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, strings.Repeat("weir packet capture\n", 200))
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	// A UDP sink for the decoy datagrams.
	var pc net.PacketConn
	var err error
	netnstest.Do(t, l.server, func() { pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", httpPort)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return l
}

// curl fetches from the server inside the client namespace.
func (l *lab) curl(t *testing.T, localPort int, url string) {
	t.Helper()
	args := []string{"curl", "-sS", "-o", "/dev/null", "--max-time", "10", url}
	if localPort != 0 {
		args = append(args, "--local-port", strconv.Itoa(localPort))
	}
	netnstest.Exec(t, l.client, args...)
}

// traffic runs the conversation (client port 40001 → server 8080) between
// decoys: other client ports, another server port, the same ports over
// UDP, the same server port over IPv6, ICMP.
func (l *lab) traffic(t *testing.T) {
	t.Helper()
	l.curl(t, 40002, fmt.Sprintf("http://%s:%d/", serverIP, httpPort))
	l.curl(t, 0, fmt.Sprintf("http://%s:%d/", serverIP, httpPort+1))
	l.curl(t, convPort, fmt.Sprintf("http://%s:%d/", serverIP, httpPort)) // the conversation
	l.curl(t, 40004, fmt.Sprintf("http://[%s]:%d/", serverIP6, httpPort))
	l.curl(t, 40003, fmt.Sprintf("http://%s:%d/", serverIP, httpPort))
	netnstest.Exec(t, l.client, "ping", "-c", "2", "-i", "0.2", "-W", "1", serverIP)
	var conn net.Conn
	var err error
	netnstest.Do(t, l.client, func() {
		d := net.Dialer{LocalAddr: &net.UDPAddr{Port: convPort}}
		conn, err = d.Dial("udp", net.JoinHostPort(serverIP, strconv.Itoa(httpPort)))
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		conn.Write([]byte("decoy"))
	}
	conn.Close()
}

// tcpdump runs libpcap's tcpdump with expression on the client's c0 and
// returns a function that stops it and returns its file.
func (l *lab) tcpdump(t *testing.T, expression string) func() string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tcpdump.pcap")
	cmd := netnstest.Command(l.client, "tcpdump", "-i", "c0", "-n", "-U", "-w", path, expression)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start")
	}
	return func() string {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		return path
	}
}

// packet is one packet as tshark reads it.
type packet struct {
	src, dst     string
	sport, dport int
	flags        int // TCP flags, -1 for other protocols
}

// tsharkPackets reads a capture with tshark.
func tsharkPackets(t *testing.T, path string) []packet {
	t.Helper()
	out, err := exec.Command("tshark", "-r", path, "-T", "fields", "-E", "separator=,",
		"-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst",
		"-e", "tcp.srcport", "-e", "udp.srcport", "-e", "tcp.dstport", "-e", "udp.dstport", "-e", "tcp.flags").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", path, err)
	}
	var ps []packet
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		p := packet{src: f[0] + f[1], dst: f[2] + f[3], flags: -1}
		p.sport, _ = strconv.Atoi(f[4] + f[5])
		p.dport, _ = strconv.Atoi(f[6] + f[7])
		if f[8] != "" {
			v, _ := strconv.ParseInt(strings.TrimPrefix(f[8], "0x"), 16, 32)
			p.flags = int(v)
		}
		ps = append(ps, p)
	}
	return ps
}

// capture runs the source in the client namespace while the lab's traffic
// runs, until the duration limit, and returns the source, its records and
// tcpdump's file for the same expression.
func (l *lab) capture(t *testing.T, cfg *packetcapture.Config) (*packetcapture.Source, []*flow.Record, string, *prometheus.Registry) {
	t.Helper()
	set := plugin.NopSettings(packetcapture.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	var s *packetcapture.Source
	var err error
	netnstest.Do(t, l.client, func() { s, err = packetcapture.New(cfg, set) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := l.tcpdump(t, s.Expression())
	em := plugintest.NewEmitter(256)
	netnstest.Do(t, l.client, func() { err = s.Start(context.Background(), em) })
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	l.traffic(t)
	select {
	case <-s.Done():
	case <-time.After(cfg.Duration + 20*time.Second):
		t.Fatal("capture did not end")
	}
	return s, em.Sink.Records(), stop(), reg
}

func TestCaptureConversation(t *testing.T) {
	spec := packetcapture.Flow{SourceIP: clientIP, DestinationIP: serverIP, SourcePort: convPort, DestinationPort: httpPort, Protocol: "tcp"}
	clientToServer := func(p packet) bool {
		return p.src == clientIP && p.dst == serverIP && p.sport == convPort && p.dport == httpPort
	}
	serverToClient := func(p packet) bool {
		return p.src == serverIP && p.dst == clientIP && p.sport == httpPort && p.dport == convPort
	}
	for _, direction := range []string{packetcapture.SourceToDestination, packetcapture.Both, packetcapture.DestinationToSource} {
		t.Run(direction, func(t *testing.T) {
			l := newLab(t) // fresh namespaces: the client port is reused
			cfg := packetcapture.DefaultConfig()
			cfg.Interface, cfg.Flow, cfg.Direction = "c0", spec, direction
			cfg.Duration = 4 * time.Second
			cfg.Path = filepath.Join(t.TempDir(), "capture.pcapng")
			s, recs, tcpdumpFile, reg := l.capture(t, cfg)

			ours := tsharkPackets(t, cfg.Path) // opens in tshark -r
			theirs := tsharkPackets(t, tcpdumpFile)
			if len(ours) != len(theirs) || len(ours) == 0 {
				t.Fatalf("captured %d packets, tcpdump %d with the same filter %q", len(ours), len(theirs), s.Expression())
			}
			t.Logf("%d packets, as tcpdump, filter %q", len(ours), s.Expression())
			var fwd, rev int
			for i, p := range ours {
				if p != theirs[i] {
					t.Errorf("packet %d: %+v, tcpdump has %+v", i, p, theirs[i])
				}
				switch {
				case clientToServer(p):
					fwd++
				case serverToClient(p):
					rev++
				default:
					t.Errorf("packet %d %+v is not of the conversation", i, p)
				}
			}
			switch direction {
			case packetcapture.SourceToDestination:
				if rev != 0 || fwd < 5 {
					t.Errorf("client→server %d, server→client %d packets: want only client→server", fwd, rev)
				}
			case packetcapture.DestinationToSource:
				if fwd != 0 || rev < 4 {
					t.Errorf("client→server %d, server→client %d packets: want only server→client", fwd, rev)
				}
			case packetcapture.Both:
				const syn, ack = 0x02, 0x10
				if len(ours) < 3 || !clientToServer(ours[0]) || ours[0].flags != syn ||
					!serverToClient(ours[1]) || ours[1].flags != syn|ack ||
					!clientToServer(ours[2]) || ours[2].flags != ack {
					t.Errorf("no three-way handshake at the start: %+v", ours[:min(3, len(ours))])
				}
			}
			st := s.Status()
			if st.Reason != packetcapture.EndDuration || !st.Done || st.Packets != uint64(len(ours)) {
				t.Errorf("status %+v, want done by duration with %d packets", st, len(ours))
			}
			if got := testutil.ToFloat64(mustCollector(t, reg, "weir_source_packetcapture_packets_total")); got != float64(len(ours)) {
				t.Errorf("weir_source_packetcapture_packets_total = %v, want %d", got, len(ours))
			}
			// One record: the conversation, uniflow or biflow.
			if len(recs) != 1 {
				t.Fatalf("%d flow records, want 1: %+v", len(recs), recs)
			}
			r := recs[0]
			wantSrc, wantFwd, wantRev := clientIP, fwd, rev
			if direction == packetcapture.DestinationToSource {
				wantSrc, wantFwd = serverIP, rev
			}
			if r.SourceAddress.String() != wantSrc || r.ProtocolIdentifier != 6 || r.PacketDeltaCount != uint64(wantFwd) {
				t.Errorf("record %s→%s proto %d packets %d, want from %s with %d packets", r.SourceAddress, r.DestinationAddress,
					r.ProtocolIdentifier, r.PacketDeltaCount, wantSrc, wantFwd)
			}
			if direction == packetcapture.Both {
				if r.ReversePacketDeltaCount != uint64(wantRev) || r.TCPControlBits&0x13 != 0x13 || r.FindExtra(flow.IEKey{Enterprise: flow.ReversePEN, Element: 6}) == nil {
					t.Errorf("biflow reverse packets %d (want %d), flags %#x", r.ReversePacketDeltaCount, wantRev, r.TCPControlBits)
				}
				if r.FlowEndReason != 3 {
					t.Errorf("flowEndReason %d, want 3 (end of flow detected: FIN seen)", r.FlowEndReason)
				}
			}
		})
	}
}

func mustCollector(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return gatherer{reg, name}
}

// gatherer is a collector view of one metric of a registry.
type gatherer struct {
	reg  *prometheus.Registry
	name string
}

func (g gatherer) Describe(chan<- *prometheus.Desc) {}
func (g gatherer) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == g.name {
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "", nil, nil), prometheus.UntypedValue, v)
			}
		}
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
