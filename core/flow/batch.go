package flow

import "math/bits"

// DefaultBatchSize is the number of records a batch holds by default.
const DefaultBatchSize = 256

// Batch is an ordered group of records moving through the pipeline as one
// unit. Records holds the live records; a filter removes records with
// [Batch.Retain].
//
// # Notes
//   - A batch has one owner at a time. A stage must not retain the batch, its
//     records or their Extra values after Process/Export returns.
//   - Exporters share a batch read-only; processors may mutate it.
//   - Record slots and the byte arena are reused after [Batch.Reset], so
//     steady-state decoding into a batch does not allocate.
type Batch struct {
	// Records are the live records, in arrival order.
	Records []*Record

	slots []*Record // every slot ever allocated; Records is a permutation prefix
	arena []byte    // backing store for Extra values
}

// NewBatch returns an empty batch with room for capacity records.
func NewBatch(capacity int) *Batch {
	if capacity <= 0 {
		capacity = DefaultBatchSize
	}
	return &Batch{
		Records: make([]*Record, 0, capacity),
		slots:   make([]*Record, 0, capacity),
		arena:   make([]byte, 0, capacity*32),
	}
}

// Len returns the number of live records.
func (b *Batch) Len() int { return len(b.Records) }

// Append adds an empty record at the end and returns it for filling. The
// record is reset, and its Extra slice keeps its capacity from earlier use.
func (b *Batch) Append() *Record {
	n := len(b.Records)
	if n < len(b.slots) {
		b.Records = b.Records[:n+1]
		r := b.Records[n]
		if r == nil {
			r = b.slots[n]
			b.Records[n] = r
		}
		r.Reset()
		return r
	}
	r := &Record{}
	b.slots = append(b.slots, r)
	b.Records = append(b.Records, r)
	return r
}

// Unappend removes the last record, undoing the [Batch.Append] of a record
// that could not be filled.
func (b *Batch) Unappend() {
	if n := len(b.Records); n > 0 {
		b.Records = b.Records[:n-1]
	}
}

// Retain keeps, in order, the records for which keep returns true and
// returns how many it removed.
func (b *Batch) Retain(keep func(*Record) bool) (removed int) {
	recs := b.Records
	n := 0
	for i, r := range recs {
		if keep(r) {
			if i != n {
				// Swap so the dropped slot stays reachable for reuse.
				recs[n], recs[i] = r, recs[n]
			}
			n++
		}
	}
	b.Records = recs[:n]
	return len(recs) - n
}

// RetainMask keeps the records whose bit is set in keep (bit i%64 of
// keep[i/64] for record i) and returns how many it removed. Records past
// the end of keep are removed.
func (b *Batch) RetainMask(keep []uint64) (removed int) {
	recs := b.Records
	if m := 64 * len(keep); m < len(recs) {
		recs = recs[:m]
	}
	// A leading run of whole words kept moves nothing.
	i := 0
	for i+64 <= len(recs) && keep[i>>6] == ^uint64(0) {
		i += 64
	}
	n := i
	// Then visit the kept records only, a word of verdicts at a time.
	for ; i < len(recs); i += 64 {
		w := keep[i>>6]
		if rest := len(recs) - i; rest < 64 {
			w &= 1<<rest - 1
		}
		for ; w != 0; w &= w - 1 {
			j := i + bits.TrailingZeros64(w)
			// Swap so the dropped slot stays reachable for reuse.
			recs[n], recs[j] = recs[j], recs[n]
			n++
		}
	}
	removed = len(b.Records) - n
	b.Records = b.Records[:n]
	return removed
}

// Reset empties the batch for reuse. Extra values of earlier records become
// invalid.
func (b *Batch) Reset() {
	b.Records = b.Records[:len(b.slots)]
	copy(b.Records, b.slots)
	b.Records = b.Records[:0]
	b.arena = b.arena[:0]
}

// CopyBytes copies p into the batch's arena and returns the copy, which is
// valid until [Batch.Reset].
func (b *Batch) CopyBytes(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	start := len(b.arena)
	if cap(b.arena)-start < len(p) {
		// Grow into a fresh array: values already handed out keep pointing
		// at the old one, which stays alive while they do.
		grown := make([]byte, 0, 2*cap(b.arena)+len(p))
		b.arena = grown
		start = 0
	}
	b.arena = append(b.arena, p...)
	return b.arena[start : start+len(p) : start+len(p)]
}
