package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
)

// Comparison is [Compare]'s result: both chains' runs, round by round, and
// the ratio of their costs.
type Comparison struct {
	// Base and Other are the two chains' labels.
	Base  string `json:"base"`
	Other string `json:"other"`
	// Rounds holds each round's pair of runs.
	Rounds []Round `json:"rounds"`
	// Ratio is Other's chain ns/record divided by Base's, spread over the
	// rounds: 2 means Other costs twice as much per record. It compares
	// the median per-batch ns/record (p50), which a batch preempted by
	// another process does not move.
	Ratio Spread `json:"ratio"`
	// RatioMean is the same for the mean ns/record (total time / records),
	// the throughput figure, which preempted batches do move.
	RatioMean Spread `json:"ratio_mean"`
	// BaseNsPerRecord and OtherNsPerRecord spread each chain's p50
	// ns/record over the rounds.
	BaseNsPerRecord  Spread `json:"base_ns_per_record"`
	OtherNsPerRecord Spread `json:"other_ns_per_record"`
}

// Round is one round of a comparison: the same records fed to both chains
// back to back.
type Round struct {
	Base  *Result `json:"base"`
	Other *Result `json:"other"`
	// Ratio is Other.Total.NsPerRecordP50 / Base.Total.NsPerRecordP50;
	// RatioMean the same for NsPerRecord.
	Ratio     float64 `json:"ratio"`
	RatioMean float64 `json:"ratio_mean"`
}

// Median returns the round whose ratio is the median (the lower middle
// one for an even count).
func (c *Comparison) Median() Round {
	if len(c.Rounds) == 0 {
		return Round{}
	}
	idx := make([]int, len(c.Rounds))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch ra, rb := c.Rounds[a].Ratio, c.Rounds[b].Ratio; {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return 0
	})
	return c.Rounds[idx[(len(idx)-1)/2]]
}

// ErrRounds is returned by Compare for fewer than one round.
var ErrRounds = errors.New("rounds must be at least 1")

// Compare runs base and other on the same input for rounds rounds. Within
// a round the two chains are fed alternately batch by batch — each gets
// the whole input (or opts.Records, or opts.Duration of its own time),
// other starting half-way through it —
// so noise from the machine (other processes, frequency changes) falls on
// both alike; the order within each pair of batches swaps every round.
// Each chain's first round gets the warm-up in opts; later rounds skip
// it. Peak RSS and Go heap are shared by the pair. progress, if set, is
// called at the start of every round; opts.Progress gets the records fed
// and time spent by both chains together in the round.
func Compare(ctx context.Context, base, other *Chain, in *Input, rounds int, opts RunOptions, progress func(round int)) (*Comparison, error) {
	if rounds < 1 {
		return nil, fmt.Errorf("compare: %d: %w", rounds, ErrRounds)
	}
	if base == other {
		return nil, errors.New("compare: base and other are the same chain")
	}
	cmp := &Comparison{Base: base.name, Other: other.name}
	var ratios, ratiosMean, baseNs, otherNs []float64
	for round := 1; round <= rounds; round++ {
		if progress != nil {
			progress(round)
		}
		o := opts
		if round > 1 {
			o.Warmup = -1
		}
		rb, err := base.newRunner(ctx, in, o)
		if err != nil {
			return nil, fmt.Errorf("compare round %d: %w", round, err)
		}
		ro, err := other.newRunner(ctx, in, o)
		if err != nil {
			return nil, fmt.Errorf("compare round %d: %w", round, err)
		}
		// Feed other from half-way through the input: fed the same records
		// right after base, a stage shared by both chains would find its
		// branch predictor trained on exactly that batch and look faster
		// than it is. Both still get every record once per pass.
		ro.f.pos = (ro.f.pos + in.Len()/2) % in.Len()
		pair := []*runner{rb, ro}
		if round%2 == 0 {
			pair = []*runner{ro, rb}
		}
		runtime.GC()
		reset := resetPeakRSS()
		heap := newHeapSampler()
		heap.sample()
		var steps uint64
		for !rb.done() || !ro.done() {
			for _, r := range pair {
				if r.done() {
					continue
				}
				if err := r.step(ctx); err != nil {
					return nil, fmt.Errorf("compare round %d: %w", round, err)
				}
			}
			steps++
			if steps%heapEvery == 0 {
				heap.sample()
			}
			if opts.Progress != nil && steps%progressEvery == 0 {
				opts.Progress(rb.fed+ro.fed, rb.wall+ro.wall)
			}
		}
		heap.sample()
		if opts.Progress != nil {
			opts.Progress(rb.fed+ro.fed, rb.wall+ro.wall)
		}
		mem := Memory{PeakRSSBytes: peakRSS(), PeakRSSReset: reset, PeakHeapBytes: heap.peak}
		rb.res.Memory, ro.res.Memory = mem, mem
		resBase, err := rb.end(ctx)
		if err != nil {
			return nil, fmt.Errorf("compare round %d: %w", round, err)
		}
		resOther, err := ro.end(ctx)
		if err != nil {
			return nil, fmt.Errorf("compare round %d: %w", round, err)
		}
		rd := Round{Base: resBase, Other: resOther}
		if b := resBase.Total.NsPerRecordP50; b > 0 {
			rd.Ratio = resOther.Total.NsPerRecordP50 / b
		}
		if b := resBase.Total.NsPerRecord; b > 0 {
			rd.RatioMean = resOther.Total.NsPerRecord / b
		}
		cmp.Rounds = append(cmp.Rounds, rd)
		ratios = append(ratios, rd.Ratio)
		ratiosMean = append(ratiosMean, rd.RatioMean)
		baseNs = append(baseNs, resBase.Total.NsPerRecordP50)
		otherNs = append(otherNs, resOther.Total.NsPerRecordP50)
	}
	cmp.Ratio = NewSpread(ratios)
	cmp.RatioMean = NewSpread(ratiosMean)
	cmp.BaseNsPerRecord = NewSpread(baseNs)
	cmp.OtherNsPerRecord = NewSpread(otherNs)
	return cmp, nil
}
