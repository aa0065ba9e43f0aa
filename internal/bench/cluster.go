package bench

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
)

// cluster is the synthetic Kubernetes cluster the flows run in: Nodes,
// Pods in Deployments of about four replicas, and ClusterIP Services in
// front of some Deployments. Every Pod is dual-stack.
type cluster struct {
	spec        Spec
	nodes       []node
	pods        []pod
	services    []service
	tcpServices []int
	udpServices []int
}

type node struct {
	name   string
	v4, v6 netip.Addr
	domain uint32
}

type pod struct {
	name, namespace, app string
	node                 int
	v4, v6               netip.Addr
	labelMap             map[string]string
	labels               string // JSON object, as Antrea sends it
}

func (p *pod) addr(v6 bool) netip.Addr {
	if v6 {
		return p.v6
	}
	return p.v4
}

type service struct {
	name, namespace string
	v4, v6          netip.Addr
	port            uint16
	proto           uint8
	portLabel       string // the port's name in the Service spec
	portName        string // "namespace/name:port", destinationServicePortName
	app             string
	backends        []int // pod indices
}

func (s *service) addr(v6 bool) netip.Addr {
	if v6 {
		return s.v6
	}
	return s.v4
}

var (
	namespaceNames = []string{"default", "kube-system", "frontend", "backend", "payments", "monitoring", "data", "ci"}
	appNames       = []string{"frontend", "checkout", "cart", "catalog", "payments", "shipping", "email", "recommend",
		"ads", "currency", "redis", "postgres", "kafka", "zookeeper", "prometheus", "grafana", "coredns", "nginx", "api", "worker"}
	labelKeys = []string{"app", "pod-template-hash", "version", "tier", "team", "env", "component", "release",
		"app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"}
	servicePorts = []struct {
		port  uint16
		proto uint8
		name  string
	}{{80, 6, "http"}, {443, 6, "https"}, {8080, 6, "http-alt"}, {5432, 6, "postgres"}, {6379, 6, "redis"}, {53, 17, "dns"}, {9090, 6, "metrics"}}
)

// nameChars are the characters Kubernetes uses in generated name suffixes.
const nameChars = "bcdfghjklmnpqrstvwxz2456789"

func randName(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = nameChars[rng.IntN(len(nameChars))]
	}
	return string(b)
}

func offsetAddr(base netip.Addr, off uint64) netip.Addr {
	a := base.As16()
	lo := binary.BigEndian.Uint64(a[8:]) + off
	binary.BigEndian.PutUint64(a[8:], lo)
	out := netip.AddrFrom16(a)
	if base.Is4() {
		return out.Unmap()
	}
	return out
}

// newCluster builds the cluster of spec from seed; it uses its own random
// stream so the cluster does not depend on the number of flows.
func newCluster(spec Spec, seed uint64) *cluster {
	rng := rand.New(rand.NewPCG(seed, 1))
	c := &cluster{spec: spec}
	namespaces := make([]string, spec.Namespaces)
	for i := range namespaces {
		if i < len(namespaceNames) {
			namespaces[i] = namespaceNames[i]
		} else {
			namespaces[i] = fmt.Sprintf("ns-%d", i)
		}
	}
	for i := range spec.Nodes {
		name := fmt.Sprintf("k8s-node-%02d", i+1)
		c.nodes = append(c.nodes, node{
			name:   name,
			v4:     offsetAddr(netip.MustParseAddr("172.18.0.10"), uint64(i)),
			v6:     offsetAddr(netip.MustParseAddr("fc00:f853:ccd:e793::10"), uint64(i)),
			domain: crc(name),
		})
	}
	deployments := max(1, (spec.Pods+3)/4)
	type deployment struct{ name, namespace, app, hash string }
	deps := make([]deployment, deployments)
	for d := range deps {
		app := appNames[(d/len(namespaces))%len(appNames)]
		name := app
		if k := d / (len(namespaces) * len(appNames)); k > 0 {
			name = fmt.Sprintf("%s-%d", app, k)
		}
		deps[d] = deployment{name: name, namespace: namespaces[d%len(namespaces)], app: app, hash: randName(rng, 10)}
	}
	seen := map[string]bool{}
	for i := range spec.Pods {
		d := &deps[i%deployments]
		var name string
		for {
			name = d.name + "-" + d.hash + "-" + randName(rng, 5)
			if !seen[d.namespace+"/"+name] {
				seen[d.namespace+"/"+name] = true
				break
			}
		}
		p := pod{
			name: name, namespace: d.namespace, app: d.app,
			node: i % spec.Nodes,
			v4:   offsetAddr(netip.MustParseAddr("10.244.0.2"), uint64(i)),
			v6:   offsetAddr(netip.MustParseAddr("fd00:10:244::2"), uint64(i)),
		}
		if spec.Labels > 0 {
			p.labelMap = map[string]string{}
			for k := range spec.Labels {
				key := fmt.Sprintf("label-%d", k)
				if k < len(labelKeys) {
					key = labelKeys[k]
				}
				var v string
				switch key {
				case "app", "app.kubernetes.io/name":
					v = d.app
				case "pod-template-hash":
					v = d.hash
				case "version":
					v = fmt.Sprintf("v%d.%d.%d", 1+rng.IntN(3), rng.IntN(20), rng.IntN(10))
				case "tier":
					v = []string{"web", "api", "cache", "db"}[rng.IntN(4)]
				case "env":
					v = "production"
				default:
					v = d.name + "-" + randName(rng, 4)
				}
				p.labelMap[key] = v
			}
			j, _ := json.Marshal(p.labelMap) // map[string]string always marshals; keys sorted
			p.labels = string(j)
		}
		c.pods = append(c.pods, p)
	}
	for k := range min(spec.Services, deployments) {
		d := &deps[k]
		sp := servicePorts[k%len(servicePorts)]
		s := service{
			name: d.name, namespace: d.namespace, app: d.app,
			v4:        offsetAddr(netip.MustParseAddr("10.96.0.10"), uint64(k)),
			v6:        offsetAddr(netip.MustParseAddr("fd00:10:96::a"), uint64(k)),
			port:      sp.port,
			proto:     sp.proto,
			portLabel: sp.name,
			portName:  d.namespace + "/" + d.name + ":" + sp.name,
		}
		for i := k; i < len(c.pods); i += deployments {
			s.backends = append(s.backends, i)
		}
		if len(s.backends) == 0 {
			continue
		}
		if s.proto == 17 {
			c.udpServices = append(c.udpServices, len(c.services))
		} else {
			c.tcpServices = append(c.tcpServices, len(c.services))
		}
		c.services = append(c.services, s)
	}
	return c
}

// WritePods writes the cluster behind spec and seed — its Pods (with
// labels and both addresses), Nodes and Services — as a Kubernetes v1 List
// in JSON, as `kubectl get pods,nodes,services -A -o json` prints it. It is
// the file enrich.podlabels' file backend reads, so that plugin can be
// benchmarked on addresses the synthetic flows use.
func WritePods(w io.Writer, spec Spec, seed uint64) error {
	c := newCluster(spec, seed)
	type obj = map[string]any
	items := make([]obj, 0, len(c.pods)+len(c.nodes)+len(c.services))
	for i := range c.nodes {
		n := &c.nodes[i]
		items = append(items, obj{
			"apiVersion": "v1", "kind": "Node",
			"metadata": obj{"name": n.name},
			"status": obj{"addresses": []obj{
				{"type": "InternalIP", "address": n.v4.String()},
				{"type": "InternalIP", "address": n.v6.String()},
				{"type": "Hostname", "address": n.name},
			}},
		})
	}
	for i := range c.pods {
		p := &c.pods[i]
		meta := obj{"name": p.name, "namespace": p.namespace, "uid": fmt.Sprintf("00000000-0000-4000-8000-%012x", i)}
		if p.labelMap != nil {
			meta["labels"] = p.labelMap
		}
		items = append(items, obj{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": meta,
			"spec": obj{
				"nodeName":   c.nodes[p.node].name,
				"containers": []obj{{"name": p.app, "image": "registry.example/" + p.app + ":latest"}},
			},
			"status": obj{
				"phase":  "Running",
				"podIP":  p.v4.String(),
				"podIPs": []obj{{"ip": p.v4.String()}, {"ip": p.v6.String()}},
			},
		})
	}
	for i := range c.services {
		s := &c.services[i]
		proto := "TCP"
		if s.proto == 17 {
			proto = "UDP"
		}
		items = append(items, obj{
			"apiVersion": "v1", "kind": "Service",
			"metadata": obj{"name": s.name, "namespace": s.namespace},
			"spec": obj{
				"type":       "ClusterIP",
				"clusterIP":  s.v4.String(),
				"clusterIPs": []string{s.v4.String(), s.v6.String()},
				"ipFamilies": []string{"IPv4", "IPv6"},
				"selector":   obj{"app": s.app},
				"ports":      []obj{{"name": s.portLabel, "port": s.port, "protocol": proto, "targetPort": s.port}},
			},
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(obj{"apiVersion": "v1", "kind": "List", "metadata": obj{}, "items": items}); err != nil {
		return fmt.Errorf("write pods: %w", err)
	}
	return nil
}
