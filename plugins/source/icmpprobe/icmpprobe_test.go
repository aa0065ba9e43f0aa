package icmpprobe_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/source/icmpprobe"
	"github.com/weir-flow/weir/plugins/source/internal/netnstest"
)

// probe runs a source in namespace ns for d and returns it (shut down) and
// its records.
func probe(t *testing.T, ns string, cfg *icmpprobe.Config, d time.Duration) (*icmpprobe.Source, []*flow.Record, *prometheus.Registry) {
	t.Helper()
	s, em, reg := start(t, ns, cfg)
	time.Sleep(d)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return s, em.Sink.Records(), reg
}

func start(t *testing.T, ns string, cfg *icmpprobe.Config) (*icmpprobe.Source, *plugintest.Emitter, *prometheus.Registry) {
	t.Helper()
	set := plugin.NopSettings(icmpprobe.ID)
	reg := prometheus.NewRegistry()
	set.Metrics = reg
	em := plugintest.NewEmitter(256)
	var s *icmpprobe.Source
	var err error
	netnstest.Do(t, ns, func() {
		if s, err = icmpprobe.New(cfg, set); err == nil {
			err = s.Start(context.Background(), em)
		}
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, em, reg
}

func fastConfig(targets ...string) *icmpprobe.Config {
	cfg := icmpprobe.DefaultConfig()
	cfg.Targets = targets
	cfg.Interval = 100 * time.Millisecond
	cfg.Timeout = 500 * time.Millisecond
	cfg.ReportInterval = 300 * time.Millisecond
	return cfg
}

// f64 reads a float64 extra IE.
func f64(r *flow.Record, k flow.IEKey) (float64, bool) {
	x := r.FindExtra(k)
	if x == nil {
		return 0, false
	}
	return math.Float64frombits(binary.BigEndian.Uint64(x.Value)), true
}

func u64(r *flow.Record, k flow.IEKey) uint64 {
	if x := r.FindExtra(k); x != nil {
		return binary.BigEndian.Uint64(x.Value)
	}
	return 0
}

// byTarget groups records by destination address.
func byTarget(recs []*flow.Record) map[string][]*flow.Record {
	m := map[string][]*flow.Record{}
	for _, r := range recs {
		m[r.DestinationAddress.String()] = append(m[r.DestinationAddress.String()], r)
	}
	return m
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

// TestLatencyAndLoss: a delay line adding 20 ms between two namespaces (10
// ms each way, so that neither direction depends on how fast a loaded
// machine wakes the forwarding goroutines up) shows as 20 ms RTTs over IPv4
// and IPv6; when the server goes away its probes are counted lost.
func TestLatencyAndLoss(t *testing.T) {
	a, mid, b := netnstest.New(t, "w18"), netnstest.New(t, "w18"), netnstest.New(t, "w18")
	netnstest.Veth(t, a, "a0", []string{"10.18.1.1/24", "fd18:1::1/64"}, mid, "m1", nil)
	netnstest.Veth(t, b, "b0", []string{"10.18.1.2/24", "fd18:1::2/64"}, mid, "m2", nil)
	netnstest.Exec(t, a, "ethtool", "-K", "a0", "tx", "off")
	netnstest.Exec(t, b, "ethtool", "-K", "b0", "tx", "off")
	netnstest.DelayLine(t, mid, "m1", "m2", 10*time.Millisecond, 10*time.Millisecond)

	// Metrics are labelled by the target's name, never its address.
	cfg := fastConfig("fd18:1::2")
	cfg.NamedTargets = map[string]string{"node-b": "10.18.1.2"}
	s, em, reg := start(t, a, cfg)
	time.Sleep(4 * time.Second)
	recs := em.Sink.Records()
	for _, target := range []string{"10.18.1.2", "fd18:1::2"} {
		var last []float64
		for _, r := range byTarget(recs)[target] {
			if v, ok := f64(r, icmpprobe.IELastRTT); ok && r.ReversePacketDeltaCount > 0 {
				last = append(last, v)
			}
			if lo, ok := f64(r, icmpprobe.IEMinimumRTT); ok && lo < 20 {
				t.Errorf("%s: minimum RTT %.2f ms is below the 20 ms delay", target, lo)
			}
		}
		if len(last) < 5 {
			t.Fatalf("%s: %d records with replies, want at least 5", target, len(last))
		}
		m := median(last)
		t.Logf("%s: median RTT %.2f ms over %d windows", target, m, len(last))
		if math.Abs(m-20) > 3 {
			t.Errorf("%s: median RTT %.2f ms, want 20 ± 3 ms", target, m)
		}
	}
	// One sample: at least the delay, and plausible.
	if got := gauge(t, reg, "weir_source_icmpprobe_rtt_last_seconds", "node-b", "ipv4"); got < 0.020 || got > 0.2 {
		t.Errorf("weir_source_icmpprobe_rtt_last_seconds = %v, want 0.020 and a little more", got)
	}

	// No label value is an address.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if _, err := netip.ParseAddr(l.GetValue()); err == nil {
					t.Errorf("%s has label %s=%s, an address", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}

	// The peer goes away: its probes are lost.
	netnstest.Exec(t, b, "ip", "link", "set", "b0", "down")
	before := stats(s, "10.18.1.2")
	time.Sleep(2 * time.Second)
	after := stats(s, "10.18.1.2")
	if after.Lost-before.Lost < 5 || after.Received-before.Received > 1 {
		t.Errorf("after the peer went down: %d more lost, %d more received; want ≥5 lost, none received", after.Lost-before.Lost, after.Received-before.Received)
	}
	n := len(em.Sink.Records())
	time.Sleep(cfg.ReportInterval * 2)
	var lossy bool
	for _, r := range byTarget(em.Sink.Records()[n:])["10.18.1.2"] {
		if u64(r, icmpprobe.IELost) > 0 && r.ReversePacketDeltaCount == 0 && r.FindExtra(icmpprobe.IELastReply) != nil {
			lossy = true
		}
	}
	if !lossy {
		t.Error("no record with lost requests, no replies and the last-seen time")
	}
	if got := gauge(t, reg, "weir_source_icmpprobe_rtt_last_seconds", "targets[0]", "ipv6"); got < 0.020 || got > 0.2 {
		t.Errorf("weir_source_icmpprobe_rtt_last_seconds{targets[0]} = %v, want 0.020 and a little more", got)
	}
	if got := gauge(t, reg, "weir_source_icmpprobe_loss_ratio", "node-b", "ipv4"); got != 1 {
		t.Errorf("weir_source_icmpprobe_loss_ratio = %v, want 1", got)
	}
}

// stats returns the statistics of the target with address addr.
func stats(s *icmpprobe.Source, addr string) icmpprobe.Stats {
	for _, st := range s.Stats() {
		if st.Address.String() == addr {
			return st
		}
	}
	return icmpprobe.Stats{}
}

// gauge returns the value of metric name{target, family}.
func gauge(t *testing.T, reg *prometheus.Registry, name, target, family string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name, "target", target, "family", family)
}

// TestUnprivilegedSockets: with net.ipv4.ping_group_range covering the
// group, ICMP datagram sockets probe (the kernel picks the echo ID); with
// an empty range the error names the sysctl.
func TestUnprivilegedSockets(t *testing.T) {
	a, b := netnstest.New(t, "w18"), netnstest.New(t, "w18")
	netnstest.Veth(t, a, "a0", []string{"10.18.2.1/24", "fd18:2::1/64"}, b, "b0", []string{"10.18.2.2/24", "fd18:2::2/64"})

	netnstest.Exec(t, a, "sysctl", "-qw", "net.ipv4.ping_group_range=1 0")
	cfg := fastConfig("10.18.2.2")
	cfg.Socket = icmpprobe.SocketUnprivileged
	var err error
	netnstest.Do(t, a, func() {
		var s *icmpprobe.Source
		if s, err = icmpprobe.New(cfg, plugin.NopSettings(icmpprobe.ID)); err == nil {
			err = s.Start(context.Background(), plugintest.NewEmitter(16))
			s.Shutdown(context.Background())
		}
	})
	if !errors.Is(err, icmpprobe.ErrNoPermission) || !strings.Contains(err.Error(), "net.ipv4.ping_group_range") {
		t.Errorf("error %v, want ErrNoPermission naming net.ipv4.ping_group_range", err)
	}

	netnstest.Exec(t, a, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	cfg = fastConfig("10.18.2.2", "fd18:2::2")
	cfg.Socket = icmpprobe.SocketUnprivileged
	s, _, _ := probe(t, a, cfg, time.Second)
	for _, target := range cfg.Targets {
		if st := stats(s, target); st.Received < 5 || st.Lost > 1 {
			t.Errorf("%s over unprivileged sockets: %+v", target, st)
		}
	}
}

// TestFirewall: in a namespace whose INPUT policy is drop (IPv4 and IPv6),
// probes fail; with firewall.manage on p0 they pass on p0 and still fail on
// another interface; after shutdown the ruleset is as before. For each
// backend: nftables (with a native nftables drop chain too), iptables
// through iptables-nft, and legacy x_tables iptables.
func TestFirewall(t *testing.T) {
	backends := []struct {
		name, backend, iptables string
		save                    []string // commands listing the ruleset
	}{
		{"nftables", icmpprobe.BackendNFTables, "iptables", []string{"nft list ruleset"}},
		{"iptables-nft", icmpprobe.BackendIPTables, "iptables", []string{"iptables -S", "ip6tables -S", "nft list ruleset"}},
		{"iptables-legacy", icmpprobe.BackendIPTables, "iptables-legacy", []string{"iptables-legacy -S", "ip6tables-legacy -S", "nft list ruleset"}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			p, q, r := netnstest.New(t, "w18"), netnstest.New(t, "w18"), netnstest.New(t, "w18")
			netnstest.Veth(t, p, "p0", []string{"10.18.3.1/24", "fd18:3::1/64"}, q, "q0", []string{"10.18.3.2/24", "fd18:3::2/64"})
			netnstest.Veth(t, p, "p1", []string{"10.18.4.1/24"}, r, "r0", []string{"10.18.4.2/24"})
			if _, err := exec.LookPath(b.iptables); err != nil {
				t.Fatalf("%s is needed (scripts/install-deps.sh installs iptables)", b.iptables)
			}
			netnstest.Exec(t, p, b.iptables, "-P", "INPUT", "DROP")
			netnstest.Exec(t, p, strings.Replace(b.iptables, "iptables", "ip6tables", 1), "-P", "INPUT", "DROP")
			if b.backend == icmpprobe.BackendNFTables {
				// A native nftables chain with a drop policy too.
				netnstest.Exec(t, p, "nft", "add table inet w18fw")
				netnstest.Exec(t, p, "nft", "add chain inet w18fw in { type filter hook input priority 10 ; policy drop ; }")
			}
			ruleset := func() string {
				var out string
				for _, c := range b.save {
					out += netnstest.Exec(t, p, strings.Fields(c)...)
				}
				return out
			}
			before := ruleset()

			targets := []string{"10.18.3.2", "fd18:3::2", "10.18.4.2"}
			s, _, _ := probe(t, p, fastConfig(targets...), 1500*time.Millisecond)
			for _, target := range targets {
				if st := stats(s, target); st.Received != 0 || st.Lost < 3 {
					t.Errorf("without managed rules %s: %+v, want every probe lost", target, st)
				}
			}

			cfg := fastConfig(targets...)
			cfg.Firewall = icmpprobe.Firewall{Manage: true, Interface: "p0", Backend: b.backend, IPTablesPath: b.iptables}
			s, _, _ = start(t, p, cfg)
			during := ruleset()
			time.Sleep(1500 * time.Millisecond)
			for _, target := range targets[:2] {
				if st := stats(s, target); st.Received < 5 {
					t.Errorf("with managed rules %s: %+v, want replies", target, st)
				}
			}
			if st := stats(s, "10.18.4.2"); st.Received != 0 {
				t.Errorf("p1 is not managed, yet %s answered: %+v", "10.18.4.2", st)
			}
			if !strings.Contains(during, `"p0"`) && !strings.Contains(during, "-i p0") || strings.Count(during, icmpprobe.RuleTag+" p0") < 2 || strings.Contains(during, `"p1"`) || strings.Contains(during, " p1 ") {
				t.Errorf("ruleset while probing:\n%s", during)
			}
			if err := s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if after := ruleset(); after != before {
				t.Errorf("ruleset after shutdown:\n%s\nwant as before:\n%s", after, before)
			}
		})
	}
}
