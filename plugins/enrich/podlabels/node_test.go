package podlabels

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
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

// TestKubeBackendNodeName: with node_name the cluster backend resolves
// only that Node's Pods (the fake clientset ignores the field selector the
// informer sends, so this checks the store's own filter; test/e2e's
// TestAntreaStackAggregateK8s runs it against a real API server).
func TestKubeBackendNodeName(t *testing.T) {
	other := testPod("db-1", "uid-2", "10.244.1.7", nil)
	other.Spec.NodeName = "node-b"
	client := fake.NewClientset(testPod("web-1", "uid-1", "10.244.0.5", nil), other)
	cfg := DefaultConfig()
	cfg.NodeName = "node-a"
	e, err := newEnricher(cfg, plugin.NopSettings(ID), func(e *Enricher, enc *labelEncoder) (backend, error) {
		return newKubeBackendForClient(client, 10*time.Second, enc, e.store, e.metrics, e.log), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.store.minInterval = 0
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(ctx)
	b := flow.NewBatch(1)
	r := b.Append()
	r.SetAddr(flow.SourceAddress, netip.MustParseAddr("10.244.0.5"))
	r.SetAddr(flow.DestinationAddress, netip.MustParseAddr("10.244.1.7"))
	r.SetUint(flow.ProtocolIdentifier, 6)
	if err := e.Process(ctx, b); err != nil {
		t.Fatal(err)
	}
	if r.SourcePodName != "web-1" || r.SourceNodeName != "node-a" || r.DestinationPodName != "" || r.DestinationNodeName != "" {
		t.Errorf("source %q on %q, destination %q on %q; want only node-a's Pod web-1",
			r.SourcePodName, r.SourceNodeName, r.DestinationPodName, r.DestinationNodeName)
	}
}
