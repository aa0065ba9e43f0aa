package flow

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// keepPatterns are verdict patterns for n records: all, none, every other
// pair (as a protocol filter keeping TCP and UDP sees mixed traffic), and
// random.
func keepPatterns(n int) map[string][]bool {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	p := map[string][]bool{"all": {}, "none": {}, "pairs": {}, "random": {}}
	for i := range n {
		p["all"] = append(p["all"], true)
		p["none"] = append(p["none"], false)
		p["pairs"] = append(p["pairs"], i%4 < 2)
		p["random"] = append(p["random"], rng.IntN(2) == 0)
	}
	return p
}

func numbered(n int) *Batch {
	b := NewBatch(n)
	for i := range n {
		b.Append().IngressInterface = uint32(i)
	}
	return b
}

// TestRetain checks that Retain and RetainMask keep the kept records in
// order and leave every dropped slot in the batch's capacity for reuse.
func TestRetain(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 65, 200} {
		for name, keep := range keepPatterns(n) {
			var want []uint32
			for i, k := range keep {
				if k {
					want = append(want, uint32(i))
				}
			}
			mask := make([]uint64, (n+63)/64)
			for i, k := range keep {
				if k {
					mask[i>>6] |= 1 << (i & 63)
				}
			}
			for _, how := range []string{"Retain", "RetainMask"} {
				b := numbered(n)
				var removed int
				if how == "Retain" {
					removed = b.Retain(func(r *Record) bool { return keep[r.IngressInterface] })
				} else {
					removed = b.RetainMask(mask)
				}
				var got []uint32
				for _, r := range b.Records {
					got = append(got, r.IngressInterface)
				}
				if !slices.Equal(got, want) || removed != n-len(want) {
					t.Fatalf("%s n=%d %s: kept %v (removed %d), want %v", how, n, name, got, removed, want)
				}
				all := b.Records[:n]
				seen := make([]bool, n)
				for _, r := range all {
					seen[r.IngressInterface] = true
				}
				if slices.Contains(seen, false) {
					t.Fatalf("%s n=%d %s: a dropped record's slot was lost", how, n, name)
				}
			}
		}
	}
}

func BenchmarkRetain(b *testing.B) {
	for _, n := range []int{256, 1024} {
		for _, name := range []string{"all", "pairs", "random"} {
			keep := keepPatterns(n)[name]
			mask := make([]uint64, (n+63)/64)
			for i, k := range keep {
				if k {
					mask[i>>6] |= 1 << (i & 63)
				}
			}
			batch := numbered(n)
			orig := slices.Clone(batch.Records)
			for _, how := range []string{"Retain", "RetainMask"} {
				b.Run(fmt.Sprintf("%s/%s/n=%d", how, name, n), func(b *testing.B) {
					for b.Loop() {
						batch.Records = batch.Records[:n]
						copy(batch.Records, orig)
						if how == "Retain" {
							batch.Retain(func(r *Record) bool { return keep[r.IngressInterface] })
						} else {
							batch.RetainMask(mask)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
				})
			}
		}
	}
}
