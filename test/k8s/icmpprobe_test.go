package k8s_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/source/icmpprobe"
)

// TestICMPProbeNodes runs source.icmpprobe with Node discovery against the
// API server: Nodes created (InternalIP, dual-stack) become probed targets
// labelled by Node name, this Node is not probed, a Node created later is
// probed (also by its Pod CIDR gateway), and a deleted Node's target goes
// away. The source runs in a network namespace
// of its own holding only loopback, and the Nodes' addresses are loopback
// addresses (127.0.0.0/8, ::1), so probes reach nothing outside it; other
// tests' Nodes are unroutable there (their probes fail locally).
func TestICMPProbeNodes(t *testing.T) {
	c := newCluster(t)
	ns := newNetns(t)
	prefix := c.node // unique per run
	nodeA, nodeB, nodeC := prefix+"-a", prefix+"-b", prefix+"-c"
	createNode := func(name string, podCIDRs []string, addrs ...string) {
		t.Helper()
		ctx := context.Background()
		n, err := c.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		if _, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createNode(c.node, nil, "127.0.0.9") // this Node: not probed
	createNode(nodeA, nil, "127.0.0.2")
	createNode(nodeB, nil, "127.0.0.3", "::1")

	cfg := icmpprobe.DefaultConfig()
	cfg.Kubernetes = icmpprobe.Kubernetes{Enabled: true, Kubeconfig: kubeconfig, NodeName: c.node, Address: icmpprobe.AddressInternalIP}
	cfg.Interval, cfg.Timeout, cfg.ReportInterval = 100e6, 500e6, 300e6
	set := plugin.NopSettings(icmpprobe.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	em := plugintest.NewEmitter(1024)
	var s *icmpprobe.Source
	var err error
	inNetns(t, ns, func() {
		// The sockets are made here, in ns; the informer's connections
		// come from other goroutines, on threads in the host's namespace.
		if s, err = icmpprobe.New(cfg, set); err == nil {
			err = s.Start(context.Background(), em)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	answered := func(node, addr string) bool {
		for _, st := range s.Stats() {
			if st.Target == node && st.Address.String() == addr && st.Received > 0 {
				return true
			}
		}
		return false
	}
	probed := func(node string) bool {
		for _, st := range s.Stats() {
			if st.Target == node {
				return true
			}
		}
		return false
	}
	eventually(t, "Nodes a and b answer", func() bool {
		return answered(nodeA, "127.0.0.2") && answered(nodeB, "127.0.0.3") && answered(nodeB, "::1")
	})
	if probed(c.node) {
		t.Errorf("this Node %s is probed: %+v", c.node, s.Stats())
	}

	// A Node created now is probed; one deleted is reported once more and
	// dropped.
	createNode(nodeC, []string{"127.0.7.0/24"}, "127.0.0.4")
	eventually(t, "Node c answers", func() bool { return answered(nodeC, "127.0.0.4") })

	// By PodCIDR gateway (Antrea's gw0 address): only Node c has a Pod
	// CIDR, and its first address is probed.
	gw := *cfg
	gw.Kubernetes.Address = icmpprobe.AddressPodCIDRGateway
	var s2 *icmpprobe.Source
	inNetns(t, ns, func() {
		if s2, err = icmpprobe.New(&gw, plugin.NopSettings(icmpprobe.ID)); err == nil {
			err = s2.Start(context.Background(), plugintest.NewEmitter(1024))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Node c's Pod CIDR gateway answers", func() bool {
		for _, st := range s2.Stats() {
			if st.Target == nodeC && st.Address.String() == "127.0.7.1" && st.Received > 0 {
				return true
			}
		}
		return false
	})
	for _, st := range s2.Stats() {
		if st.Target == nodeA || st.Target == nodeB {
			t.Errorf("Node without a Pod CIDR probed by PodCIDRGateway: %+v", st)
		}
	}
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	if err := c.client.CoreV1().Nodes().Delete(context.Background(), nodeA, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Node a is no longer probed", func() bool { return !probed(nodeA) })

	// Records name the Nodes; metrics are labelled by Node name.
	var sawA, sawC bool
	for _, r := range em.Sink.Records() {
		switch {
		case r.DestinationNodeName == nodeA && r.DestinationAddress.String() == "127.0.0.2" && r.ReversePacketDeltaCount > 0:
			sawA = true
		case r.DestinationNodeName == nodeC && r.DestinationAddress.String() == "127.0.0.4":
			sawC = true
		}
		if r.DestinationNodeName == c.node || (r.DestinationNodeName != "" && r.SourceNodeName != c.node) {
			t.Errorf("record %s → %s (%s)", r.SourceNodeName, r.DestinationNodeName, r.DestinationAddress)
		}
	}
	if !sawA || !sawC {
		t.Errorf("records with replies from Node a: %v, from Node c: %v", sawA, sawC)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, mf := range mfs {
		if mf.GetName() != "weir_source_icmpprobe_replies_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var l []string
			for _, lp := range m.GetLabel() {
				l = append(l, lp.GetName()+"="+lp.GetValue())
			}
			labels = append(labels, strings.Join(l, ","))
		}
	}
	got := strings.Join(labels, " ")
	for _, want := range []string{"family=ipv4,target=" + nodeB, "family=ipv6,target=" + nodeB, "family=ipv4,target=" + nodeC} {
		if !strings.Contains(got, want) {
			t.Errorf("weir_source_icmpprobe_replies_total lacks {%s}: %s", want, got)
		}
	}
	if strings.Contains(got, "target="+nodeA+" ") || strings.HasSuffix(got, "target="+nodeA) {
		t.Errorf("deleted Node a still has series: %s", got)
	}
}

// newNetns creates a network namespace w18k-PID-N with loopback up, deleted
// when t ends.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("w18k-%d-%d", os.Getpid(), netnsSeq)
	netnsSeq++
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s (the test needs root)", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v\n%s", name, err, out)
	}
	return name
}

var netnsSeq int

// inNetns runs fn on a thread switched into namespace ns; the thread dies
// with its goroutine if it cannot switch back.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
