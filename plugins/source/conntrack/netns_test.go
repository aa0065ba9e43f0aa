package conntrack

// Tests against the kernel: two network namespaces joined by veth, real
// TCP (HTTP), UDP and ICMP between them, source.conntrack reading the
// server namespace's table. They need root (CI runs as root) and iptables,
// conntrack, tcpdump and ping (scripts/install-deps.sh).

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

var nsSeq atomic.Int32

// topo is two namespaces, a (client) and b (server), joined by veth0.
type topo struct {
	a, b         string
	a4, b4       netip.Addr
	a6, b6       netip.Addr
	pathA, pathB string
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func needTools(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests need root (CI runs as root)")
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables", "conntrack", "tcpdump", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
}

// newTopo creates the namespaces with conntrack on (a rule that uses it),
// accounting and timestamps, and removes them at the end of the test.
func newTopo(t testing.TB, acct bool) *topo {
	t.Helper()
	needTools(t)
	n := nsSeq.Add(1)
	tp := &topo{
		a: fmt.Sprintf("w14a-%d-%d", os.Getpid(), n), b: fmt.Sprintf("w14b-%d-%d", os.Getpid(), n),
		a4: netip.MustParseAddr("10.14.0.1"), b4: netip.MustParseAddr("10.14.0.2"),
		a6: netip.MustParseAddr("fd14::1"), b6: netip.MustParseAddr("fd14::2"),
	}
	tp.pathA, tp.pathB = "/var/run/netns/"+tp.a, "/var/run/netns/"+tp.b
	for _, ns := range []string{tp.a, tp.b} {
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	sh(t, "ip", "-n", tp.a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", tp.b)
	acctV := "0"
	if acct {
		acctV = "1"
	}
	for _, x := range []struct {
		ns     string
		a4, a6 netip.Addr
	}{{tp.a, tp.a4, tp.a6}, {tp.b, tp.b4, tp.b6}} {
		sh(t, "ip", "-n", x.ns, "addr", "add", x.a4.String()+"/24", "dev", "veth0")
		sh(t, "ip", "-n", x.ns, "addr", "add", x.a6.String()+"/64", "dev", "veth0", "nodad")
		sh(t, "ip", "-n", x.ns, "link", "set", "veth0", "up")
		sh(t, "ip", "-n", x.ns, "link", "set", "lo", "up")
		sh(t, "ip", "netns", "exec", x.ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct="+acctV,
			"net.netfilter.nf_conntrack_timestamp=1")
		for _, ipt := range []string{"iptables", "ip6tables"} {
			sh(t, "ip", "netns", "exec", x.ns, ipt, "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED,RELATED", "-j", "ACCEPT")
		}
	}
	return tp
}

// listen opens a listener in the namespace at path.
func listen(t testing.TB, path, network, addr string) (l net.Listener, pc net.PacketConn) {
	t.Helper()
	err := inNetNS(path, func() error {
		var err error
		if network == "tcp" {
			l, err = net.Listen(network, addr)
		} else {
			pc, err = net.ListenPacket(network, addr)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, pc
}

func dialIn(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetNS(path, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// httpServer serves body on an ephemeral port of b and returns the port.
func httpServer(t testing.TB, tp *topo, host netip.Addr, body int) uint16 {
	l, _ := listen(t, tp.pathB, "tcp", net.JoinHostPort(host.String(), "0"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", body)))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// httpGet makes one request from a on a fresh connection, closed after.
func httpGet(t testing.TB, tp *topo, host netip.Addr, port uint16) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: dialIn(tp.pathA), DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host.String(), strconv.Itoa(int(port))) + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
}

// udpEcho runs an echo server in b and sends n datagrams of size bytes
// from a, waiting for each answer. It returns the server port.
func udpEcho(t testing.TB, tp *topo, host netip.Addr, n, size int) uint16 {
	t.Helper()
	_, pc := listen(t, tp.pathB, "udp", net.JoinHostPort(host.String(), "0"))
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:k], from)
		}
	}()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	c, err := dialIn(tp.pathA)(context.Background(), "udp", net.JoinHostPort(host.String(), strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 65536)
	for i := 0; i < n; i++ {
		c.Write([]byte(strings.Repeat("u", size)))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("udp echo %d: %v", i, err)
		}
	}
	return port
}

// capture is a running tcpdump in b.
type capture struct {
	cmd  *exec.Cmd
	file string
}

func startCapture(t testing.TB, tp *topo, filter string) *capture {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cap.pcap")
	cmd := exec.Command("ip", "netns", "exec", tp.b, "tcpdump", "-Z", "root", "--immediate-mode", "-i", "veth0", "-nn", "-U", "-w", file, filter)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				close(ready)
				rest, _ := io.ReadAll(stderr)
				if os.Getenv("W14DEBUG") != "" {
					fmt.Fprintf(os.Stderr, "tcpdump: %s\n", rest)
				}
				return
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("tcpdump did not start")
	}
	c := &capture{cmd: cmd, file: file}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	return c
}

// count stops tcpdump and counts packets and IP bytes (conntrack counts IP
// lengths) from src and to src.
func (c *capture) count(t testing.TB, src netip.Addr) (fwdP, fwdB, revP, revB uint64) {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // let the last packets reach the file
	c.cmd.Process.Signal(os.Interrupt)
	c.cmd.Wait()
	if os.Getenv("W14DEBUG") != "" {
		out, _ := exec.Command("tcpdump", "-nn", "-r", c.file).CombinedOutput()
		t.Logf("capture:\n%s", out)
	}
	f, err := os.Open(c.file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read capture: %v", err)
			}
			break
		}
		if len(data) < 14 {
			continue
		}
		var from netip.Addr
		var length uint64
		switch layers.EthernetType(uint16(data[12])<<8 | uint16(data[13])) {
		case layers.EthernetTypeIPv4:
			ip := data[14:]
			from = netip.AddrFrom4([4]byte(ip[12:16]))
			length = uint64(ip[2])<<8 | uint64(ip[3])
		case layers.EthernetTypeIPv6:
			ip := data[14:]
			from = netip.AddrFrom16([16]byte(ip[8:24]))
			length = 40 + (uint64(ip[4])<<8 | uint64(ip[5]))
		default:
			continue
		}
		if from == src {
			fwdP, fwdB = fwdP+1, fwdB+length
		} else {
			revP, revB = revP+1, revB+length
		}
	}
	return
}

var ctCounters = regexp.MustCompile(`packets=(\d+) bytes=(\d+)`)

// conntrackL reads one connection's counters with conntrack -L -o extended.
func conntrackL(t testing.TB, tp *topo, args ...string) (fwdP, fwdB, revP, revB uint64) {
	t.Helper()
	out := sh(t, append([]string{"ip", "netns", "exec", tp.b, "conntrack", "-L", "-o", "extended"}, args...)...)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "packets=") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("conntrack -L %v: want one connection, got:\n%s", args, out)
	}
	m := ctCounters.FindAllStringSubmatch(lines[0], 2)
	if len(m) != 2 {
		t.Fatalf("conntrack -L: no counters in %q", lines[0])
	}
	u := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	return u(m[0][1]), u(m[0][2]), u(m[1][1]), u(m[1][2])
}

// run starts a source on b's table.
func run(t testing.TB, tp *topo, mod func(*Config)) (*Source, *plugintest.Emitter) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NetNS = tp.pathB
	cfg.PollInterval = 200 * time.Millisecond
	cfg.ActiveTimeout = time.Hour
	cfg.IdleTimeout = time.Second
	if mod != nil {
		mod(cfg)
	}
	s, err := New(cfg, plugintestSettings())
	if err != nil {
		t.Fatal(err)
	}
	em := plugintest.NewEmitter(64)
	if err := s.Start(context.Background(), em); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, em
}

// sum adds up the records of one connection (matched by protocol and
// destination port, 0 for ICMP) and returns the deltas, the last record's
// totals and reasons.
type connSum struct {
	records          int
	dp, do, rdp, rdo uint64
	tp, to, rtp, rto uint64
	reasons          []uint8
	first            *flow.Record
}

func sumConn(em *plugintest.Emitter, proto uint8, src netip.Addr, dport uint16) connSum {
	var c connSum
	for _, r := range em.Sink.Records() {
		if r.ProtocolIdentifier != proto || r.SourceAddress != src || r.DestinationTransportPort != dport {
			continue
		}
		if c.first == nil {
			c.first = r
		}
		c.records++
		c.dp += r.PacketDeltaCount
		c.do += r.OctetDeltaCount
		c.rdp += r.ReversePacketDeltaCount
		c.rdo += r.ReverseOctetDeltaCount
		c.tp, c.to, c.rtp, c.rto = r.PacketTotalCount, r.OctetTotalCount, r.ReversePacketTotalCount, r.ReverseOctetTotalCount
		c.reasons = append(c.reasons, r.FlowEndReason)
	}
	return c
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasReason(c connSum, r uint8) bool {
	for _, x := range c.reasons {
		if x == r {
			return true
		}
	}
	return false
}

// TestCounters: HTTP, UDP and ICMP over IPv4 and IPv6; each connection's
// records add up to what conntrack -L and tcpdump count.
func TestCounters(t *testing.T) {
	testStart := time.Now()
	tp := newTopo(t, true)
	_, em := run(t, tp, nil)
	for _, fam := range []struct {
		name      string
		src, dst  netip.Addr
		ctFam     string
		icmp      uint8
		pingFlags string
	}{
		{"ipv4", tp.a4, tp.b4, "ipv4", 1, "-4"},
		{"ipv6", tp.a6, tp.b6, "ipv6", 58, "-6"},
	} {
		t.Run(fam.name+"/http", func(t *testing.T) {
			port := httpServer(t, tp, fam.dst, 50_000)
			capt := startCapture(t, tp, fmt.Sprintf("tcp port %d", port))
			httpGet(t, tp, fam.dst, port)
			fp, fb, rp, rb := capt.count(t, fam.src)
			cp, cb, crp, crb := conntrackL(t, tp, "-f", fam.ctFam, "-p", "tcp", "--dport", strconv.Itoa(int(port)))
			if [4]uint64{fp, fb, rp, rb} != [4]uint64{cp, cb, crp, crb} {
				t.Fatalf("tcpdump %v != conntrack -L %v", [4]uint64{fp, fb, rp, rb}, [4]uint64{cp, cb, crp, crb})
			}
			var c connSum
			waitFor(t, "the end-of-flow record", func() bool {
				c = sumConn(em, 6, fam.src, port)
				return hasReason(c, reasonEndOfFlow)
			})
			if got := [4]uint64{c.dp, c.do, c.rdp, c.rdo}; got != [4]uint64{fp, fb, rp, rb} {
				t.Errorf("record deltas %v, tcpdump %v", got, [4]uint64{fp, fb, rp, rb})
			}
			if got := [4]uint64{c.tp, c.to, c.rtp, c.rto}; got != [4]uint64{cp, cb, crp, crb} {
				t.Errorf("record totals %v, conntrack -L %v", got, [4]uint64{cp, cb, crp, crb})
			}
			if c.first.TCPState == "" || c.first.DestinationAddress != fam.dst {
				t.Errorf("record %+v lacks tcpState or destination", c.first)
			}
			// flowStartSeconds is conntrack's start timestamp (on in this
			// namespace): within the test, and not after flowEndSeconds.
			start, end := c.first.FindExtra(ieFlowStartSeconds), c.first.FindExtra(ieFlowEndSeconds)
			if start == nil || end == nil {
				t.Fatalf("record without flowStartSeconds/flowEndSeconds: %+v", c.first.Extra)
			}
			s, e := int64(binary.BigEndian.Uint32(start.Value)), int64(binary.BigEndian.Uint32(end.Value))
			if s < testStart.Unix() || s > time.Now().Unix() || e < s {
				t.Errorf("flowStartSeconds %d, flowEndSeconds %d; test ran from %d", s, e, testStart.Unix())
			}
		})
		t.Run(fam.name+"/udp", func(t *testing.T) {
			capt := startCapture(t, tp, "udp")
			port := udpEcho(t, tp, fam.dst, 5, 300)
			fp, fb, rp, rb := capt.count(t, fam.src)
			cp, cb, crp, crb := conntrackL(t, tp, "-f", fam.ctFam, "-p", "udp", "--dport", strconv.Itoa(int(port)))
			if [4]uint64{fp, fb, rp, rb} != [4]uint64{cp, cb, crp, crb} || fp != 5 {
				t.Fatalf("tcpdump %v, conntrack -L %v, want 5 packets each way", [4]uint64{fp, fb, rp, rb}, [4]uint64{cp, cb, crp, crb})
			}
			var c connSum
			waitFor(t, "the idle record", func() bool {
				c = sumConn(em, 17, fam.src, port)
				return hasReason(c, reasonIdle)
			})
			if got := [4]uint64{c.dp, c.do, c.rdp, c.rdo}; got != [4]uint64{fp, fb, rp, rb} {
				t.Errorf("record deltas %v, tcpdump %v", got, [4]uint64{fp, fb, rp, rb})
			}
		})
		t.Run(fam.name+"/icmp", func(t *testing.T) {
			capt := startCapture(t, tp, "icmp or (icmp6 and (ip6[40] == 128 or ip6[40] == 129))")
			sh(t, "ip", "netns", "exec", tp.a, "ping", fam.pingFlags, "-c", "3", "-i", "0.2", "-W", "2", fam.dst.String())
			fp, fb, rp, rb := capt.count(t, fam.src)
			var c connSum
			waitFor(t, "the idle record", func() bool {
				c = sumConn(em, fam.icmp, fam.src, 0)
				return hasReason(c, reasonIdle)
			})
			if got := [4]uint64{c.dp, c.do, c.rdp, c.rdo}; got != [4]uint64{fp, fb, rp, rb} || fp != 3 {
				t.Errorf("record deltas %v, tcpdump %v (want 3 echo requests)", got, [4]uint64{fp, fb, rp, rb})
			}
		})
	}
}

func plugintestSettings() pluginSettings { return nopSettings() }
