package podlabels

import (
	"net/netip"
	"testing"
	"time"
)

// fakeClock is a settable clock for the store.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestStore(grace time.Duration) (*store, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)}
	s := newStore(grace)
	s.now = clk.now
	return s, clk
}

func pod(name, node string, created time.Time, ips ...string) *podInfo {
	p := &podInfo{endpoint: endpoint{podName: name, podNamespace: "default", nodeName: node}, created: created}
	for _, ip := range ips {
		p.ips = append(p.ips, netip.MustParseAddr(ip))
	}
	return p
}

// resolve returns the pod name an address resolves to, and whether the
// entry is stale ("" when it misses).
func resolveName(s *store, ip string) (string, bool) {
	ep := s.load().ips.get(netip.MustParseAddr(ip))
	if ep == nil {
		return "", false
	}
	if ep.podName == "" {
		return "node:" + ep.nodeName, ep.stale
	}
	return ep.podName, ep.stale
}

func TestStoreGraceAndReuse(t *testing.T) {
	s, clk := newTestStore(30 * time.Second)
	t0 := clk.t
	s.upsertPod("uid-a", pod("a", "n1", t0, "10.244.0.5"))
	s.rebuild()
	if name, stale := resolveName(s, "10.244.0.5"); name != "a" || stale {
		t.Fatalf("live pod: got %q stale=%v", name, stale)
	}

	// Deleted: still resolves, as stale, within the grace period.
	s.deletePod("uid-a")
	s.rebuild()
	if name, stale := resolveName(s, "10.244.0.5"); name != "a" || !stale {
		t.Fatalf("deleted pod within grace: got %q stale=%v", name, stale)
	}
	clk.advance(29 * time.Second)
	if next := s.rebuild(); !next.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("next expiry %v, want %v", next, t0.Add(30*time.Second))
	}
	if name, _ := resolveName(s, "10.244.0.5"); name != "a" {
		t.Fatalf("deleted pod at 29s: got %q", name)
	}

	// A new Pod with the same address wins at once.
	s.upsertPod("uid-b", pod("b", "n2", clk.t, "10.244.0.5"))
	s.rebuild()
	if name, stale := resolveName(s, "10.244.0.5"); name != "b" || stale {
		t.Fatalf("reused address: got %q stale=%v", name, stale)
	}
	// And the tombstone is gone: deleting b leaves b's, not a's, tombstone.
	s.deletePod("uid-b")
	s.rebuild()
	if name, stale := resolveName(s, "10.244.0.5"); name != "b" || !stale {
		t.Fatalf("after deleting b: got %q stale=%v", name, stale)
	}
	clk.advance(30 * time.Second)
	if next := s.rebuild(); !next.IsZero() {
		t.Errorf("next expiry %v after all expired", next)
	}
	if name, _ := resolveName(s, "10.244.0.5"); name != "" {
		t.Fatalf("after grace: got %q, want a miss", name)
	}
}

func TestStoreNoGrace(t *testing.T) {
	s, _ := newTestStore(0)
	s.upsertPod("uid-a", pod("a", "n1", time.Time{}, "10.244.0.5"))
	s.rebuild()
	s.deletePod("uid-a")
	s.rebuild()
	if name, _ := resolveName(s, "10.244.0.5"); name != "" {
		t.Fatalf("grace 0: got %q, want a miss", name)
	}
}

func TestStorePrecedence(t *testing.T) {
	s, clk := newTestStore(time.Minute)
	old := pod("old", "n1", clk.t, "10.244.0.7")
	done := pod("done", "n1", clk.t.Add(time.Minute), "10.244.0.7")
	done.terminal = true
	newer := pod("newer", "n1", clk.t.Add(2*time.Minute), "10.244.0.8")
	newest := pod("newest", "n1", clk.t.Add(3*time.Minute), "10.244.0.8")
	for k, p := range map[string]*podInfo{"1": old, "2": done, "3": newer, "4": newest} {
		s.upsertPod(k, p)
	}
	s.upsertNode("n1", []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("10.244.0.8")})
	s.rebuild()
	tests := []struct {
		ip, want string
		stale    bool
	}{
		{"10.244.0.7", "old", false},       // a running Pod beats a newer terminated one
		{"10.244.0.8", "newest", false},    // among running Pods the newest wins, and Pods beat Nodes
		{"192.168.1.10", "node:n1", false}, // Node addresses
		{"::ffff:192.168.1.10", "node:n1", false},
	}
	for _, tc := range tests {
		if name, stale := resolveName(s, tc.ip); name != tc.want || stale != tc.stale {
			t.Errorf("%s: got %q stale=%v, want %q stale=%v", tc.ip, name, stale, tc.want, tc.stale)
		}
	}
	// The terminated Pod shows when it is alone, as stale.
	s.deletePod("1")
	s.rebuild()
	if name, stale := resolveName(s, "10.244.0.7"); name != "done" || !stale {
		t.Errorf("terminated pod alone: got %q stale=%v", name, stale)
	}
}

func TestStoreReplaceTombstonesVanishedPods(t *testing.T) {
	s, _ := newTestStore(time.Minute)
	s.replace(map[string]*podInfo{"a": pod("a", "n1", time.Time{}, "10.244.0.5")}, nil, nil)
	s.rebuild()
	s.replace(map[string]*podInfo{"b": pod("b", "n1", time.Time{}, "10.244.0.6")}, nil, nil)
	s.rebuild()
	if name, stale := resolveName(s, "10.244.0.5"); name != "a" || !stale {
		t.Errorf("vanished pod: got %q stale=%v", name, stale)
	}
	if name, stale := resolveName(s, "10.244.0.6"); name != "b" || stale {
		t.Errorf("new pod: got %q stale=%v", name, stale)
	}
}

func TestStoreUnchangedPodSkipsRebuild(t *testing.T) {
	s, clk := newTestStore(time.Minute)
	s.upsertPod("a", pod("a", "n1", clk.t, "10.244.0.5"))
	s.rebuild()
	before := s.load()
	s.upsertPod("a", pod("a", "n1", clk.t, "10.244.0.5"))
	s.rebuild()
	if s.load() != before {
		t.Error("an identical update published a new snapshot")
	}
}
