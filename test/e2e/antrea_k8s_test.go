package e2e

// The Antrea stack in aggregate mode, end to end, with real Pods: a
// throwaway Kubernetes API server (etcd + kube-apiserver, test/k8s's
// run-apiserver.sh) knows two Nodes and a Pod on each; two "Node" network
// namespaces each run weir source.conntrack → filter.protocol →
// enrich.podlabels (node_name: its Node) → export.ipfix over TCP to a third
// namespace running weir source.ipfix → aggregate → export.jsonl. An HTTP
// connection (IPv4, then IPv6: the Pods are dual-stack) from the client Pod
// on Node A to the server Pod on Node B comes out of the aggregator as one correlated record: the source Pod from
// Node A's half, the destination Pod from Node B's, and counters (in total
// and per Node) equal to a tcpdump count of the same packets and to each
// Node's `conntrack -L`.

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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/weir-flow/weir/test/weirtest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// startAPIServer runs etcd and kube-apiserver on loopback ports of the
// root namespace (test/k8s/run-apiserver.sh; kube-apiserver comes from the
// cache `make k8s-apiserver` fills, or is built) and returns the kubeconfig
// path and the API server's port.
func startAPIServer(t *testing.T) (kubeconfig string, apiPort int) {
	t.Helper()
	needTools(t, "etcd", "openssl")
	var etcdPort int
	for range 20 { // etcd's peer port is etcdPort+1: both must be free
		etcdPort = weirtest.FreePort(t, "tcp")
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", etcdPort+1)); err == nil {
			l.Close()
			break
		}
	}
	apiPort = weirtest.FreePort(t, "tcp")
	dir := t.TempDir()
	script := filepath.Join(weirtest.RepoRoot(), "test", "k8s", "run-apiserver.sh")
	cmd := exec.Command(script, "start", dir)
	cmd.Env = append(os.Environ(), "WEIR_K8S_ETCD_PORT="+strconv.Itoa(etcdPort), "WEIR_K8S_API_PORT="+strconv.Itoa(apiPort),
		"WEIR_K8S_WATCH_PID="+strconv.Itoa(os.Getpid()))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			t.Logf("run-apiserver.sh stop: %v\n%s", err, out)
		}
	})
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run-apiserver.sh start: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("API server ready in %v", time.Since(start).Round(time.Millisecond))
	return lines[len(lines)-1], apiPort
}

// loopbackProxy forwards 127.0.0.1:port inside namespace ns to the same
// port of the root namespace's loopback, so a weir in ns reaches the API
// server with the kubeconfig's address (and its TLS name) unchanged.
func loopbackProxy(t *testing.T, ns string, port int) {
	t.Helper()
	var l net.Listener
	if err := inNetNS(ns, func() (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// k8sObjects creates the Nodes and their Pods the test's traffic runs
// between: Pod IPs are the Nodes' veth addresses of newAntreaNet.
func k8sObjects(t *testing.T, kubeconfig string, nodes map[string]string, pods map[string][]string) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "w14"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, ip := range nodes {
		n, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
		if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, nodeIPs := range pods { // name → {node, ip...}
		p, err := client.CoreV1().Pods("w14").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: nodeIPs[0],
				Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = nodeIPs[1]
		for _, ip := range nodeIPs[1:] {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		if _, err := client.CoreV1().Pods("w14").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func nodeK8sYAML(node, nodeIP4, nodeIP6, collector, kubeconfig string) string {
	return fmt.Sprintf(`pipeline:
  batch: {size: 64, timeout: 100ms}
  sources:
    - source.conntrack:
        poll_interval: 200ms
        active_timeout: 1h
        idle_timeout: 2s
        pod_cidrs: [10.14.0.0/24, "fd14::/64"]
        node_cidr: [%s/32, "%s/128"]
  processors:
    - filter.protocol: {protocols: [tcp]}
    - enrich.podlabels: {kubeconfig: %q, node_name: %s, sync_timeout: 30s}
  exporters:
    - export.ipfix: {address: "%s:4739", transport: tcp, one_set_per_message: true}
`, nodeIP4, nodeIP6, kubeconfig, node, collector)
}

// TestAntreaStackAggregateK8s: dual-stack Pods; an IPv4 and an IPv6 HTTP
// connection from the client Pod to the server Pod.
func TestAntreaStackAggregateK8s(t *testing.T) {
	kubeconfig, apiPort := startAPIServer(t)
	k8sObjects(t, kubeconfig,
		map[string]string{"node-a": "10.14.1.1", "node-b": "10.14.2.1"},
		map[string][]string{"client": {"node-a", "10.14.0.1", "fd14::1"}, "server": {"node-b", "10.14.0.2", "fd14::2"}})
	n := newAntreaNet(t)
	for _, x := range []struct{ ns, addr string }{{n.a, "fd14::1/64"}, {n.b, "fd14::2/64"}} {
		run(t, "ip", "-n", x.ns, "addr", "add", x.addr, "dev", "veth0", "nodad")
		run(t, "ip", "netns", "exec", x.ns, "ip6tables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
	}
	loopbackProxy(t, n.a, apiPort)
	loopbackProxy(t, n.b, apiPort)

	const corrTimeout = 3 * time.Second
	out := filepath.Join(t.TempDir(), "flows.jsonl")
	startWeirIn(t, n.c, fmt.Sprintf(`pipeline:
  batch: {size: 64, timeout: 100ms}
  sources:
    - source.ipfix: {tcp: ":4739"}
  processors:
    - aggregate: {active_timeout: 1h, inactive_timeout: 1h, correlation_timeout: %s}
  exporters:
    - export.jsonl: {path: %q}
`, corrTimeout, out), true)
	startWeirIn(t, n.a, nodeK8sYAML("node-a", "10.14.0.1", "fd14::1", "10.14.1.2", kubeconfig), true)
	startWeirIn(t, n.b, nodeK8sYAML("node-b", "10.14.0.2", "fd14::2", "10.14.2.2", kubeconfig), true)

	// An HTTP server Pod on Node B (both families), a client Pod on Node A.
	var l net.Listener
	if err := inNetNS(n.b, func() (err error) { l, err = net.Listen("tcp", ":0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(strings.Repeat("aggregate ", 4000)))
	})}
	go srv.Serve(l)
	defer srv.Close()
	port := l.Addr().(*net.TCPAddr).Port
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, nw, addr string) (c net.Conn, err error) {
			err = inNetNS(n.a, func() error { c, err = (&net.Dialer{}).DialContext(ctx, nw, addr); return err })
			return c, err
		}}}
	for _, fam := range []struct{ name, client, server, srcKey string }{
		{"ipv4", "10.14.0.1", "10.14.0.2", "sourceIPv4Address"},
		{"ipv6", "fd14::1", "fd14::2", "sourceIPv6Address"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			// tcpdump on B's veth0 counts the connection's packets.
			pcap := filepath.Join(t.TempDir(), "b.pcap")
			filter := fmt.Sprintf("tcp port %d and host %s", port, fam.client)
			dump := exec.Command("ip", "netns", "exec", n.b, "tcpdump", "-Z", "root", "--immediate-mode", "-i", "veth0", "-nn", "-U", "-w", pcap, filter)
			stderr, _ := dump.StderrPipe()
			if err := dump.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { dump.Process.Kill(); dump.Wait() }()
			sc := bufio.NewScanner(stderr)
			for sc.Scan() && !strings.Contains(sc.Text(), "listening on") {
			}
			go io.Copy(io.Discard, stderr)
			resp, err := client.Get("http://" + net.JoinHostPort(fam.server, strconv.Itoa(port)) + "/")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			time.Sleep(300 * time.Millisecond)
			dump.Process.Signal(os.Interrupt)
			dump.Wait()
			fwdP, fwdB, revP, revB := countPcapIP(t, pcap, netip.MustParseAddr(fam.client))
			if fwdP == 0 || revP == 0 {
				t.Fatalf("tcpdump saw %d/%d packets", fwdP, revP)
			}
			tcpdump := [4]uint64{fwdP, fwdB, revP, revB}
			// Each Node's conntrack entry (in TIME_WAIT for two minutes)
			// counts the same packets.
			for _, ns := range []string{n.a, n.b} {
				out := run(t, "ip", "netns", "exec", ns, "conntrack", "-L", "-p", "tcp", "-s", fam.client, "--dport", strconv.Itoa(port), "-o", "extended")
				m := regexp.MustCompile(`packets=(\d+) bytes=(\d+)`).FindAllStringSubmatch(out, -1)
				if len(m) != 2 {
					t.Fatalf("conntrack -L in %s: no counters in %q", ns, out)
				}
				u := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
				if got := [4]uint64{u(m[0][1]), u(m[0][2]), u(m[1][1]), u(m[1][2])}; got != tcpdump {
					t.Errorf("conntrack -L in %s: %v, tcpdump %v", ns, got, tcpdump)
				}
			}
			checkAggregated(t, out, fam.srcKey, fam.client, port, corrTimeout, tcpdump)
		})
	}
}

// checkAggregated waits for the connection's end-of-flow record, then one
// correlation timeout more (so a half that came alone would show), and
// checks it is one correlated record with both sides' fields and counters
// equal to tcpdump's (fwd packets, fwd bytes, reverse packets, bytes).
func checkAggregated(t *testing.T, out, srcKey, src string, port int, corrTimeout time.Duration, tcpdump [4]uint64) {
	t.Helper()
	conn := func() (recs []map[string]any, ended bool) {
		for _, line := range jsonlLinesIfAny(out) {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) != nil {
				continue
			}
			if num(r["destinationTransportPort"]) == float64(port) && r[srcKey] == src {
				recs = append(recs, r)
				ended = ended || num(r["flowEndReason"]) == 3
			}
		}
		return recs, ended
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, ended := conn(); !ended; _, ended = conn() {
		if time.Now().After(deadline) {
			recs, _ := conn()
			t.Fatalf("no end-of-flow record of the HTTP connection: %v", recs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(corrTimeout + time.Second)
	recs, _ := conn()
	if len(recs) != 1 {
		t.Fatalf("%d records of the connection, want 1 correlated record: %v", len(recs), recs)
	}
	r := recs[0]
	t.Logf("aggregated record: %v", r)
	for k, want := range map[string]any{
		"sourcePodName": "client", "sourcePodNamespace": "w14", "sourceNodeName": "node-a",
		"destinationPodName": "server", "destinationPodNamespace": "w14", "destinationNodeName": "node-b",
		"sourcePodLabels": `{"app":"client"}`, "destinationPodLabels": `{"app":"server"}`,
		"flowType": float64(2), "flowEndReason": float64(3),
		"originalFlowsPresent": float64(2),
	} {
		if r[k] != want {
			t.Errorf("%s = %v, want %v", k, r[k], want)
		}
	}
	for _, k := range []string{"flowEndSecondsFromSourceNode", "flowEndSecondsFromDestinationNode"} {
		if v, ok := r[k].(string); !ok || !strings.HasPrefix(v, time.Now().UTC().Format("2006-")) {
			t.Errorf("%s = %v, want this run's time", k, r[k])
		}
	}
	for i, name := range []string{"packet", "octet", "reversePacket", "reverseOctet"} {
		for _, k := range []string{name + "TotalCount", name + "DeltaCount",
			name + "TotalCountFromSourceNode", name + "DeltaCountFromSourceNode",
			name + "TotalCountFromDestinationNode", name + "DeltaCountFromDestinationNode"} {
			if got := uint64(num(r[k])); got != tcpdump[i] {
				t.Errorf("%s = %d, tcpdump %d", k, got, tcpdump[i])
			}
		}
	}
}

// countPcapIP counts packets and IP bytes (IPv4 total length, IPv6 payload
// length + 40, as conntrack counts them) from src and to it.
func countPcapIP(t *testing.T, file string, src netip.Addr) (fwdP, fwdB, revP, revB uint64) {
	t.Helper()
	f, err := os.Open(file)
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
			break
		}
		if len(data) < 14 {
			continue
		}
		ip := data[14:]
		var from netip.Addr
		var length uint64
		switch layers.EthernetType(uint16(data[12])<<8 | uint16(data[13])) {
		case layers.EthernetTypeIPv4:
			if len(ip) < 20 {
				continue
			}
			from, length = netip.AddrFrom4([4]byte(ip[12:16])), uint64(ip[2])<<8|uint64(ip[3])
		case layers.EthernetTypeIPv6:
			if len(ip) < 40 {
				continue
			}
			from, length = netip.AddrFrom16([16]byte(ip[8:24])), 40+(uint64(ip[4])<<8|uint64(ip[5]))
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
