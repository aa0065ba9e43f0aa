package bench

import (
	"context"
	"errors"
	"testing"
)

func TestCompare(t *testing.T) {
	spec, _ := ParseSpec("flows=5000")
	in := Generate(spec, 1)
	base := newTestChain(t, `
pipeline:
  batch: {size: 64}
  processors:
    - filter.protocol: {protocols: [tcp]}
`, ChainOptions{Name: "base"})
	other := newTestChain(t, twoStages, ChainOptions{Name: "other", BatchSize: 64})
	var rounds []int
	cmp, err := Compare(context.Background(), base, other, in, 3, RunOptions{AllocBatches: 2}, func(r int) { rounds = append(rounds, r) })
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.Rounds) != 3 || len(rounds) != 3 || rounds[2] != 3 {
		t.Fatalf("%d rounds, progress %v; want 3", len(cmp.Rounds), rounds)
	}
	if cmp.Base != "base" || cmp.Other != "other" {
		t.Errorf("labels %q, %q", cmp.Base, cmp.Other)
	}
	for i, r := range cmp.Rounds {
		checkAddsUp(t, r.Base, 5000)
		checkAddsUp(t, r.Other, 5000)
		if r.Ratio <= 0 || r.RatioMean <= 0 {
			t.Errorf("round %d: ratio %v, mean ratio %v", i+1, r.Ratio, r.RatioMean)
		}
		if want := r.Other.Total.NsPerRecordP50 / r.Base.Total.NsPerRecordP50; r.Ratio != want {
			t.Errorf("round %d: ratio %v, want %v", i+1, r.Ratio, want)
		}
		if (i == 0) != (r.Base.WarmupRecords > 0) || (i == 0) != (r.Other.WarmupRecords > 0) {
			t.Errorf("round %d: warm-up %d/%d; want one in the first round only", i+1, r.Base.WarmupRecords, r.Other.WarmupRecords)
		}
	}
	if cmp.Ratio.N != 3 || cmp.Ratio.Min > cmp.Ratio.Median || cmp.Ratio.Median > cmp.Ratio.Max {
		t.Errorf("ratio spread %+v", cmp.Ratio)
	}
	// Both chains filtered the same records: the same TCP count survives.
	if a, b := cmp.Rounds[0].Base.Stages[0].Out, cmp.Rounds[0].Other.Stages[0].Out; a == 0 || b == 0 {
		t.Errorf("filters kept %d and %d", a, b)
	}
	if med := cmp.Median(); med.Base == nil || med.Ratio != cmp.Ratio.Median {
		t.Errorf("median round ratio %v, spread median %v", med.Ratio, cmp.Ratio.Median)
	}
}

func TestCompareErrors(t *testing.T) {
	spec, _ := ParseSpec("flows=100")
	c := newTestChain(t, twoStages, ChainOptions{})
	d := newTestChain(t, twoStages, ChainOptions{})
	if _, err := Compare(context.Background(), c, d, Generate(spec, 1), 0, RunOptions{}, nil); !errors.Is(err, ErrRounds) {
		t.Errorf("0 rounds: %v", err)
	}
	if _, err := Compare(context.Background(), c, c, Generate(spec, 1), 1, RunOptions{}, nil); err == nil {
		t.Error("a chain compared with itself: no error")
	}
}

func TestSpread(t *testing.T) {
	sp := NewSpread([]float64{3, 1, 2, 4})
	if sp.N != 4 || sp.Min != 1 || sp.Max != 4 || sp.Median != 2.5 || sp.Mean != 2.5 {
		t.Errorf("spread %+v", sp)
	}
	if sp.Stddev < 1.29 || sp.Stddev > 1.30 { // sqrt(5/3)
		t.Errorf("stddev %v, want 1.291", sp.Stddev)
	}
	if one := NewSpread([]float64{7}); one.Median != 7 || one.Stddev != 0 {
		t.Errorf("one value: %+v", one)
	}
	if got := percentile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99); got != 10 {
		t.Errorf("p99 of 1..10 = %v", got)
	}
	if got := percentile([]float64{1, 2, 3, 4}, 0.5); got != 2 {
		t.Errorf("p50 of 1..4 = %v", got)
	}
}
