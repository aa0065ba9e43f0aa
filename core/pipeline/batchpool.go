package pipeline

import (
	"sync"

	"github.com/weir-flow/weir/core/flow"
)

// batchPool keeps released batches, with their records and arenas, for
// reuse. Unlike a sync.Pool it is not emptied by the garbage collector: a
// batch holds a few hundred records of ~600 bytes, and refilling a pool
// that every GC cycle empties allocated them again, which caused the next
// GC (seen in a profile of the forwarding path at 1 M records/s:
// allocation and GC scanning took a tenth of the CPU).
//
// It is a stack: Get returns the batch released last, whose ~150 KB are
// the likeliest to be still in the CPU's cache, where a queue would hand
// out the coldest one.
type batchPool struct {
	size int
	keep int

	mu   sync.Mutex
	free []*flow.Batch
}

// newBatchPool keeps up to keep batches of size records.
func newBatchPool(size, keep int) *batchPool {
	return &batchPool{size: size, keep: keep}
}

// Get returns an empty batch.
func (p *batchPool) Get() *flow.Batch {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return flow.NewBatch(p.size)
}

// Put keeps b, which the caller has reset, or lets the GC have it when
// the pool is full.
func (p *batchPool) Put(b *flow.Batch) {
	p.mu.Lock()
	if len(p.free) < p.keep {
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
}
