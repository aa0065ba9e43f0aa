package podlabels

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin ID.
const ID = "enrich.podlabels"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "add Kubernetes Pod, Node and Service names and Pod labels (Antrea fields) from a cluster or a kubectl List file",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// backend feeds the store from a cluster or a file.
type backend interface {
	// start loads the initial state (bounded in time) and starts the
	// backend's goroutines, which run until ctx ends.
	start(ctx context.Context, wg *sync.WaitGroup) error
	// stop waits for what start began once ctx has ended.
	stop()
}

// Enricher is the enrich.podlabels processor. Process mutates records in
// place and is safe for concurrent use.
type Enricher struct {
	overwrite bool
	log       *slog.Logger
	store     *store
	backend   backend
	metrics   *metrics

	mu      sync.Mutex
	started bool
	done    bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New builds the processor and its backend. It reads no file and opens no
// connection; a kubeconfig that cannot be loaded is an error here.
func New(cfg *Config, set plugin.Settings) (*Enricher, error) {
	return newEnricher(cfg, set, func(e *Enricher, enc *labelEncoder) (backend, error) {
		if cfg.File != "" {
			return newFileBackend(set.Path(cfg.File), cfg.ReloadInterval, enc, e.store, e.metrics, e.log), nil
		}
		return newKubeBackend(set.Path(cfg.Kubeconfig), cfg.Context, cfg.SyncTimeout, enc, e.store, e.metrics, e.log)
	})
}

// newEnricher builds the processor around the backend newBackend returns.
func newEnricher(cfg *Config, set plugin.Settings, newBackend func(*Enricher, *labelEncoder) (backend, error)) (*Enricher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(set.Metrics)
	if err != nil {
		return nil, fmt.Errorf("%s: register metrics: %w", ID, err)
	}
	e := &Enricher{
		overwrite: cfg.Overwrite,
		log:       set.Logger,
		store:     newStore(cfg.GracePeriod),
		metrics:   m,
	}
	e.store.onRebuild = m.setEntries
	e.store.node = cfg.NodeName
	if e.backend, err = newBackend(e, newLabelEncoder(cfg.Labels)); err != nil {
		m.unregister(set.Metrics)
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	return e, nil
}

// resolve returns p relative to baseDir unless absolute, as
// plugin.Settings.Path does (Check has a base directory, not Settings).
func resolve(baseDir, p string) string { return plugin.Settings{BaseDir: baseDir}.Path(p) }

// Start loads the initial state — the file, or the informers' first list
// within sync_timeout — and starts watching for changes.
func (e *Enricher) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started || e.done {
		return nil
	}
	// The backend outlives Start's ctx (it runs until Shutdown), but a ctx
	// cancelled while Start waits for the initial state aborts the wait.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	detach := context.AfterFunc(ctx, cancel)
	err := e.backend.start(runCtx, &e.wg)
	if !detach() {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		e.wg.Wait()
		e.backend.stop()
		return fmt.Errorf("%s: %w", ID, err)
	}
	// Publish what the backend loaded before the first batch arrives.
	e.store.rebuild()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.store.run(runCtx)
	}()
	e.started, e.cancel = true, cancel
	return nil
}

// Shutdown stops watching. It is idempotent and safe without Start.
func (e *Enricher) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.done = true
	if e.cancel != nil {
		e.cancel()
		e.wg.Wait()
		e.backend.stop()
		e.cancel = nil
	}
	return nil
}

// counts accumulates one batch's lookup results, so the shared counters are
// touched once per batch rather than twice per record.
type counts struct{ hit, miss, stale int }

func (c *counts) add(ep *endpoint, found bool) {
	switch {
	case !found:
		c.miss++
	case ep != nil && ep.stale:
		c.stale++
	default:
		c.hit++
	}
}

// Process enriches every record of b in place. It never drops a record and
// never fails.
func (e *Enricher) Process(_ context.Context, b *flow.Batch) error {
	s := e.store.load()
	var c counts
	for _, r := range b.Records {
		e.enrich(r, s, &c)
	}
	e.metrics.count(&c)
	return nil
}

// enrich resolves one record's addresses against s.
func (e *Enricher) enrich(r *flow.Record, s *snapshot, c *counts) {
	if r.SourceAddress.IsValid() {
		ep := s.ips.get(r.SourceAddress)
		if ep != nil {
			e.set(r, &r.SourcePodName, flow.SourcePodName, ep.podName)
			e.set(r, &r.SourcePodNamespace, flow.SourcePodNamespace, ep.podNamespace)
			e.set(r, &r.SourceNodeName, flow.SourceNodeName, ep.nodeName)
			e.set(r, &r.SourcePodLabels, flow.SourcePodLabels, ep.labels)
		}
		c.add(ep, ep != nil)
	}
	if r.DestinationAddress.IsValid() {
		ep := s.ips.get(r.DestinationAddress)
		if ep != nil {
			e.set(r, &r.DestinationPodName, flow.DestinationPodName, ep.podName)
			e.set(r, &r.DestinationPodNamespace, flow.DestinationPodNamespace, ep.podNamespace)
			e.set(r, &r.DestinationNodeName, flow.DestinationNodeName, ep.nodeName)
			e.set(r, &r.DestinationPodLabels, flow.DestinationPodLabels, ep.labels)
		}
		// A Pod or Node address is no ClusterIP: look the Service up only
		// when the destination is unknown or the exporter named the
		// ClusterIP.
		svc := false
		if ep == nil || r.DestinationClusterIP.IsValid() {
			svc = e.service(r, s)
		}
		c.add(ep, ep != nil || svc)
	}
}

// service resolves the destination Service port: by the record's
// destinationClusterIP and destinationServicePort when an exporter such as
// Antrea sent them (the flow after DNAT), else by the destination address
// and port (a flow observed before DNAT).
func (e *Enricher) service(r *flow.Record, s *snapshot) bool {
	addr, port := r.DestinationAddress, r.DestinationTransportPort
	viaDst := !r.DestinationClusterIP.IsValid()
	if !viaDst {
		addr = r.DestinationClusterIP
		if r.Present.Has(flow.DestinationServicePort) {
			port = r.DestinationServicePort
		}
	}
	name := s.services.get(addr, port, r.ProtocolIdentifier)
	if name == "" {
		return false
	}
	e.set(r, &r.DestinationServicePortName, flow.DestinationServicePortName, name)
	if viaDst {
		r.DestinationClusterIP = r.DestinationAddress
		r.Present.Add(flow.DestinationClusterIP)
	}
	if e.overwrite || !r.Present.Has(flow.DestinationServicePort) {
		r.DestinationServicePort = port
		r.Present.Add(flow.DestinationServicePort)
	}
	return true
}

// set writes v into *dst (field f of r) when v is known and the field is
// empty or overwrite is on.
func (e *Enricher) set(r *flow.Record, dst *string, f flow.FieldID, v string) {
	if v != "" && (*dst == "" || e.overwrite) {
		*dst = v
		r.Present.Add(f)
	}
}

// metrics are the plugin's own Prometheus metrics.
type metrics struct {
	hit, miss, stale prometheus.Counter
	entries          *prometheus.GaugeVec
	truncated        prometheus.Counter
	reloads          *prometheus.CounterVec
	events           *prometheus.CounterVec
	collectors       []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_enrich_podlabels_lookups_total",
		Help: "Address lookups (two per record: source and destination) by result: hit, miss, or stale (a deleted or terminated Pod).",
	}, []string{"result"})
	m := &metrics{
		hit:   lookups.WithLabelValues("hit"),
		miss:  lookups.WithLabelValues("miss"),
		stale: lookups.WithLabelValues("stale"),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weir_enrich_podlabels_index_entries",
			Help: "Addresses in the lookup index by kind: pod, node, stale (deleted or terminated Pods), and service ports.",
		}, []string{"kind"}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_enrich_podlabels_labels_truncated_total",
			Help: "Pod labels left out of the labels JSON because of labels.max_bytes, counted per Pod update.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_enrich_podlabels_file_reloads_total",
			Help: "Loads of the file backend's file by result: ok or error (the previous content stays in use).",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_enrich_podlabels_watch_events_total",
			Help: "Watch events applied from the cluster by kind (pod, node, service) and type (add, update, delete).",
		}, []string{"kind", "type"}),
	}
	for _, c := range []prometheus.Collector{lookups, m.entries, m.truncated, m.reloads, m.events} {
		if err := reg.Register(c); err != nil {
			m.unregister(reg)
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("%w (one %s per pipeline)", err, ID)
			}
			return nil, err
		}
		m.collectors = append(m.collectors, c)
	}
	return m, nil
}

// unregister removes what newMetrics registered, for a New that fails.
func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors {
		reg.Unregister(c)
	}
}

func (m *metrics) count(c *counts) {
	if c.hit > 0 {
		m.hit.Add(float64(c.hit))
	}
	if c.miss > 0 {
		m.miss.Add(float64(c.miss))
	}
	if c.stale > 0 {
		m.stale.Add(float64(c.stale))
	}
}

func (m *metrics) setEntries(pods, nodes, services, stale int) {
	m.entries.WithLabelValues("pod").Set(float64(pods))
	m.entries.WithLabelValues("node").Set(float64(nodes))
	m.entries.WithLabelValues("service").Set(float64(services))
	m.entries.WithLabelValues("stale").Set(float64(stale))
}

var (
	_ plugin.Processor = (*Enricher)(nil)
	_ plugin.Config    = (*Config)(nil)
)
