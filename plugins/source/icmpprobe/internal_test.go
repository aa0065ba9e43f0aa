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
	s := &Source{cfg: *DefaultConfig(), targets: map[string]*target{}, clashed: map[string]bool{}, log: slog.New(slog.DiscardHandler)}
	// A named target called like a Node keeps its name; the Node is not
	// probed (their metric series would clash).
	s.static = []staticTarget{{label: "node-x", addr: netip.MustParseAddr("192.0.2.9")}}
	s.cfg.Kubernetes = Kubernetes{Enabled: true, NodeName: "node-a", Address: AddressInternalIP}
	s.nodes = newNodeWatcherForClient(s.cfg.Kubernetes, client, s.log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := client.CoreV1().Nodes().Create(ctx, node("node-x", "", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.168.0.9"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.nodes.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.nodes.stop()
	s.refreshTargets()
	if s.targets["node-x/ipv4"] != nil || !s.clashed["node-x"] || s.targets["192.0.2.9"].label != "node-x" {
		t.Errorf("Node node-x probed beside the named target node-x: %v", s.targets)
	}
	if len(s.targets) != 3 || s.targets["node-b/ipv4"].addr != netip.MustParseAddr("192.168.0.2") || s.targets["node-b/ipv6"] == nil {
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
		if s.targets["node-c/ipv4"] != nil && s.targets["node-b/ipv4"].removed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets did not follow the Nodes: %v", s.targets)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firewallBackends are the backends the firewall tests run: nftables over
// netlink, go-iptables with the machine's iptables (iptables-nft on Debian)
// and with legacy x_tables iptables.
var firewallBackends = []struct {
	name    string
	backend string
	path    string // iptables command
	// save lists the namespace's whole ruleset through the backend's eyes.
	save []string
}{
	{"nftables", BackendNFTables, "", []string{"nft list ruleset"}},
	{"iptables-nft", BackendIPTables, "iptables", []string{"iptables -S", "ip6tables -S", "nft list ruleset"}},
	{"iptables-legacy", BackendIPTables, "iptables-legacy", []string{"iptables-legacy -S", "ip6tables-legacy -S"}},
}

func ruleset(t *testing.T, ns string, save []string) string {
	t.Helper()
	var out string
	for _, c := range save {
		out += netnstest.Exec(t, ns, strings.Fields(c)...)
	}
	return out
}

// TestFirewallCrashCleanup: rules left by a run that did not shut down are
// replaced, not doubled, at the next install, go before the existing rules,
// and removal restores the ruleset; for every backend.
func TestFirewallCrashCleanup(t *testing.T) {
	for _, b := range firewallBackends {
		t.Run(b.name, func(t *testing.T) {
			ns := netnstest.New(t, "w18")
			netnstest.Exec(t, ns, "ip", "link", "add", "g0", "type", "veth", "peer", "name", "g1")
			if b.backend == BackendNFTables {
				netnstest.Exec(t, ns, "nft", "add table inet w18fw")
				netnstest.Exec(t, ns, "nft", "add chain inet w18fw in { type filter hook input priority 0 ; policy drop ; }")
				netnstest.Exec(t, ns, "nft", "add chain inet w18fw out { type filter hook output priority 0 ; policy accept ; }")
				netnstest.Exec(t, ns, "nft", "add rule inet w18fw in ct state established accept")
			} else {
				for _, c := range []string{b.path, ip6tablesPath(b.path)} {
					netnstest.Exec(t, ns, c, "-P", "INPUT", "DROP")
					netnstest.Exec(t, ns, c, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT")
					netnstest.Exec(t, ns, c, "-A", "OUTPUT", "-o", "g1", "-j", "ACCEPT")
				}
			}
			before := ruleset(t, ns, b.save)

			cfg := Firewall{Manage: true, Interface: "g0", Backend: b.backend, IPTablesPath: b.path}
			log := slog.New(slog.DiscardHandler)
			var fw1, fw2 firewall
			var err error
			netnstest.Do(t, ns, func() {
				if fw1, err = newFirewall(cfg, log); err == nil {
					err = fw1.install() // then "crash": no remove
				}
				if err == nil {
					fw2, err = newFirewall(cfg, log)
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
			during := ruleset(t, ns, b.save)
			// One IPv4 rule and three IPv6 rules per hook.
			if n := strings.Count(during, RuleTag+" g0"); n != 8 {
				t.Errorf("%d tagged rules after two installs, want 8 (one set):\n%s", n, during)
			}
			var want []string
			switch b.backend {
			case BackendIPTables:
				want = []string{
					`-A INPUT -i g0 -p icmp -m icmp --icmp-type 0 -m comment --comment "weir-icmpprobe g0" -j ACCEPT`,
					`-A OUTPUT -o g0 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -m comment --comment "weir-icmpprobe g0" -j ACCEPT`,
					`-A INPUT -i g0 -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m comment --comment "weir-icmpprobe g0" -j ACCEPT`,
				}
			default:
				want = []string{
					`iifname "g0" icmp type echo-reply`,
					`oifname "g0" icmpv6 type echo-request`,
					`iifname "g0" icmpv6 type nd-neighbor-solicit`,
					`comment "weir-icmpprobe g0"`,
				}
			}
			for _, w := range want {
				if !strings.Contains(during, w) {
					t.Errorf("ruleset lacks %s:\n%s", w, during)
				}
			}
			// The existing rule stays after ours.
			established := "ct state established accept"
			if b.backend == BackendIPTables {
				established = "--ctstate ESTABLISHED"
			}
			if strings.Index(during, established) < strings.Index(during, RuleTag) {
				t.Errorf("managed rules are not first:\n%s", during)
			}
			netnstest.Do(t, ns, func() { err = fw2.remove() })
			if err != nil {
				t.Fatal(err)
			}
			if after := ruleset(t, ns, b.save); after != before {
				t.Errorf("ruleset after removal:\n%s\nwant:\n%s", after, before)
			}
		})
	}
}

// TestDetectBackend: auto picks iptables for the legacy command and
// nftables for iptables-nft or no iptables at all.
func TestDetectBackend(t *testing.T) {
	for _, c := range []struct{ path, want string }{
		{"iptables-legacy", BackendIPTables},
		{"iptables-nft", BackendNFTables},
		{"/nonexistent/iptables", BackendNFTables},
	} {
		t.Run(c.path, func(t *testing.T) {
			if got := detectBackend(c.path); got != c.want {
				t.Errorf("detectBackend(%s) = %s, want %s", c.path, got, c.want)
			}
		})
	}
	if got := ip6tablesPath("/usr/sbin/iptables-legacy"); got != "/usr/sbin/ip6tables-legacy" {
		t.Errorf("ip6tablesPath = %s", got)
	}
}
