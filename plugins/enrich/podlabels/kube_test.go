package podlabels

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

func testPod(name, uid, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(uid), Labels: labels,
			CreationTimestamp: metav1.Now(), ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "test"}}},
		Spec:   corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// The informer backend against client-go's fake clientset; test/k8s runs
// the same flow against a real API server.
func TestKubeBackendFake(t *testing.T) {
	client := fake.NewClientset(
		testPod("web-1", "uid-1", "10.244.0.5", map[string]string{"app": "web"}),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}},
	)
	cfg := DefaultConfig()
	cfg.GracePeriod = 300 * time.Millisecond
	set := plugin.NopSettings(ID)
	e, err := newEnricher(cfg, set, func(e *Enricher, enc *labelEncoder) (backend, error) {
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

	process := func(src, dst string, dport uint16) *flow.Record {
		b := flow.NewBatch(1)
		r := b.Append()
		r.SetAddr(flow.SourceAddress, netip.MustParseAddr(src))
		r.SetAddr(flow.DestinationAddress, netip.MustParseAddr(dst))
		r.SetUint(flow.ProtocolIdentifier, 6)
		r.SetUint(flow.DestinationTransportPort, uint64(dport))
		if err := e.Process(ctx, b); err != nil {
			t.Fatal(err)
		}
		return b.Records[0]
	}
	// Synced before Start returned: the first record is enriched.
	r := process("10.244.0.5", "10.96.0.20", 80)
	if r.SourcePodName != "web-1" || r.SourcePodNamespace != "shop" || r.SourceNodeName != "node-a" ||
		r.SourcePodLabels != `{"app":"web"}` || r.DestinationServicePortName != "shop/web:http" {
		t.Fatalf("after sync: %+v", r)
	}
	if r := process("192.168.1.10", "10.244.0.5", 80); r.SourceNodeName != "node-a" || r.DestinationPodName != "web-1" {
		t.Fatalf("node: %+v", r)
	}

	// Delete the Pod: it still resolves, as stale, for the grace period.
	pods := client.CoreV1().Pods("shop")
	if err := pods.Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		ep := e.store.load().ips.get(netip.MustParseAddr("10.244.0.5"))
		return ep != nil && ep.stale
	})
	if r := process("10.244.0.5", "198.51.100.1", 80); r.SourcePodName != "web-1" {
		t.Fatalf("deleted pod within grace: %q", r.SourcePodName)
	}
	// A new Pod with the same address wins at once.
	if _, err := pods.Create(ctx, testPod("web-2", "uid-2", "10.244.0.5", map[string]string{"app": "web", "v": "2"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return process("10.244.0.5", "198.51.100.1", 80).SourcePodName == "web-2" })
	if r := process("10.244.0.5", "198.51.100.1", 80); r.SourcePodLabels != `{"app":"web","v":"2"}` {
		t.Fatalf("new pod labels: %q", r.SourcePodLabels)
	}

	// A label update is picked up.
	p, err := pods.Get(ctx, "web-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["v"] = "3"
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return process("10.244.0.5", "198.51.100.1", 80).SourcePodLabels == `{"app":"web","v":"3"}`
	})

	// Service and Node deletions.
	if err := client.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Nodes().Delete(ctx, "node-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		r := process("192.168.1.10", "10.96.0.20", 80)
		return r.SourceNodeName == "" && r.DestinationServicePortName == ""
	})

	// After the grace period a deleted Pod's address misses.
	if err := pods.Delete(ctx, "web-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return process("10.244.0.5", "198.51.100.1", 80).SourcePodName == "" })
}

// The informer caches hold stripped objects.
func TestStrip(t *testing.T) {
	p := testPod("web-1", "uid-1", "10.244.0.5", map[string]string{"app": "web"})
	p.Annotations = map[string]string{"big": "annotation"}
	out, err := strip(p)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*corev1.Pod)
	if s.Annotations != nil || s.ManagedFields != nil || len(s.Spec.Containers) != 0 {
		t.Errorf("not stripped: %+v", s)
	}
	if s.Name != "web-1" || s.UID != "uid-1" || s.Labels["app"] != "web" || s.Status.PodIP != "10.244.0.5" || s.Spec.NodeName != "node-a" {
		t.Errorf("stripped too much: %+v", s)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unreachableKubeconfig writes a kubeconfig for an API server that refuses
// connections (a closed loopback port).
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	err := os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubeUnreachable(t *testing.T) {
	t.Run("sync timeout: Start goes on", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Kubeconfig = unreachableKubeconfig(t)
		cfg.SyncTimeout = 200 * time.Millisecond
		e, err := New(cfg, plugin.NopSettings(ID))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		b := flow.NewBatch(1)
		b.Append().SetAddr(flow.SourceAddress, netip.MustParseAddr("10.244.0.5"))
		if err := e.Process(context.Background(), b); err != nil || b.Len() != 1 {
			t.Fatalf("Process: %v, %d records", err, b.Len())
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cancelled Start", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Kubeconfig = unreachableKubeconfig(t)
		cfg.SyncTimeout = time.Hour
		e, err := New(cfg, plugin.NopSettings(ID))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := e.Start(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start: %v, want %v", err, context.DeadlineExceeded)
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
