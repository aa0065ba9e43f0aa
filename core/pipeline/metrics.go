package pipeline

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/plugin"
)

var (
	descIn = prometheus.NewDesc("weir_stage_records_in_total", "Records received by the stage.",
		[]string{"pipeline", "stage", "plugin"}, nil)
	descOut = prometheus.NewDesc("weir_stage_records_out_total", "Records passed on by the stage.",
		[]string{"pipeline", "stage", "plugin"}, nil)
	descDropped = prometheus.NewDesc("weir_stage_records_dropped_total", "Records dropped by the stage, by reason.",
		[]string{"pipeline", "stage", "plugin", "reason"}, nil)
	descHeld = prometheus.NewDesc("weir_stage_records_held_total", "Records a stage took in to emit later, merged or as they were (an aggregator's input).",
		[]string{"pipeline", "stage", "plugin"}, nil)
	descErrored = prometheus.NewDesc("weir_stage_records_errored_total", "Records in batches the stage failed on and passed on unchanged (on_error: fail-open), by reason.",
		[]string{"pipeline", "stage", "plugin", "reason"}, nil)
	descQueue = prometheus.NewDesc("weir_queue_batches", "Batches waiting in a queue: stage=\"queue\" is the queue from the sources to the processors, an exporter's label its own queue.",
		[]string{"pipeline", "stage"}, nil)
	descQueueCap = prometheus.NewDesc("weir_queue_capacity_batches", "Capacity of a queue, in batches (pipeline.queue.size, pipeline.queue.exporter_size).",
		[]string{"pipeline", "stage"}, nil)
)

// collector exposes the running stages' counters as the standard
// weir_stage_* metrics and the queue depths, reading the pipeline's current
// graph at every scrape, so a reload needs no (un)registration.
type collector struct{ p *Pipeline }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIn, descOut, descDropped, descHeld, descErrored, descQueue, descQueueCap} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	p := c.p
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, st := range p.stages() {
		s := st.stats
		counter(descIn, s.In.Load(), p.name, s.Stage, s.Plugin)
		counter(descOut, s.Out.Load(), p.name, s.Stage, s.Plugin)
		counter(descDropped, s.Filtered.Load(), p.name, s.Stage, s.Plugin, "filtered")
		counter(descDropped, s.Overflow.Load(), p.name, s.Stage, s.Plugin, "queue_full")
		counter(descHeld, s.Held.Load(), p.name, s.Stage, s.Plugin)
		counter(descDropped, s.ErrorDropped.Load(), p.name, s.Stage, s.Plugin, "error")
		for r, n := range s.droppedByReason(s.Kind == "exporter") {
			counter(descDropped, n, p.name, s.Stage, s.Plugin, r)
		}
		for i, r := range plugin.Reasons {
			counter(descErrored, s.erroredBy[i].Load(), p.name, s.Stage, s.Plugin, r)
		}
	}
	gauge := func(d *prometheus.Desc, v int, stage string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), p.name, stage)
	}
	gauge(descQueue, len(p.queue), "queue")
	gauge(descQueueCap, cap(p.queue), "queue")
	p.swap.RLock()
	g := p.g
	p.swap.RUnlock()
	for _, e := range g.exporters {
		gauge(descQueue, len(e.queue), e.name)
		gauge(descQueueCap, cap(e.queue), e.name)
	}
}

// StageStats are one stage's record counters. They are the single source
// of truth: the Prometheus metrics read them.
type StageStats struct {
	// Stage is the config path, e.g. "processors[0]"; Plugin the plugin ID.
	Stage  string
	Plugin string
	Kind   string // source, processor or exporter

	In       atomic.Uint64 // records received
	Out      atomic.Uint64 // records passed on
	Filtered atomic.Uint64 // records dropped by the stage's verdict
	Errored  atomic.Uint64 // records in batches the stage failed on and passed on (fail-open), all reasons
	// ErrorDropped counts records of failed batches dropped by on_error:
	// fail-closed.
	ErrorDropped atomic.Uint64
	Overflow     atomic.Uint64 // records dropped because the stage's queue was full
	// Held counts records a plugin.Emitting processor took out of their
	// batch to emit later, merged or as they were (an aggregator's input).
	Held    atomic.Uint64
	Batches atomic.Uint64 // batches handled
	// ErrorBatches counts batches the stage failed on.
	ErrorBatches atomic.Uint64
	Nanos        atomic.Uint64 // time spent in the stage, nanoseconds

	duration prometheus.Observer
	// erroredBy splits Errored by plugin.Reasons.
	erroredBy [8]atomic.Uint64 // len(plugin.Reasons) ≤ 8
	logs      plugin.LogLimiter

	// dropBy counts records an exporter dropped, by the reason it gave (a
	// plugin.DroppedError or plugin.Outcome.Dropped).
	dropMu sync.Mutex
	dropBy map[string]*atomic.Uint64
}

// dropped returns the counter of records the stage dropped for reason,
// making it on first use. A reason the engine uses itself, or none, counts
// as "other".
func (s *StageStats) dropped(reason string) *atomic.Uint64 {
	switch reason {
	case "", "filtered", "queue_full", "error": // none, or the engine's own
		reason = "other"
	}
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	c := s.dropBy[reason]
	if c == nil {
		if s.dropBy == nil {
			s.dropBy = map[string]*atomic.Uint64{}
		}
		c = new(atomic.Uint64)
		s.dropBy[reason] = c
	}
	return c
}

// droppedByReason copies dropBy; with all, every shared reason
// (plugin.DropReasons) is there, 0 when unused.
func (s *StageStats) droppedByReason(all bool) map[string]uint64 {
	m := map[string]uint64{}
	if all {
		for _, r := range plugin.DropReasons {
			m[r] = 0
		}
	}
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	for r, c := range s.dropBy {
		m[r] = c.Load()
	}
	return m
}

// errored returns the counter of records errored for reason; an unknown
// reason counts as plugin_error.
func (s *StageStats) errored(reason string) *atomic.Uint64 {
	for i, r := range plugin.Reasons {
		if r == reason {
			return &s.erroredBy[i]
		}
	}
	return s.errored(plugin.ReasonPluginError)
}

// Snapshot is a point-in-time copy of a stage's counters.
type Snapshot struct {
	Stage, Plugin, Kind                                  string
	In, Out, Filtered, Errored, Overflow, Batches, Nanos uint64
	Held                                                 uint64
	// ErrorDropped counts records of failed batches dropped by on_error:
	// fail-closed; ErroredBy splits Errored by reason.
	ErrorDropped uint64
	ErroredBy    map[string]uint64
	// Dropped counts records an exporter dropped, by reason
	// (plugin.DroppedError, plugin.Outcome).
	Dropped map[string]uint64
}

// Snapshot copies the counters.
func (s *StageStats) Snapshot() Snapshot {
	return Snapshot{
		Stage: s.Stage, Plugin: s.Plugin, Kind: s.Kind,
		In: s.In.Load(), Out: s.Out.Load(), Filtered: s.Filtered.Load(),
		Errored: s.Errored.Load(), Overflow: s.Overflow.Load(),
		Batches: s.Batches.Load(), Nanos: s.Nanos.Load(), Held: s.Held.Load(),
		ErrorDropped: s.ErrorDropped.Load(), ErroredBy: s.erroredByReason(),
		Dropped: s.droppedByReason(false),
	}
}

func (s *StageStats) erroredByReason() map[string]uint64 {
	m := map[string]uint64{}
	for i, r := range plugin.Reasons {
		if n := s.erroredBy[i].Load(); n > 0 {
			m[r] = n
		}
	}
	return m
}

func newDurationHistogram(reg prometheus.Registerer) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "weir_stage_process_duration_seconds",
		Help:    "Time a stage spends on one batch.",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12),
	}, []string{"pipeline", "stage", "plugin"})
	reg.MustRegister(h)
	return h
}
