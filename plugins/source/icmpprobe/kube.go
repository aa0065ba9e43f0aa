package icmpprobe

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/weir-flow/weir/plugins/internal/kubeclient"
)

// nodeWatcher keeps the cluster's Nodes through a shared informer.
type nodeWatcher struct {
	cfg     Kubernetes
	client  kubernetes.Interface
	log     *slog.Logger
	factory informers.SharedInformerFactory
	lister  listersv1.NodeLister
	cancel  context.CancelFunc
}

// nodeTarget is one address of one Node.
type nodeTarget struct {
	name string
	addr netip.Addr
}

func newNodeWatcher(cfg Kubernetes, log *slog.Logger) (*nodeWatcher, error) {
	rc, err := kubeclient.RESTConfig(cfg.Kubeconfig, cfg.Context)
	if err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "weir/" + ID
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	}
	return newNodeWatcherForClient(cfg, client, log), nil
}

func newNodeWatcherForClient(cfg Kubernetes, client kubernetes.Interface, log *slog.Logger) *nodeWatcher {
	return &nodeWatcher{cfg: cfg, client: client, log: log}
}

// start runs the informer until ctx ends and waits up to 10 s for its first
// list, so the first round probes every Node.
func (w *nodeWatcher) start(ctx context.Context) error {
	ctx, w.cancel = context.WithCancel(ctx)
	w.factory = informers.NewSharedInformerFactory(w.client, 0)
	inf := w.factory.Core().V1().Nodes()
	w.lister = inf.Lister()
	synced := inf.Informer().HasSynced
	w.factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), synced) {
		w.log.Warn("node list not synced yet; Nodes are probed as they arrive")
	}
	return nil
}

// stop ends the informer and waits for it.
func (w *nodeWatcher) stop() {
	if w.cancel != nil {
		w.cancel()
	}
	if w.factory != nil {
		w.factory.Shutdown()
	}
}

// targets returns the address of the configured kind of every Node but
// this one, one per family.
func (w *nodeWatcher) targets() []nodeTarget {
	if w.lister == nil {
		return nil
	}
	nodes, err := w.lister.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []nodeTarget
	for _, n := range nodes {
		if n.Name == w.cfg.NodeName {
			continue
		}
		for _, a := range nodeAddresses(n, w.cfg.Address) {
			out = append(out, nodeTarget{name: n.Name, addr: a})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].name != out[j].name {
			return out[i].name < out[j].name
		}
		return out[i].addr.Less(out[j].addr)
	})
	return out
}

// nodeAddresses returns the first address of each family of kind.
func nodeAddresses(n *corev1.Node, kind string) []netip.Addr {
	var v4, v6 netip.Addr
	take := func(a netip.Addr) {
		switch {
		case a.Is4() && !v4.IsValid():
			v4 = a
		case a.Is6() && !v6.IsValid():
			v6 = a
		}
	}
	if kind == AddressPodCIDRGateway {
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil {
				take(p.Masked().Addr().Next())
			}
		}
	} else {
		for _, a := range n.Status.Addresses {
			if string(a.Type) != kind {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				take(ip.Unmap())
			}
		}
	}
	var out []netip.Addr
	for _, a := range []netip.Addr{v4, v6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}
