package icmpprobe

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/weir-flow/weir/plugins/source/internal/netnstest"
)

func node(name, podCIDR string, addrs ...corev1.NodeAddress) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.Addresses = addrs
	if podCIDR != "" {
		n.Spec.PodCIDRs = strings.Split(podCIDR, ",")
	}
	return n
}

// TestNodeTargets: every Node but this one, by the configured address kind,
// following additions and deletions.
func TestNodeTargets(t *testing.T) {
	client := fake.NewSimpleClientset(
		node("node-a", "10.10.0.0/24", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.168.0.1"}),
		node("node-b", "10.10.1.0/24,fd00:10:1::/64",
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.168.0.2"},
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "fd00::2"},
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.2"},
			corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-b"}),
	)
	cases := []struct {
		kind string
		want []string
	}{
		{AddressInternalIP, []string{"node-b 192.168.0.2", "node-b fd00::2"}},
		{AddressExternalIP, []string{"node-b 203.0.113.2"}},
		{AddressPodCIDRGateway, []string{"node-b 10.10.1.1", "node-b fd00:10:1::1"}},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			w := newNodeWatcherForClient(Kubernetes{NodeName: "node-a", Address: c.kind}, client, slog.New(slog.DiscardHandler))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := w.start(ctx); err != nil {
				t.Fatal(err)
			}
			defer w.stop()
			var got []string
			for _, nt := range w.targets() {
				got = append(got, nt.name+" "+nt.addr.String())
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("targets %v, want %v", got, c.want)
			}
		})
	}

	// A new Node is probed, a deleted one reported once more and dropped.
	s := &Source{cfg: *DefaultConfig(), targets: map[string]*target{}, log: slog.New(slog.DiscardHandler)}
	s.cfg.Kubernetes = Kubernetes{Enabled: true, NodeName: "node-a", Address: AddressInternalIP}
	s.nodes = newNodeWatcherForClient(s.cfg.Kubernetes, client, s.log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.nodes.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.nodes.stop()
	s.refreshTargets()
	if len(s.targets) != 2 || s.targets["node-b"].addr != netip.MustParseAddr("192.168.0.2") || s.targets["node-b/ipv6"] == nil {
		t.Fatalf("targets %v", s.targets)
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node("node-c", "", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.168.0.3"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Nodes().Delete(ctx, "node-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.refreshTargets()
		if s.targets["node-c"] != nil && s.targets["node-b"].removed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets did not follow the Nodes: %v", s.targets)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFirewallCrashCleanup: rules left by a run that did not shut down are
// replaced, not doubled, at the next install, and removal restores the
// ruleset.
func TestFirewallCrashCleanup(t *testing.T) {
	ns := netnstest.New(t, "w18")
	netnstest.Exec(t, ns, "ip", "link", "add", "g0", "type", "veth", "peer", "name", "g1")
	netnstest.Exec(t, ns, "nft", "add table inet w18fw")
	netnstest.Exec(t, ns, "nft", "add chain inet w18fw in { type filter hook input priority 0 ; policy drop ; }")
	netnstest.Exec(t, ns, "nft", "add chain inet w18fw out { type filter hook output priority 0 ; policy accept ; }")
	netnstest.Exec(t, ns, "nft", "add rule inet w18fw in ct state established accept")
	before := netnstest.Exec(t, ns, "nft", "list", "ruleset")

	var fw1, fw2 *firewall
	var err error
	netnstest.Do(t, ns, func() {
		if fw1, err = newFirewall("g0", slog.New(slog.DiscardHandler)); err == nil {
			err = fw1.install() // then "crash": no remove
		}
		if err == nil {
			fw2, err = newFirewall("g0", slog.New(slog.DiscardHandler))
		}
		if err == nil {
			err = fw2.install()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fw1.close()
	defer fw2.close()
	during := netnstest.Exec(t, ns, "nft", "list", "ruleset")
	// inet chains get the IPv4 rule and three IPv6 rules each.
	if n := strings.Count(during, RuleTag+" g0"); n != 8 {
		t.Errorf("%d tagged rules after two installs, want 8 (one set):\n%s", n, during)
	}
	if !strings.Contains(during, `iifname "g0" icmp type echo-reply accept comment "weir-icmpprobe g0"`) ||
		!strings.Contains(during, `oifname "g0" icmpv6 type echo-request accept comment "weir-icmpprobe g0"`) ||
		!strings.Contains(during, `iifname "g0" icmpv6 type nd-neighbor-solicit accept comment "weir-icmpprobe g0"`) {
		t.Errorf("ruleset lacks the expected rules:\n%s", during)
	}
	// The existing rule stays after ours.
	if strings.Index(during, "ct state established accept") < strings.Index(during, "echo-reply") {
		t.Errorf("managed rules are not first:\n%s", during)
	}
	netnstest.Do(t, ns, func() { err = fw2.remove() })
	if err != nil {
		t.Fatal(err)
	}
	if after := netnstest.Exec(t, ns, "nft", "list", "ruleset"); after != before {
		t.Errorf("ruleset after removal:\n%s\nwant:\n%s", after, before)
	}
}
