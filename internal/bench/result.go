package bench

import (
	"math"
	"slices"
)

// Result is one run of a chain over an input.
type Result struct {
	// Chain labels the chain (its config path); Input describes the input.
	Chain string `json:"chain"`
	Input string `json:"input"`
	// BatchSize is the records per batch fed.
	BatchSize int `json:"batch_size"`
	// WithIO is true when exporters ran after the processors.
	WithIO bool `json:"with_io"`
	// Records and Batches are what the measured pass fed the chain;
	// WarmupRecords were fed before it and are in no figure.
	Records       uint64 `json:"records"`
	Batches       uint64 `json:"batches"`
	WarmupRecords uint64 `json:"warmup_records"`
	// WallSeconds is the measured pass's wall time, including refilling
	// batches from the input (not part of any stage's time).
	WallSeconds float64 `json:"wall_seconds"`
	// Stages are the chain's stages in order: processors, then exporters.
	Stages []StageResult `json:"stages"`
	// Total is the whole chain: records in are the input fed, records out
	// what reached the sink, time the sum of the stages' times.
	Total StageResult `json:"total"`
	// Sink counts what left the chain.
	Sink SinkResult `json:"sink"`
	// Memory is the run's peak memory.
	Memory Memory `json:"memory"`
}

// StageResult are one stage's (or the whole chain's) figures.
type StageResult struct {
	// Name is the stage's config position ("processors[0]", "chain");
	// Plugin its plugin ID; Kind "processor", "exporter" or "chain".
	Name   string `json:"name"`
	Plugin string `json:"plugin,omitempty"`
	Kind   string `json:"kind"`
	// In and Out are records received and passed on; Dropped = In - Out,
	// the records the stage filtered out.
	In      uint64 `json:"records_in"`
	Out     uint64 `json:"records_out"`
	Dropped uint64 `json:"records_dropped"`
	// Errored counts the records of batches the stage returned an error
	// for; as in the engine, such a batch goes on as the stage left it.
	Errored uint64 `json:"records_errored"`
	// FirstError is the first error the stage returned, if any.
	FirstError string `json:"first_error,omitempty"`
	// Batches is the number of non-empty batches the stage got.
	Batches uint64 `json:"batches"`
	// Seconds is the time spent in Process/Export.
	Seconds float64 `json:"seconds"`
	// RecordsPerSecond is In / Seconds.
	RecordsPerSecond float64 `json:"records_per_second"`
	// NsPerRecord is Seconds / In, in nanoseconds; P50 and P99 are
	// percentiles of the per-batch ns/record (batch time / records in).
	NsPerRecord    float64 `json:"ns_per_record"`
	NsPerRecordP50 float64 `json:"ns_per_record_p50"`
	NsPerRecordP99 float64 `json:"ns_per_record_p99"`
	// AllocsPerRecord and BytesPerRecord are heap allocations (count and
	// bytes) per record received, from the allocation pass over
	// AllocRecords records.
	AllocsPerRecord float64 `json:"allocs_per_record"`
	BytesPerRecord  float64 `json:"alloc_bytes_per_record"`
	AllocRecords    uint64  `json:"alloc_records"`
}

// SinkResult counts what the counting sink received.
type SinkResult struct {
	Records uint64 `json:"records"`
	Batches uint64 `json:"batches"`
}

// Memory is a run's peak memory.
type Memory struct {
	// PeakRSSBytes is the process's peak resident set (VmHWM), reset before
	// the run where the kernel allows it; 0 where unknown (not Linux).
	PeakRSSBytes uint64 `json:"peak_rss_bytes"`
	// PeakRSSReset says whether the peak was reset before the run; if not,
	// it is the process's peak since it started.
	PeakRSSReset bool `json:"peak_rss_reset"`
	// PeakHeapBytes is the largest Go heap in use (HeapInuse) sampled
	// during the run, every few batches.
	PeakHeapBytes uint64 `json:"peak_heap_bytes"`
}

// stageAcc accumulates one stage's samples during a run.
type stageAcc struct {
	in, out, errored, batches uint64
	nanos                     int64
	samples                   []float64 // ns/record per batch
	firstErr                  string
	allocs, allocBytes        uint64
	allocIn                   uint64
}

func (a *stageAcc) result(name, pluginID, kind string) StageResult {
	r := StageResult{
		Name: name, Plugin: pluginID, Kind: kind,
		In: a.in, Out: a.out, Errored: a.errored, FirstError: a.firstErr,
		Batches: a.batches, Seconds: float64(a.nanos) / 1e9,
		AllocRecords: a.allocIn,
	}
	if a.in >= a.out {
		r.Dropped = a.in - a.out
	}
	if a.in > 0 {
		r.NsPerRecord = float64(a.nanos) / float64(a.in)
	}
	if a.nanos > 0 {
		r.RecordsPerSecond = float64(a.in) / r.Seconds
	}
	slices.Sort(a.samples)
	r.NsPerRecordP50 = percentile(a.samples, 0.50)
	r.NsPerRecordP99 = percentile(a.samples, 0.99)
	if a.allocIn > 0 {
		r.AllocsPerRecord = float64(a.allocs) / float64(a.allocIn)
		r.BytesPerRecord = float64(a.allocBytes) / float64(a.allocIn)
	}
	return r
}

// percentile returns the nearest-rank q-quantile of sorted samples, 0 for
// none.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Spread summarises repeated measurements.
type Spread struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
	Stddev float64 `json:"stddev"` // sample standard deviation; 0 for one value
}

// NewSpread summarises xs.
func NewSpread(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sp := Spread{N: len(s), Min: s[0], Max: s[len(s)-1]}
	if n := len(s); n%2 == 1 {
		sp.Median = s[n/2]
	} else {
		sp.Median = (s[n/2-1] + s[n/2]) / 2
	}
	var sum float64
	for _, x := range s {
		sum += x
	}
	sp.Mean = sum / float64(len(s))
	if len(s) > 1 {
		var ss float64
		for _, x := range s {
			ss += (x - sp.Mean) * (x - sp.Mean)
		}
		sp.Stddev = math.Sqrt(ss / float64(len(s)-1))
	}
	return sp
}
