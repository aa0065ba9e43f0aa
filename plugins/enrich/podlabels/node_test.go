package podlabels

import (
	"net/netip"
	"testing"
)

// TestStoreNodeName: with node_name set only that Node's Pods resolve,
// through either backend's path (watch upserts and file replaces); Node
// addresses still resolve cluster-wide.
func TestStoreNodeName(t *testing.T) {
	for _, tc := range []struct {
		name string
		load func(s *store)
	}{
		{"upsert", func(s *store) {
			s.upsertPod("uid-a", pod("a", "n1", s.now(), "10.244.1.5"))
			s.upsertPod("uid-b", pod("b", "n2", s.now(), "10.244.2.5"))
			s.upsertNode("n2", []netip.Addr{netip.MustParseAddr("192.0.2.2")})
		}},
		{"replace", func(s *store) {
			s.replace(map[string]*podInfo{
				"default/a": pod("a", "n1", s.now(), "10.244.1.5"),
				"default/b": pod("b", "n2", s.now(), "10.244.2.5"),
			}, map[string][]netip.Addr{"n2": {netip.MustParseAddr("192.0.2.2")}}, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestStore(0)
			s.node = "n1"
			tc.load(s)
			s.rebuild()
			if name, _ := resolveName(s, "10.244.1.5"); name != "a" {
				t.Errorf("local Pod: got %q, want a", name)
			}
			if name, _ := resolveName(s, "10.244.2.5"); name != "" {
				t.Errorf("Pod on another Node: got %q, want no match", name)
			}
			if name, _ := resolveName(s, "192.0.2.2"); name != "node:n2" {
				t.Errorf("Node address: got %q, want node:n2", name)
			}
		})
	}
}
