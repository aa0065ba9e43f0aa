package podlabels

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/weir-flow/weir/plugins/internal/kubeclient"
)

// kubeBackend watches Pods, Services and Nodes through shared informers.
type kubeBackend struct {
	client      kubernetes.Interface
	syncTimeout time.Duration
	enc         *labelEncoder
	store       *store
	metrics     *metrics
	log         *slog.Logger

	factory informers.SharedInformerFactory
	// podFactory watches only the local Node's Pods when node_name is set
	// (a field selector, as Antrea's agent does), else it is factory.
	podFactory informers.SharedInformerFactory
}

func newKubeBackend(kubeconfig, kubeContext string, syncTimeout time.Duration, enc *labelEncoder, s *store, m *metrics, log *slog.Logger) (*kubeBackend, error) {
	cfg, err := kubeclient.RESTConfig(kubeconfig, kubeContext)
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "weir/" + ID
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return newKubeBackendForClient(client, syncTimeout, enc, s, m, log), nil
}

func newKubeBackendForClient(client kubernetes.Interface, syncTimeout time.Duration, enc *labelEncoder, s *store, m *metrics, log *slog.Logger) *kubeBackend {
	return &kubeBackend{client: client, syncTimeout: syncTimeout, enc: enc, store: s, metrics: m, log: log}
}

// strip keeps only the fields the index reads, so the informers' caches
// hold a small fraction of each object.
func strip(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &corev1.Pod{
			ObjectMeta: slimMeta(&o.ObjectMeta, true),
			Spec:       corev1.PodSpec{NodeName: o.Spec.NodeName, HostNetwork: o.Spec.HostNetwork},
			Status:     corev1.PodStatus{Phase: o.Status.Phase, PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs},
		}, nil
	case *corev1.Node:
		return &corev1.Node{
			ObjectMeta: slimMeta(&o.ObjectMeta, false),
			Status:     corev1.NodeStatus{Addresses: o.Status.Addresses},
		}, nil
	case *corev1.Service:
		return &corev1.Service{
			ObjectMeta: slimMeta(&o.ObjectMeta, false),
			Spec:       corev1.ServiceSpec{ClusterIP: o.Spec.ClusterIP, ClusterIPs: o.Spec.ClusterIPs, Ports: o.Spec.Ports},
		}, nil
	}
	return obj, nil
}

func slimMeta(m *metav1.ObjectMeta, labels bool) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
	if labels {
		out.Labels = m.Labels
	}
	return out
}

func (b *kubeBackend) start(ctx context.Context, _ *sync.WaitGroup) error {
	b.factory = informers.NewSharedInformerFactoryWithOptions(b.client, 0, informers.WithTransform(strip))
	b.podFactory = b.factory
	if node := b.store.node; node != "" {
		// The API server sends only this Node's Pods: a Node's weir does
		// not cache the whole cluster's.
		b.podFactory = informers.NewSharedInformerFactoryWithOptions(b.client, 0, informers.WithTransform(strip),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
			}))
	}
	core := b.factory.Core().V1()
	handlers := []struct {
		informer cache.SharedIndexInformer
		kind     string
		upsert   func(obj any)
		remove   func(obj any)
	}{
		{b.podFactory.Core().V1().Pods().Informer(), "pod", b.upsertPod, b.deletePod},
		{core.Nodes().Informer(), "node", b.upsertNode, b.deleteNode},
		{core.Services().Informer(), "service", b.upsertService, b.deleteService},
	}
	var synced []cache.InformerSynced
	for _, h := range handlers {
		added := b.metrics.events.WithLabelValues(h.kind, "add")
		updated := b.metrics.events.WithLabelValues(h.kind, "update")
		deleted := b.metrics.events.WithLabelValues(h.kind, "delete")
		reg, err := h.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { added.Inc(); h.upsert(obj) },
			UpdateFunc: func(_, obj any) { updated.Inc(); h.upsert(obj) },
			DeleteFunc: func(obj any) {
				deleted.Inc()
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				h.remove(obj)
			},
		})
		if err != nil {
			return fmt.Errorf("watch %ss: %w", h.kind, err)
		}
		synced = append(synced, reg.HasSynced)
	}
	b.factory.Start(ctx.Done())
	if b.podFactory != b.factory {
		b.podFactory.Start(ctx.Done())
	}
	if b.syncTimeout <= 0 {
		return nil
	}
	// Wait until the handlers, not only the caches, have seen the initial
	// list: handlers run asynchronously after the cache syncs.
	syncCtx, cancel := context.WithTimeout(ctx, b.syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), synced...) {
		b.log.Warn("cluster state not listed in time; records miss until it is", "sync_timeout", b.syncTimeout)
	}
	return ctx.Err()
}

// stop waits for the informers' goroutines; their stop channel (ctx) has
// been closed.
func (b *kubeBackend) stop() {
	if b.factory != nil {
		b.factory.Shutdown()
	}
	if b.podFactory != nil && b.podFactory != b.factory {
		b.podFactory.Shutdown()
	}
}

func (b *kubeBackend) upsertPod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	info, truncated := podFromObject(p, b.enc)
	if truncated > 0 {
		b.metrics.truncated.Add(float64(truncated))
	}
	b.store.upsertPod(podKey(p), info)
}

func (b *kubeBackend) deletePod(obj any) {
	if p, ok := obj.(*corev1.Pod); ok {
		b.store.deletePod(podKey(p))
	}
}

func (b *kubeBackend) upsertNode(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		b.store.upsertNode(n.Name, nodeAddresses(n))
	}
}

func (b *kubeBackend) deleteNode(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		b.store.upsertNode(n.Name, nil)
	}
}

func (b *kubeBackend) upsertService(obj any) {
	if s, ok := obj.(*corev1.Service); ok {
		b.store.upsertService(serviceKey(s), servicePorts(s))
	}
}

func (b *kubeBackend) deleteService(obj any) {
	if s, ok := obj.(*corev1.Service); ok {
		b.store.upsertService(serviceKey(s), nil)
	}
}
