package pipeline

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/plugin"
)

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
}

// Snapshot copies the counters.
func (s *StageStats) Snapshot() Snapshot {
	return Snapshot{
		Stage: s.Stage, Plugin: s.Plugin, Kind: s.Kind,
		In: s.In.Load(), Out: s.Out.Load(), Filtered: s.Filtered.Load(),
		Errored: s.Errored.Load(), Overflow: s.Overflow.Load(),
		Batches: s.Batches.Load(), Nanos: s.Nanos.Load(), Held: s.Held.Load(),
		ErrorDropped: s.ErrorDropped.Load(), ErroredBy: s.erroredByReason(),
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

// register exposes the stage's counters as the standard weir_stage_*
// metrics, labelled pipeline/stage/plugin.
func (s *StageStats) register(reg prometheus.Registerer, pipeline string, hist *prometheus.HistogramVec) {
	labels := prometheus.Labels{"pipeline": pipeline, "stage": s.Stage, "plugin": s.Plugin}
	counter := func(name, help string, v *atomic.Uint64, extra prometheus.Labels) {
		l := prometheus.Labels{}
		for k, x := range labels {
			l[k] = x
		}
		for k, x := range extra {
			l[k] = x
		}
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: l,
		}, func() float64 { return float64(v.Load()) }))
	}
	counter("weir_stage_records_in_total", "Records received by the stage.", &s.In, nil)
	counter("weir_stage_records_out_total", "Records passed on by the stage.", &s.Out, nil)
	counter("weir_stage_records_dropped_total", "Records dropped by the stage, by reason.", &s.Filtered, prometheus.Labels{"reason": "filtered"})
	counter("weir_stage_records_dropped_total", "Records dropped by the stage, by reason.", &s.Overflow, prometheus.Labels{"reason": "queue_full"})
	counter("weir_stage_records_held_total", "Records a stage took in to emit later, merged or as they were (an aggregator's input).", &s.Held, nil)
	counter("weir_stage_records_dropped_total", "Records dropped by the stage, by reason.", &s.ErrorDropped, prometheus.Labels{"reason": "error"})
	for i, r := range plugin.Reasons {
		counter("weir_stage_records_errored_total", "Records in batches the stage failed on and passed on unchanged (on_error: fail-open), by reason.", &s.erroredBy[i], prometheus.Labels{"reason": r})
	}
	s.duration = hist.With(labels)
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
