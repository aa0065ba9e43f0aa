package e2e

// The Antrea stack end to end, in network namespaces this test creates:
// two "Node" namespaces joined by veth each run weir with source.conntrack
// → filter.protocol → export.ipfix to a third namespace running weir with
// source.ipfix → proxy → export.jsonl. An HTTP connection from Node A to a
// server on Node B comes out from both Nodes with counters equal to a
// tcpdump count of the same packets.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
	"golang.org/x/sys/unix"
)

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetNS runs fn on a thread in the named namespace (sockets opened there
// stay in it).
func inNetNS(name string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return err
	}
	defer unix.Setns(int(self.Fd()), unix.CLONE_NEWNET)
	return fn()
}

// startWeirIn runs `weir run` in network namespace ns until the test ends
// and waits until its pipeline runs.
func startWeirIn(t *testing.T, ns, yaml string) *weirProc {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	return weirtest.Start(t, weirBin, yaml, func(cmd *exec.Cmd) {
		// ip netns exec execs weir: the child's PID stays weir's.
		cmd.Path = ip
		cmd.Args = append([]string{"ip", "netns", "exec", ns}, cmd.Args...)
	})
}

type antreaNet struct{ a, b, c string }

// newAntreaNet: A and B joined by veth0 (10.14.0.1, 10.14.0.2); each joined
// to the collector C (A: 10.14.1.1 ↔ C 10.14.1.2; B: 10.14.2.1 ↔ C
// 10.14.2.2). A and B track connections (a conntrack rule, accounting and
// timestamps on).
func newAntreaNet(t *testing.T) antreaNet {
	needTools(t, "ip", "iptables", "tcpdump", "conntrack")
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (CI runs as root)")
	}
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	n := antreaNet{a: "w14ea-" + id, b: "w14eb-" + id, c: "w14ec-" + id}
	for _, ns := range []string{n.a, n.b, n.c} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	link := func(x, xdev, xaddr, y, ydev, yaddr string) {
		run(t, "ip", "-n", x, "link", "add", xdev, "type", "veth", "peer", "name", ydev, "netns", y)
		run(t, "ip", "-n", x, "addr", "add", xaddr, "dev", xdev)
		run(t, "ip", "-n", y, "addr", "add", yaddr, "dev", ydev)
		run(t, "ip", "-n", x, "link", "set", xdev, "up")
		run(t, "ip", "-n", y, "link", "set", ydev, "up")
	}
	link(n.a, "veth0", "10.14.0.1/24", n.b, "veth0", "10.14.0.2/24")
	link(n.a, "vc", "10.14.1.1/24", n.c, "va", "10.14.1.2/24")
	link(n.b, "vc", "10.14.2.1/24", n.c, "vb", "10.14.2.2/24")
	for _, ns := range []string{n.a, n.b} {
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1", "net.netfilter.nf_conntrack_timestamp=1")
		run(t, "ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
	}
	return n
}

func nodeYAML(node, collector string) string {
	return fmt.Sprintf(`pipeline:
  batch: {size: 64, timeout: 100ms}
  sources:
    - source.conntrack:
        poll_interval: 200ms
        active_timeout: 1h
        idle_timeout: 2s
        pod_cidrs: [10.14.0.0/24]
        node_cidr: %s/32
  processors:
    - filter.protocol: {protocols: [tcp]}
  exporters:
    - export.ipfix: {address: "%s:4739", transport: tcp, one_set_per_message: true}
`, node, collector)
}

func TestAntreaStack(t *testing.T) {
	n := newAntreaNet(t)
	out := filepath.Join(t.TempDir(), "flows.jsonl")
	startWeirIn(t, n.c, fmt.Sprintf(`pipeline:
  batch: {size: 64, timeout: 100ms}
  sources:
    - source.ipfix: {tcp: ":4739"}
  processors:
    - proxy: {}
  exporters:
    - export.jsonl: {path: %q}
`, out))
	startWeirIn(t, n.a, nodeYAML("10.14.0.1", "10.14.1.2"))
	startWeirIn(t, n.b, nodeYAML("10.14.0.2", "10.14.2.2"))

	// An HTTP server on Node B, a client on Node A, tcpdump on B's veth0.
	var l net.Listener
	if err := inNetNS(n.b, func() (err error) { l, err = net.Listen("tcp", "10.14.0.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(strings.Repeat("antrea ", 5000)))
	})}
	go srv.Serve(l)
	defer srv.Close()
	port := l.Addr().(*net.TCPAddr).Port
	pcap := filepath.Join(t.TempDir(), "b.pcap")
	dump := exec.Command("ip", "netns", "exec", n.b, "tcpdump", "-Z", "root", "--immediate-mode", "-i", "veth0", "-nn", "-U", "-w", pcap, "tcp port "+strconv.Itoa(port))
	stderr, _ := dump.StderrPipe()
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { dump.Process.Kill(); dump.Wait() }()
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening on") {
	}
	go io.Copy(io.Discard, stderr)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, nw, addr string) (c net.Conn, err error) {
			err = inNetNS(n.a, func() error { c, err = (&net.Dialer{}).DialContext(ctx, nw, addr); return err })
			return c, err
		}}}
	resp, err := client.Get(fmt.Sprintf("http://10.14.0.2:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	time.Sleep(300 * time.Millisecond)
	dump.Process.Signal(os.Interrupt)
	dump.Wait()
	fwdP, fwdB, revP, revB := countPcap(t, pcap, "10.14.0.1")
	if fwdP == 0 || revP == 0 {
		t.Fatalf("tcpdump saw %d/%d packets", fwdP, revP)
	}

	// Both Nodes export the connection; sum each Node's deltas.
	type sums struct {
		p, b, rp, rb uint64
		end          bool
		flowType     float64
	}
	var byNode map[string]*sums
	deadline := time.Now().Add(60 * time.Second)
	for {
		byNode = map[string]*sums{}
		data, _ := os.ReadFile(out)
		for _, line := range strings.Split(string(data), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) != nil {
				continue
			}
			if r["destinationTransportPort"] != float64(port) || r["sourceIPv4Address"] != "10.14.0.1" {
				continue
			}
			node, _ := r["originalExporterIPv4Address"].(string)
			s := byNode[node]
			if s == nil {
				s = &sums{}
				byNode[node] = s
			}
			num := func(k string) uint64 { v, _ := r[k].(float64); return uint64(v) }
			s.p += num("packetDeltaCount")
			s.b += num("octetDeltaCount")
			s.rp += num("reversePacketDeltaCount")
			s.rb += num("reverseOctetDeltaCount")
			s.end = s.end || r["flowEndReason"] == float64(3)
			s.flowType, _ = r["flowType"].(float64)
		}
		if len(byNode) == 2 && byNode["10.14.1.1"] != nil && byNode["10.14.2.1"] != nil && byNode["10.14.1.1"].end && byNode["10.14.2.1"].end {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no end-of-flow record of the HTTP connection from both Nodes: %v\n%s", byNode, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := [4]uint64{fwdP, fwdB, revP, revB}
	for node, s := range byNode {
		if got := [4]uint64{s.p, s.b, s.rp, s.rb}; got != want {
			t.Errorf("Node %s: deltas %v, tcpdump %v", node, got, want)
		}
		if s.flowType != 2 {
			t.Errorf("Node %s: flowType %v, want 2 (inter-Node)", node, s.flowType)
		}
	}
}

// countPcap counts packets and IP bytes from src and to it in a capture.
func countPcap(t *testing.T, file, src string) (fwdP, fwdB, revP, revB uint64) {
	t.Helper()
	return countPcapIP(t, file, netip.MustParseAddr(src))
}

// TestConntrackStartErrors: weir without CAP_NET_ADMIN, and with
// accounting off, exits at start naming the cause.
func TestConntrackStartErrors(t *testing.T) {
	needTools(t, "setpriv")
	n := newAntreaNet(t)
	run(t, "ip", "netns", "exec", n.a, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0")
	yaml := "pipeline:\n  sources:\n    - source.conntrack: {}\n  exporters:\n    - export.jsonl: {path: \"-\"}\n"
	for _, tc := range []struct {
		name   string
		prefix []string
		want   string
	}{
		{"no CAP_NET_ADMIN", []string{"setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"}, "CAP_NET_ADMIN"},
		{"accounting off", nil, "net.netfilter.nf_conntrack_acct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "weir.yaml")
			os.WriteFile(cfg, []byte(yaml), 0o644)
			args := append([]string{"ip", "netns", "exec", n.a}, tc.prefix...)
			args = append(args, weirBin, "run", "-c", cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
			if err == nil {
				t.Fatalf("weir ran:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("weir's error does not name %q:\n%s", tc.want, out)
			}
		})
	}
}
