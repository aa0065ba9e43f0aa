package iecompat

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "enrich.iecompat"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "IE compatibility shims: rename, re-width, drop, derive or default IEs per exporter version",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Shims applies compiled shims to records. It mutates records in place,
// never drops one, and is safe for concurrent use.
type Shims struct {
	in      interner
	shims   []compiledShim
	matched []prometheus.Counter
	skipped [][numReasons]prometheus.Counter
}

// localShims bounds the per-call counters kept on the stack.
const localShims = 32

// New loads cfg's shim files (relative to set.BaseDir), compiles every shim
// and registers the metrics.
func New(cfg *Config, set plugin.Settings) (*Shims, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	shims, err := loadShims(cfg, set.BaseDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	return build(shims, set.Metrics), nil
}

// build makes a Shims of compiled shims whose metrics are registered with
// reg (nil: not registered).
func build(shims []compiledShim, reg prometheus.Registerer) *Shims {
	s := &Shims{shims: shims}
	matched := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_enrich_iecompat_records_matched_total",
		Help: "Records a shim selected.",
	}, []string{"shim"})
	skipped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_enrich_iecompat_actions_skipped_total",
		Help: "Shim actions not applied to a record: conflict (target already set), overflow (value does not fit), convert (value of the wrong type).",
	}, []string{"shim", "reason"})
	if reg != nil {
		matched = register(reg, matched)
		skipped = register(reg, skipped)
	}
	for _, sh := range shims {
		s.matched = append(s.matched, matched.WithLabelValues(sh.name))
		var sk [numReasons]prometheus.Counter
		for r := errReason(1); r < numReasons; r++ {
			sk[r] = skipped.WithLabelValues(sh.name, reasonNames[r])
		}
		s.skipped = append(s.skipped, sk)
	}
	return s
}

// register registers c, or returns the collector already registered under
// its name (two instances of the plugin in one pipeline).
func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, isVec := are.ExistingCollector.(*prometheus.CounterVec); isVec {
				return existing
			}
		}
	}
	return c
}

func (s *Shims) Start(context.Context) error    { return nil }
func (s *Shims) Shutdown(context.Context) error { return nil }

// Process applies every shim, in order, to every record it selects.
func (s *Shims) Process(_ context.Context, b *flow.Batch) error {
	if len(s.shims) == 0 {
		return nil
	}
	// Counters are added once per batch: a shared atomic per record would
	// cost more than the shims themselves.
	var (
		stackMatched [localShims]int
		stackSkipped [localShims][numReasons]int
		matched      = stackMatched[:]
		skipped      = stackSkipped[:]
	)
	if len(s.shims) > localShims {
		matched = make([]int, len(s.shims))
		skipped = make([][numReasons]int, len(s.shims))
	}
	// Records of a batch mostly come from one exporter and observation
	// domain, so which shims select them by source is computed once per
	// source change.
	var (
		lastExporter netip.AddrPort
		lastDomain   uint32
		bySource     uint64 // bit i: shim i matches the source
		cached       bool
		cacheable    = len(s.shims) <= 64
	)
	w := writer{b: b, in: &s.in}
	for _, r := range b.Records {
		if cacheable && (!cached || r.Exporter != lastExporter || r.ObservationDomainID != lastDomain) {
			lastExporter, lastDomain, cached, bySource = r.Exporter, r.ObservationDomainID, true, 0
			for i := range s.shims {
				if s.shims[i].match.matchesSource(r) {
					bySource |= 1 << i
				}
			}
		}
		for i := range s.shims {
			sh := &s.shims[i]
			if cacheable {
				if bySource&(1<<i) == 0 {
					continue
				}
			} else if !sh.match.matchesSource(r) {
				continue
			}
			if !sh.match.matchesIEs(r) {
				continue
			}
			matched[i]++
			for _, o := range sh.ops {
				if reason := o.apply(r, w); reason != ok {
					skipped[i][reason]++
				}
			}
		}
	}
	for i := range s.shims {
		if matched[i] > 0 {
			s.matched[i].Add(float64(matched[i]))
		}
		for reason := errReason(1); reason < numReasons; reason++ {
			if n := skipped[i][reason]; n > 0 {
				s.skipped[i][reason].Add(float64(n))
			}
		}
	}
	return nil
}

var _ plugin.Processor = (*Shims)(nil)
