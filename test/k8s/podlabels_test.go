package k8s_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/plugins/enrich/podlabels"
)

// kubeconfig is the API server's kubeconfig, set by TestMain.
var kubeconfig string

func TestMain(m *testing.M) {
	if os.Getenv("WEIR_K8S_E2E") != "1" {
		os.Exit(m.Run()) // the tests skip, saying how to run them
	}
	kubeconfig = os.Getenv("WEIR_K8S_KUBECONFIG")
	stop := func() {}
	if kubeconfig == "" {
		dir, err := os.MkdirTemp("", "weir-k8s-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		start := time.Now()
		cmd := exec.Command("./run-apiserver.sh", "start", dir)
		cmd.Env = append(os.Environ(), "WEIR_K8S_WATCH_PID="+strconv.Itoa(os.Getpid()))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			fmt.Fprintf(os.Stderr, "run-apiserver.sh start: %v\n", err)
			os.Exit(1)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		kubeconfig = lines[len(lines)-1]
		fmt.Fprintf(os.Stderr, "k8s e2e: API server ready in %v (%s)\n", time.Since(start).Round(time.Millisecond), kubeconfig)
		stop = func() {
			if err := exec.Command("./run-apiserver.sh", "stop", dir).Run(); err != nil {
				fmt.Fprintf(os.Stderr, "run-apiserver.sh stop: %v\n", err)
			}
			if os.Getenv("WEIR_K8S_KEEP") == "" {
				_ = os.RemoveAll(dir)
			}
		}
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// cluster is a test's view of the API server: a client and the objects the
// test made, in a namespace of its own.
type cluster struct {
	t      *testing.T
	client kubernetes.Interface
	ns     string
	node   string
	// net is a random 10.x.y.0/24 for this run's Pod addresses, so that
	// repeated runs against one API server do not collide.
	net [3]byte
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv("WEIR_K8S_E2E") != "1" {
		t.Skip("needs a Kubernetes API server: run `make test-k8s` (sets WEIR_K8S_E2E=1)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	suffix := strconv.FormatUint(rand.Uint64()%1e8, 36)
	c := &cluster{t: t, client: client, ns: "weir-e2e-" + suffix, node: "weir-node-" + suffix,
		net: [3]byte{10, byte(200 + rand.IntN(50)), byte(rand.IntN(256))}}
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs: namespace deletion would not cascade, so
	// the test's objects are deleted one by one.
	t.Cleanup(func() {
		ctx := context.Background()
		zero := int64(0)
		_ = client.CoreV1().Pods(c.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		svcs, _ := client.CoreV1().Services(c.ns).List(ctx, metav1.ListOptions{})
		for _, s := range svcs.Items {
			_ = client.CoreV1().Services(c.ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
		}
		_ = client.CoreV1().Nodes().Delete(ctx, c.node, metav1.DeleteOptions{})
	})
	return c
}

func (c *cluster) ip(host byte) string {
	return netip.AddrFrom4([4]byte{c.net[0], c.net[1], c.net[2], host}).String()
}

// createNode creates the test's Node with an InternalIP, set through the
// status subresource as a kubelet would.
func (c *cluster) createNode(internalIP string) {
	c.t.Helper()
	ctx := context.Background()
	n, err := c.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: c.node}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internalIP}, {Type: corev1.NodeHostName, Address: c.node}}
	if _, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// createPod creates a running Pod on the test's Node with address ip, set
// through the status subresource as a kubelet would.
func (c *cluster) createPod(name, ip string, labels map[string]string) *corev1.Pod {
	c.t.Helper()
	ctx := context.Background()
	pods := c.client.CoreV1().Pods(c.ns)
	p, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   c.node,
			Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	p, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *cluster) deletePod(name string) {
	c.t.Helper()
	zero := int64(0) // no kubelet to confirm a graceful deletion
	if err := c.client.CoreV1().Pods(c.ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		c.t.Fatal(err)
	}
}

// createService creates a ClusterIP Service and returns the ClusterIP the
// API server allocated.
func (c *cluster) createService(name string, ports ...corev1.ServicePort) string {
	c.t.Helper()
	s, err := c.client.CoreV1().Services(c.ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: ports, Selector: map[string]string{"app": name}},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return s.Spec.ClusterIP
}

// kubectlList returns what `kubectl get pods,services,nodes -A -o yaml`
// prints for the test's objects (plus the built-in kubernetes Service): a
// v1 List whose items carry apiVersion and kind.
func (c *cluster) kubectlList() []byte {
	c.t.Helper()
	ctx := context.Background()
	list := &corev1.List{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
	add := func(obj runtime.Object, kind string) {
		obj.GetObjectKind().SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
		raw, err := json.Marshal(obj)
		if err != nil {
			c.t.Fatal(err)
		}
		list.Items = append(list.Items, runtime.RawExtension{Raw: raw})
	}
	pods, err := c.client.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	for i := range pods.Items {
		add(&pods.Items[i], "Pod")
	}
	for _, ns := range []string{c.ns, "default"} {
		svcs, err := c.client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		for i := range svcs.Items {
			add(&svcs.Items[i], "Service")
		}
	}
	node, err := c.client.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	add(node, "Node")
	out, err := yaml.Marshal(list)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// enricher runs enrich.podlabels with cfg and its own metrics registry.
type enricher struct {
	t   *testing.T
	e   *podlabels.Enricher
	reg *prometheus.Registry
}

func startEnricher(t *testing.T, cfg *podlabels.Config) *enricher {
	t.Helper()
	reg := prometheus.NewRegistry()
	set := plugin.NopSettings(podlabels.ID)
	set.Metrics = reg
	e, err := podlabels.New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return &enricher{t: t, e: e, reg: reg}
}

// process enriches one TCP record and returns it.
func (en *enricher) process(src, dst string, dport uint16) *flow.Record {
	en.t.Helper()
	b := flow.NewBatch(1)
	r := b.Append()
	r.SetAddr(flow.SourceAddress, netip.MustParseAddr(src))
	r.SetAddr(flow.DestinationAddress, netip.MustParseAddr(dst))
	r.SetUint(flow.ProtocolIdentifier, 6)
	r.SetUint(flow.SourceTransportPort, 40000)
	r.SetUint(flow.DestinationTransportPort, uint64(dport))
	if err := en.e.Process(context.Background(), b); err != nil {
		en.t.Fatal(err)
	}
	return b.Records[0]
}

func (en *enricher) lookups(result string) float64 {
	en.t.Helper()
	fams, err := en.reg.Gather()
	if err != nil {
		en.t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "weir_enrich_podlabels_lookups_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// fields is what the plugin writes, for comparison.
type fields struct {
	SrcPod, SrcNamespace, SrcNode, SrcLabels string
	DstPod, DstNamespace, DstNode, DstLabels string
	Service                                  string
}

func fieldsOf(r *flow.Record) fields {
	return fields{r.SourcePodName, r.SourcePodNamespace, r.SourceNodeName, r.SourcePodLabels,
		r.DestinationPodName, r.DestinationPodNamespace, r.DestinationNodeName, r.DestinationPodLabels,
		r.DestinationServicePortName}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInformers runs the informer backend against the API server: Pods
// with labels, a Node, Services (one made by the API server itself), then
// a Pod deleted and recreated with the same address.
func TestInformers(t *testing.T) {
	c := newCluster(t)
	nodeIP := c.ip(1)
	webIP, dbIP := c.ip(10), c.ip(11)
	c.createNode(nodeIP)
	c.createPod("web-1", webIP, map[string]string{"app": "web", "tier": "frontend", "pod-template-hash": "6f7c"})
	c.createPod("db-0", dbIP, map[string]string{"app": "db"})
	webSvc := c.createService("web",
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
	// Only a single-port Service may leave its port unnamed.
	metricsSvc := c.createService("metrics", corev1.ServicePort{Port: 9100, Protocol: corev1.ProtocolTCP})

	cfg := podlabels.DefaultConfig()
	cfg.Kubeconfig = kubeconfig
	cfg.GracePeriod = 3 * time.Second
	cfg.Labels.Deny = []string{"pod-template-hash"}
	en := startEnricher(t, cfg)

	webLabels := `{"app":"web","tier":"frontend"}`
	// Start waited for the initial list: the first record is enriched.
	got := fieldsOf(en.process(webIP, dbIP, 5432))
	want := fields{SrcPod: "web-1", SrcNamespace: c.ns, SrcNode: c.node, SrcLabels: webLabels,
		DstPod: "db-0", DstNamespace: c.ns, DstNode: c.node, DstLabels: `{"app":"db"}`}
	if got != want {
		t.Fatalf("pod to pod:\n got %+v\nwant %+v", got, want)
	}

	tests := []struct {
		name     string
		src, dst string
		dport    uint16
		want     fields
	}{
		{"service port", dbIP, webSvc, 80,
			fields{SrcPod: "db-0", SrcNamespace: c.ns, SrcNode: c.node, SrcLabels: `{"app":"db"}`, Service: c.ns + "/web:http"}},
		{"wrong protocol for the port", dbIP, webSvc, 53, // the port is UDP, the record TCP
			fields{SrcPod: "db-0", SrcNamespace: c.ns, SrcNode: c.node, SrcLabels: `{"app":"db"}`}},
		{"unnamed service port", dbIP, metricsSvc, 9100,
			fields{SrcPod: "db-0", SrcNamespace: c.ns, SrcNode: c.node, SrcLabels: `{"app":"db"}`, Service: c.ns + "/metrics"}},
		{"the API server's own kubernetes Service", webIP, "10.96.0.1", 443,
			fields{SrcPod: "web-1", SrcNamespace: c.ns, SrcNode: c.node, SrcLabels: webLabels, Service: "default/kubernetes:https"}},
		{"node address", nodeIP, dbIP, 5432,
			fields{SrcNode: c.node, DstPod: "db-0", DstNamespace: c.ns, DstNode: c.node, DstLabels: `{"app":"db"}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fieldsOf(en.process(tc.src, tc.dst, tc.dport)); got != tc.want {
				t.Errorf("\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	// Watch events: a label change.
	pods := c.client.CoreV1().Pods(c.ns)
	p, err := pods.Get(context.Background(), "db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["version"] = "2"
	if _, err := pods.Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "label update", func() bool {
		return en.process(dbIP, webIP, 80).SourcePodLabels == `{"app":"db","version":"2"}`
	})

	// Delete web-1: late flows still resolve to it, counted stale.
	c.deletePod("web-1")
	stale := en.lookups("stale")
	eventually(t, "stale lookup of a deleted pod", func() bool {
		r := en.process(webIP, dbIP, 5432)
		return r.SourcePodName == "web-1" && en.lookups("stale") > stale
	})

	// Recreate a Pod with the same name and address: it wins at once,
	// within the grace period of the old one.
	deleted := time.Now()
	c.createPod("web-1", webIP, map[string]string{"app": "web", "tier": "frontend", "generation": "2"})
	eventually(t, "recreated pod", func() bool {
		return en.process(webIP, dbIP, 5432).SourcePodLabels == `{"app":"web","generation":"2","tier":"frontend"}`
	})
	if since := time.Since(deleted); since >= cfg.GracePeriod {
		t.Errorf("the new pod appeared after %v, not within the grace period", since)
	}
	stale = en.lookups("stale")
	if r := en.process(webIP, dbIP, 5432); r.SourcePodName != "web-1" || en.lookups("stale") != stale {
		t.Errorf("recreated pod resolves as stale: %q", r.SourcePodName)
	}

	// Once the grace period is over a deleted Pod's address misses.
	c.deletePod("db-0")
	eventually(t, "db-0 stale", func() bool { return en.process(webIP, dbIP, 5432).DestinationPodName == "db-0" })
	eventually(t, "db-0 forgotten after the grace period", func() bool { return en.process(webIP, dbIP, 5432).DestinationPodName == "" })
	if en.lookups("hit") == 0 || en.lookups("miss") == 0 || en.lookups("stale") == 0 {
		t.Errorf("lookups: hit %v miss %v stale %v", en.lookups("hit"), en.lookups("miss"), en.lookups("stale"))
	}
}

// TestFileFromServer runs the file backend on the List the API server's
// objects make when printed as kubectl does, and checks it enriches as the
// informers do; then changes the file and checks the reload.
func TestFileFromServer(t *testing.T) {
	c := newCluster(t)
	nodeIP := c.ip(1)
	webIP, dbIP := c.ip(20), c.ip(21)
	c.createNode(nodeIP)
	c.createPod("web-1", webIP, map[string]string{"app": "web", "app.kubernetes.io/part-of": "shop"})
	c.createPod("db-0", dbIP, map[string]string{"app": "db"})
	webSvc := c.createService("web", corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP})

	path := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(path, c.kubectlList(), 0o644); err != nil {
		t.Fatal(err)
	}
	fileCfg := podlabels.DefaultConfig()
	fileCfg.File = path
	fileCfg.ReloadInterval = 50 * time.Millisecond
	fromFile := startEnricher(t, fileCfg)

	kubeCfg := podlabels.DefaultConfig()
	kubeCfg.Kubeconfig = kubeconfig
	fromCluster := startEnricher(t, kubeCfg)

	for _, rec := range [][3]string{
		{webIP, dbIP, "5432"},
		{dbIP, webSvc, "80"},
		{nodeIP, webIP, "80"},
		{webIP, "10.96.0.1", "443"},
	} {
		port, _ := strconv.Atoi(rec[2])
		a := fieldsOf(fromFile.process(rec[0], rec[1], uint16(port)))
		b := fieldsOf(fromCluster.process(rec[0], rec[1], uint16(port)))
		if a != b {
			t.Errorf("%v: file and cluster differ:\nfile    %+v\ncluster %+v", rec, a, b)
		}
		if a == (fields{}) {
			t.Errorf("%v: nothing resolved", rec)
		}
	}
	if got := fromFile.process(webIP, dbIP, 5432); got.SourcePodLabels != `{"app":"web","app.kubernetes.io/part-of":"shop"}` {
		t.Errorf("labels from file: %s", got.SourcePodLabels)
	}

	// The file is rewritten, as `kubectl get ... > file` does after a change.
	c.deletePod("db-0")
	c.createPod("db-1", dbIP, map[string]string{"app": "db"})
	list := c.kubectlList()
	if !bytes.Contains(list, []byte("db-1")) {
		t.Fatal("db-1 not listed")
	}
	if err := os.WriteFile(path, list, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "file reload", func() bool { return fromFile.process(webIP, dbIP, 5432).DestinationPodName == "db-1" })
}
