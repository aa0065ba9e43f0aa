package podlabels_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/enrich/podlabels"
	"github.com/weir-flow/weir/plugins/export/jsonl"
)

// antrea is the part of a record this plugin writes.
type antrea struct {
	SrcPod, SrcNamespace, SrcNode, SrcLabels string
	DstPod, DstNamespace, DstNode, DstLabels string
	ServicePortName                          string
	ClusterIP                                string
	ServicePort                              uint16
}

func antreaOf(r *flow.Record) antrea {
	a := antrea{
		SrcPod: r.SourcePodName, SrcNamespace: r.SourcePodNamespace, SrcNode: r.SourceNodeName, SrcLabels: r.SourcePodLabels,
		DstPod: r.DestinationPodName, DstNamespace: r.DestinationPodNamespace, DstNode: r.DestinationNodeName, DstLabels: r.DestinationPodLabels,
		ServicePortName: r.DestinationServicePortName,
		ServicePort:     r.DestinationServicePort,
	}
	if r.DestinationClusterIP.IsValid() {
		a.ClusterIP = r.DestinationClusterIP.String()
	}
	return a
}

const (
	webLabels = `{"app":"web","app.kubernetes.io/part-of":"shop","pod-template-hash":"7d9c5b6f4","tier":"frontend"}`
	dbLabels  = `{"app":"db","statefulset.kubernetes.io/pod-name":"db-0"}`
	dnsLabels = `{"k8s-app":"kube-dns"}`
)

var (
	web = antrea{SrcPod: "web-7d9c5b6f4-x2x9k", SrcNamespace: "default", SrcNode: "node-a", SrcLabels: webLabels}
	db  = antrea{DstPod: "db-0", DstNamespace: "default", DstNode: "node-b", DstLabels: dbLabels}
)

func merge(parts ...antrea) antrea {
	var out antrea
	for _, p := range parts {
		for dst, src := range map[*string]string{
			&out.SrcPod: p.SrcPod, &out.SrcNamespace: p.SrcNamespace, &out.SrcNode: p.SrcNode, &out.SrcLabels: p.SrcLabels,
			&out.DstPod: p.DstPod, &out.DstNamespace: p.DstNamespace, &out.DstNode: p.DstNode, &out.DstLabels: p.DstLabels,
			&out.ServicePortName: p.ServicePortName, &out.ClusterIP: p.ClusterIP,
		} {
			if src != "" {
				*dst = src
			}
		}
		if p.ServicePort != 0 {
			out.ServicePort = p.ServicePort
		}
	}
	return out
}

// newFromFile builds and starts the plugin on a file, with its own metrics
// registry.
func newFromFile(t *testing.T, cfg *podlabels.Config) (*podlabels.Enricher, *prometheus.Registry) {
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
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e, reg
}

func fileConfig(path string) *podlabels.Config {
	cfg := podlabels.DefaultConfig()
	cfg.File = path
	return cfg
}

type recordSpec struct {
	src, dst    string
	proto       uint8
	sport       uint16
	dport       uint16
	clusterIP   string // set destinationClusterIP (Antrea, after DNAT)
	servicePort uint16 // set destinationServicePort
	pre         antrea // fields the record already carries
}

func build(b *flow.Batch, s recordSpec) *flow.Record {
	r := plugintest.Record(b, s.src, s.dst, s.proto, s.sport, s.dport, 1, 100)
	if s.clusterIP != "" {
		r.SetAddr(flow.DestinationClusterIP, netip.MustParseAddr(s.clusterIP))
	}
	if s.servicePort != 0 {
		r.SetUint(flow.DestinationServicePort, uint64(s.servicePort))
	}
	if s.pre.SrcPod != "" {
		r.SetString(flow.SourcePodName, s.pre.SrcPod)
	}
	if s.pre.DstLabels != "" {
		r.SetString(flow.DestinationPodLabels, s.pre.DstLabels)
	}
	return r
}

// enrichCases run against testdata/cluster.yaml.
var enrichCases = []struct {
	name string
	in   recordSpec
	want antrea
}{
	{"pod to pod", recordSpec{src: "10.244.1.5", dst: "10.244.2.7", proto: 6, sport: 40000, dport: 5432},
		merge(web, db)},
	{"pod to pod over IPv6", recordSpec{src: "fd00:10:244:1::5", dst: "10.244.2.7", proto: 6, sport: 40000, dport: 5432},
		merge(web, db)},
	{"service before DNAT, UDP port", recordSpec{src: "10.244.1.5", dst: "10.96.0.10", proto: 17, sport: 40000, dport: 53},
		merge(web, antrea{ServicePortName: "kube-system/kube-dns:dns", ClusterIP: "10.96.0.10", ServicePort: 53})},
	{"service before DNAT, TCP port of the same number", recordSpec{src: "10.244.1.5", dst: "10.96.0.10", proto: 6, sport: 40000, dport: 53},
		merge(web, antrea{ServicePortName: "kube-system/kube-dns:dns-tcp", ClusterIP: "10.96.0.10", ServicePort: 53})},
	{"service port without a name", recordSpec{src: "10.244.1.5", dst: "10.96.0.20", proto: 6, sport: 40000, dport: 8443},
		merge(web, antrea{ServicePortName: "default/web", ClusterIP: "10.96.0.20", ServicePort: 8443})},
	{"IPv6 ClusterIP", recordSpec{src: "fd00:10:244:1::5", dst: "fd00:10:96::20", proto: 6, sport: 40000, dport: 80},
		merge(web, antrea{ServicePortName: "default/web:http", ClusterIP: "fd00:10:96::20", ServicePort: 80})},
	{"service after DNAT (Antrea sent the ClusterIP)", recordSpec{src: "10.244.1.3", dst: "10.244.1.5", proto: 6, sport: 40000, dport: 80, clusterIP: "10.96.0.20", servicePort: 80},
		antrea{SrcPod: "coredns-5d78c9869d-abcde", SrcNamespace: "kube-system", SrcNode: "node-a", SrcLabels: dnsLabels,
			DstPod: "web-7d9c5b6f4-x2x9k", DstNamespace: "default", DstNode: "node-a", DstLabels: webLabels,
			ServicePortName: "default/web:http", ClusterIP: "10.96.0.20", ServicePort: 80}},
	{"service port that does not exist", recordSpec{src: "10.244.1.5", dst: "10.96.0.10", proto: 6, sport: 40000, dport: 9999},
		web},
	{"headless service resolves nothing", recordSpec{src: "10.244.1.5", dst: "203.0.113.99", proto: 6, sport: 40000, dport: 5432},
		web},
	{"node addresses (host-network Pods resolve to their Node)", recordSpec{src: "192.168.1.10", dst: "203.0.113.10", proto: 6, sport: 40000, dport: 10250},
		antrea{SrcNode: "node-a", DstNode: "node-a"}},
	{"terminated Pod", recordSpec{src: "10.244.2.9", dst: "10.244.2.7", proto: 6, sport: 40000, dport: 5432},
		merge(antrea{SrcPod: "backup-29001-q8w7e", SrcNamespace: "default", SrcNode: "node-b", SrcLabels: `{"job-name":"backup"}`}, db)},
	{"outside the cluster", recordSpec{src: "198.51.100.1", dst: "198.51.100.2", proto: 17, sport: 40000, dport: 53},
		antrea{}},
	{"fields already set are kept", recordSpec{src: "10.244.1.5", dst: "10.244.2.7", proto: 6, sport: 40000, dport: 5432,
		pre: antrea{SrcPod: "from-exporter", DstLabels: `{"x":"y"}`}},
		merge(web, db, antrea{SrcPod: "from-exporter", DstLabels: `{"x":"y"}`})},
}

func TestProcessFile(t *testing.T) {
	e, _ := newFromFile(t, fileConfig("testdata/cluster.yaml"))
	for _, tc := range enrichCases {
		t.Run(tc.name, func(t *testing.T) { checkEnrich(t, e, tc.in, tc.want) })
	}
}

// The same objects as JSON (`kubectl get ... -o json`): testdata/cluster.json
// holds the web Pod, the kube-dns Service and node-a.
func TestProcessFileJSON(t *testing.T) {
	e, _ := newFromFile(t, fileConfig("testdata/cluster.json"))
	for _, tc := range []struct {
		name string
		in   recordSpec
		want antrea
	}{
		{"pod to service", recordSpec{src: "fd00:10:244:1::5", dst: "10.96.0.10", proto: 17, sport: 40000, dport: 53},
			merge(web, antrea{ServicePortName: "kube-system/kube-dns:dns", ClusterIP: "10.96.0.10", ServicePort: 53})},
		{"node", recordSpec{src: "198.51.100.1", dst: "203.0.113.10", proto: 6, sport: 40000, dport: 22},
			antrea{DstNode: "node-a"}},
		{"absent from this file", recordSpec{src: "10.244.2.7", dst: "10.96.0.20", proto: 6, sport: 40000, dport: 80},
			antrea{}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkEnrich(t, e, tc.in, tc.want) })
	}
}

func checkEnrich(t *testing.T, e *podlabels.Enricher, in recordSpec, want antrea) {
	t.Helper()
	b := flow.NewBatch(1)
	build(b, in)
	if err := e.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	r := b.Records[0]
	if got := antreaOf(r); got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// Every field written is marked present.
	for _, f := range []flow.FieldID{flow.SourcePodName, flow.SourcePodNamespace, flow.SourceNodeName, flow.SourcePodLabels,
		flow.DestinationPodName, flow.DestinationPodNamespace, flow.DestinationNodeName, flow.DestinationPodLabels,
		flow.DestinationServicePortName} {
		if r.String(f) != "" && !r.Present.Has(f) {
			t.Errorf("%s set but not present", flow.Fields[f].Name)
		}
	}
	if want.ServicePort != 0 && !r.Present.Has(flow.DestinationServicePort) {
		t.Error("destinationServicePort set but not present")
	}
	if want.ClusterIP != "" && !r.Present.Has(flow.DestinationClusterIP) {
		t.Error("destinationClusterIP set but not present")
	}
}

func TestOverwrite(t *testing.T) {
	cfg := fileConfig("testdata/cluster.yaml")
	cfg.Overwrite = true
	e, _ := newFromFile(t, cfg)
	b := flow.NewBatch(1)
	build(b, recordSpec{src: "10.244.1.5", dst: "10.244.2.7", proto: 6, sport: 40000, dport: 5432,
		pre: antrea{SrcPod: "from-exporter", DstLabels: `{"x":"y"}`}})
	if err := e.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got, want := antreaOf(b.Records[0]), merge(web, db); got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestLabelsConfig(t *testing.T) {
	cfg := fileConfig("testdata/cluster.yaml")
	cfg.Labels.Allow = []string{"app", "app.kubernetes.io/*", "statefulset.*"}
	cfg.Labels.Deny = []string{"statefulset.kubernetes.io/pod-name"}
	e, _ := newFromFile(t, cfg)
	b := flow.NewBatch(1)
	build(b, recordSpec{src: "10.244.1.5", dst: "10.244.2.7", proto: 6, sport: 40000, dport: 5432})
	if err := e.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	r := b.Records[0]
	if r.SourcePodLabels != `{"app":"web","app.kubernetes.io/part-of":"shop"}` || r.DestinationPodLabels != `{"app":"db"}` {
		t.Errorf("labels: %s / %s", r.SourcePodLabels, r.DestinationPodLabels)
	}

	// A cap that leaves labels out counts them.
	cfg = fileConfig("testdata/cluster.yaml")
	cfg.Labels.MaxBytes = 16
	e, reg := newFromFile(t, cfg)
	b = flow.NewBatch(1)
	build(b, recordSpec{src: "10.244.1.5", dst: "10.244.2.7", proto: 6, sport: 40000, dport: 5432})
	if err := e.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if r := b.Records[0]; r.SourcePodLabels != `{"app":"web"}` || r.DestinationPodLabels != `{"app":"db"}` {
		t.Errorf("capped labels: %s / %s", r.SourcePodLabels, r.DestinationPodLabels)
	}
	if got := metricValue(t, reg, "weir_enrich_podlabels_labels_truncated_total"); got == 0 {
		t.Error("weir_enrich_podlabels_labels_truncated_total is 0")
	}
}

// metricValue returns the counter or gauge name summed over the series
// whose labels include the given name/value pairs (0 if none).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	return plugintest.MetricValue(t, reg, name, labels...)
}

func TestLookupMetrics(t *testing.T) {
	e, reg := newFromFile(t, fileConfig("testdata/cluster.yaml"))
	b := flow.NewBatch(4)
	plugintest.Record(b, "10.244.1.5", "10.244.2.7", 6, 1, 2, 1, 1)     // hit, hit
	plugintest.Record(b, "10.244.2.9", "198.51.100.1", 6, 1, 2, 1, 1)   // stale, miss
	plugintest.Record(b, "198.51.100.1", "10.96.0.10", 17, 1, 53, 1, 1) // miss, hit (service)
	b.Append()                                                          // no addresses: no lookup
	if err := e.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 4 {
		t.Fatalf("records dropped: %d left", b.Len())
	}
	for result, want := range map[string]float64{"hit": 3, "miss": 2, "stale": 1} {
		if got := metricValue(t, reg, "weir_enrich_podlabels_lookups_total", "result", result); got != want {
			t.Errorf("lookups{result=%q} = %v, want %v", result, got, want)
		}
	}
	// pods: web (two addresses), db-0, coredns; stale: the Succeeded Pod;
	// nodes: node-a (two addresses), node-b; service ports: kubernetes 1,
	// web 2 ports × 2 ClusterIPs, kube-dns 3, the headless db none.
	for kind, want := range map[string]float64{"pod": 4, "stale": 1, "node": 3, "service": 8} {
		if got := metricValue(t, reg, "weir_enrich_podlabels_index_entries", "kind", kind); got != want {
			t.Errorf("index_entries{kind=%q} = %v, want %v", kind, got, want)
		}
	}
	if got := metricValue(t, reg, "weir_enrich_podlabels_file_reloads_total", "result", "ok"); got != 1 {
		t.Errorf("file_reloads_total{ok} = %v, want 1", got)
	}
}

func TestFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.yaml")
	writeFile(t, path, podYAML("a", "10.244.0.5", "app: one"))
	cfg := fileConfig(path)
	cfg.ReloadInterval = 10 * time.Millisecond
	cfg.GracePeriod = time.Hour
	e, reg := newFromFile(t, cfg)

	lookup := func(ip string) *flow.Record {
		b := flow.NewBatch(1)
		plugintest.Record(b, ip, "198.51.100.1", 6, 1, 2, 1, 1)
		if err := e.Process(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		return b.Records[0]
	}
	if r := lookup("10.244.0.5"); r.SourcePodName != "a" || r.SourcePodLabels != `{"app":"one"}` {
		t.Fatalf("initial load: %q %q", r.SourcePodName, r.SourcePodLabels)
	}

	// Replaced by rename, as editors and ConfigMap volumes do: b takes a's
	// address, a moves, c appears.
	tmp := filepath.Join(dir, "next.yaml")
	writeFile(t, tmp, podYAML("b", "10.244.0.5", "app: two")+"---\n"+podYAML("c", "10.244.0.6", "app: three"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return lookup("10.244.0.6").SourcePodName == "c" })
	if r := lookup("10.244.0.5"); r.SourcePodName != "b" || r.SourcePodLabels != `{"app":"two"}` {
		t.Fatalf("after reload: %q %q", r.SourcePodName, r.SourcePodLabels)
	}

	// A broken file keeps the previous content and counts an error.
	writeFile(t, path, "apiVersion: v1\nkind: Pod\nmetadata: [not, a, map\n")
	eventually(t, func() bool {
		return metricValue(t, reg, "weir_enrich_podlabels_file_reloads_total", "result", "error") >= 1
	})
	if r := lookup("10.244.0.6"); r.SourcePodName != "c" {
		t.Fatalf("after a broken file: %q", r.SourcePodName)
	}

	// Pods gone from the file resolve as stale for the grace period.
	writeFile(t, path, podYAML("c", "10.244.0.6", "app: three"))
	eventually(t, func() bool {
		return metricValue(t, reg, "weir_enrich_podlabels_index_entries", "kind", "stale") == 1
	})
	before := metricValue(t, reg, "weir_enrich_podlabels_lookups_total", "result", "stale")
	if r := lookup("10.244.0.5"); r.SourcePodName != "b" {
		t.Fatalf("removed pod within grace: %q", r.SourcePodName)
	}
	if got := metricValue(t, reg, "weir_enrich_podlabels_lookups_total", "result", "stale"); got != before+1 {
		t.Errorf("stale lookups %v, want %v", got, before+1)
	}
}

func podYAML(name, ip, labels string) string {
	return `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
  namespace: default
  labels:
    ` + labels + `
spec:
  nodeName: node-a
status:
  phase: Running
  podIP: ` + ip + "\n"
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		is            error
	}{
		{"missing", "", os.ErrNotExist},
		{"empty", "# nothing\n", podlabels.ErrFileFormat},
		{"not yaml", "{{{", nil},
		{"bad pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: [1]}\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if tc.name != "missing" {
				writeFile(t, path, tc.content)
			}
			cfg := fileConfig(path)
			e, err := podlabels.New(cfg, plugin.NopSettings(podlabels.ID))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Shutdown(context.Background())
			err = e.Start(context.Background())
			if err == nil {
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			// Check, run by `weir validate`, finds the same problem.
			if err := cfg.Check(context.Background(), ""); err == nil {
				t.Error("Check succeeded")
			}
		})
	}
}

func TestFileOtherKindsIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mixed.yaml")
	writeFile(t, path, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: default}
---
`+podYAML("a", "10.244.0.5", "app: one"))
	e, _ := newFromFile(t, fileConfig(path))
	b := flow.NewBatch(1)
	plugintest.Record(b, "10.244.0.5", "198.51.100.1", 6, 1, 2, 1, 1)
	if err := e.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if b.Records[0].SourcePodName != "a" {
		t.Errorf("got %q", b.Records[0].SourcePodName)
	}
}

func TestBaseDir(t *testing.T) {
	set := plugin.NopSettings(podlabels.ID)
	set.BaseDir = "testdata"
	e, err := podlabels.New(fileConfig("cluster.yaml"), set)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("relative file not resolved against BaseDir: %v", err)
	}
}

func TestKubeconfigErrors(t *testing.T) {
	cfg := podlabels.DefaultConfig()
	cfg.Kubeconfig = filepath.Join(t.TempDir(), "missing")
	if _, err := podlabels.New(cfg, plugin.NopSettings(podlabels.ID)); err == nil || !strings.Contains(err.Error(), cfg.Kubeconfig) {
		t.Errorf("missing kubeconfig: %v", err)
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		if _, err := podlabels.New(podlabels.DefaultConfig(), plugin.NopSettings(podlabels.ID)); err == nil {
			t.Error("in-cluster config outside a cluster: no error")
		}
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		e, err := podlabels.New(fileConfig("testdata/cluster.yaml"), plugin.NopSettings(podlabels.ID))
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}

func TestRegistered(t *testing.T) {
	info, ok := plugin.Lookup(podlabels.ID)
	if !ok {
		t.Fatal("not registered")
	}
	if info.Stage() != plugin.StageProcessor {
		t.Errorf("stage %s", info.Stage())
	}
	cfg := info.NewConfig().(*podlabels.Config)
	cfg.File = "testdata/cluster.yaml"
	c, err := info.New(cfg, plugin.NopSettings(podlabels.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(plugin.Processor); !ok {
		t.Errorf("%T is not a processor", c)
	}
}

// The README's sample output: what export.jsonl prints for an enriched
// record.
func TestREADMEOutput(t *testing.T) {
	e, _ := newFromFile(t, fileConfig("testdata/cluster.yaml"))
	b := flow.NewBatch(1)
	plugintest.Record(b, "10.244.1.5", "10.96.0.10", 17, 40000, 53, 1, 100)
	if err := e.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	line := string(jsonl.AppendRecord(nil, b.Records[0], false))
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var sample string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, `{"sourcePodNamespace"`) {
			sample = strings.TrimSuffix(l, "}")
		}
	}
	if sample == "" {
		t.Fatal("README has no sample output line")
	}
	// Every key/value of the sample is in the real output.
	for _, kv := range strings.Split(strings.TrimPrefix(sample, "{"), `,"`) {
		kv = strings.TrimPrefix(kv, `"`)
		if !strings.Contains(line, `"`+kv) {
			t.Errorf("README sample has %q; export.jsonl printed:\n%s", kv, line)
		}
	}
}
