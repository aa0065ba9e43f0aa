package bench

import (
	"context"
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

// BenchmarkGenerate measures the synthetic generator, per record.
func BenchmarkGenerate(b *testing.B) {
	spec, _ := ParseSpec("flows=10000")
	b.ReportAllocs()
	for b.Loop() {
		Generate(spec, 1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*spec.Flows), "ns/record")
}

// BenchmarkFill measures refilling a batch of 256 from the input, the
// feeder's untimed share of every step.
func BenchmarkFill(b *testing.B) {
	spec, _ := ParseSpec("flows=10000")
	f := &feeder{in: Generate(spec, 1).Batch}
	batch := flow.NewBatch(256)
	b.ReportAllocs()
	for b.Loop() {
		f.fill(batch, 256)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/record")
}

// BenchmarkStepOverhead measures one step of an empty chain: the refill of
// 256 records plus the runner's bookkeeping (timing, counting, samples).
// Only the stage calls are inside the timed window; this is the wall time
// a run adds around them.
func BenchmarkStepOverhead(b *testing.B) {
	spec, _ := ParseSpec("flows=10000")
	c := &Chain{name: "empty", batchSize: 256}
	r, err := c.newRunner(context.Background(), Generate(spec, 1), RunOptions{Records: 1 << 62, Warmup: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.step(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
