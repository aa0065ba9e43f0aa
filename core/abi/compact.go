package abi

import (
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// A compact answer is the RPC form of an ABI answer in which each distinct
// string an enricher sets travels once per batch: a string table, then
// 8-byte references (record, field, table index) instead of one ABI
// update entry, with the string's bytes, per record and field.
//
//	0  u32 MagicCompact ("WEIC")
//	4  u16 ABI version
//	6  u16 header size (CompactHeaderSize; a reader skips what it does not know)
//	8  u32 status (Status)
//	12 u32 records answered
//	16 u32 k: strings in the table
//	20 u32 string bytes
//	24 u32 m: string references
//	28 u32 ABI update entries, bytes
//	32 u32 ABI update entries, count
//	36 u32 message bytes
//	then, without padding:
//	  verdict words  ceil(records/64) × u64 (bit i of word i/64 keeps record i)
//	  string ends    k × u32: the end of string j in the string bytes
//	  string bytes
//	  references     m × (u32 record, u32 index<<8 | field)
//	  ABI update entries (docs/md), for what is not a table string
//	  message (UTF-8)
//
// The references apply first, in order, then the ABI updates, then the
// verdicts. An enricher that sets the same label on many records sends it
// once instead of once per record, and the host interns it once.
const MagicCompact uint32 = 'W' | 'E'<<8 | 'I'<<16 | 'C'<<24

// CompactHeaderSize is the size of a compact answer's header.
const CompactHeaderSize = 40

const (
	cStatus      = 8
	cCount       = 12
	cStrings     = 16
	cStringBytes = 20
	cRefs        = 24
	cUpdatesLen  = 28
	cUpdateCount = 32
	cMessageLen  = 36

	refSize = 8
	// maxTable bounds the string table: a reference holds the index in 24
	// bits. Further strings go out as ABI updates.
	maxTable = 1 << 24
)

// CompactWriter builds compact answers. The zero value is ready; Reset it
// before each batch. It is not safe for concurrent use.
type CompactWriter struct {
	// Updates holds the updates that are not table strings (numbers,
	// addresses, clears, Extra IEs).
	Updates Updates

	ends  []uint32
	bytes []byte
	refs  []byte
	index map[string]uint32
	// recent maps a string's data pointer and length to its table index:
	// an enricher usually sets the very same strings (cached labels) on
	// many records, and comparing a pointer is cheaper than hashing bytes.
	// Entries of earlier batches are told apart by gen, so Reset need not
	// clear them.
	recent [recentSlots]recentString
	gen    uint32
}

const recentSlots = 512 // a power of two

type recentString struct {
	p     *byte
	n     int
	gen   uint32
	index uint32
}

// Reset empties w for the next batch, keeping its capacity.
func (w *CompactWriter) Reset() {
	w.Updates.Reset()
	w.ends, w.bytes, w.refs = w.ends[:0], w.bytes[:0], w.refs[:0]
	clear(w.index)
	w.gen++
	if w.gen == 0 { // wrapped: entries of gen 0 could look current
		w.recent = [recentSlots]recentString{}
		w.gen = 1
	}
}

// SetString records that record rec's string field f becomes s.
func (w *CompactWriter) SetString(rec int, f flow.FieldID, s string) {
	i, ok := w.lookup(s)
	if !ok {
		w.Updates.SetString(rec, f, s)
		return
	}
	w.refs = le.AppendUint32(w.refs, uint32(rec))
	w.refs = le.AppendUint32(w.refs, i<<8|uint32(f))
}

// Diff appends the updates that turn before into after, as record rec,
// as [Updates.Diff] does, with strings through the table. pb is
// before.PresentSet(), or a subset the caller knows holds every present
// field of before (a packed record's Present does).
func (w *CompactWriter) Diff(rec int, before, after *flow.Record, pb flow.FieldSet) {
	diff(&w.Updates, w, rec, before, after, pb)
}

// lookup returns s's table index, adding s if it is new; ok is false when
// the table is full.
func (w *CompactWriter) lookup(s string) (uint32, bool) {
	p := unsafe.StringData(s)
	h := (uint64(uintptr(unsafe.Pointer(p))) ^ uint64(len(s))) * 0x9e3779b97f4a7c15
	slot := &w.recent[h>>(64-9)] // recentSlots = 1<<9
	if slot.p == p && slot.n == len(s) && slot.gen == w.gen && p != nil {
		return slot.index, true
	}
	i, ok := w.index[s]
	if !ok {
		if len(w.ends) >= maxTable {
			return 0, false
		}
		if w.index == nil {
			w.index = make(map[string]uint32)
		}
		i = uint32(len(w.ends))
		w.bytes = append(w.bytes, s...)
		w.ends = append(w.ends, uint32(len(w.bytes)))
		w.index[s] = i
	}
	*slot = recentString{p: p, n: len(s), gen: w.gen, index: i}
	return i, true
}

// Append appends the compact answer for a batch of count records to dst.
// verdicts may be shorter than the words count needs (missing words drop).
func (w *CompactWriter) Append(dst []byte, status Status, count int, verdicts Verdicts, message string) []byte {
	words := Words(count)
	start := len(dst)
	dst = grow(dst, CompactHeaderSize)
	h := dst[start:]
	le.PutUint32(h, MagicCompact)
	le.PutUint16(h[4:], Version)
	le.PutUint16(h[6:], CompactHeaderSize)
	le.PutUint32(h[cStatus:], uint32(status))
	le.PutUint32(h[cCount:], uint32(count))
	le.PutUint32(h[cStrings:], uint32(len(w.ends)))
	le.PutUint32(h[cStringBytes:], uint32(len(w.bytes)))
	le.PutUint32(h[cRefs:], uint32(len(w.refs)/refSize))
	le.PutUint32(h[cUpdatesLen:], uint32(len(w.Updates.Bytes())))
	le.PutUint32(h[cUpdateCount:], uint32(w.Updates.Len()))
	le.PutUint32(h[cMessageLen:], uint32(len(message)))
	for i := range words {
		var word uint64
		if i < len(verdicts) {
			word = verdicts[i]
		}
		dst = le.AppendUint64(dst, word)
	}
	for _, e := range w.ends {
		dst = le.AppendUint32(dst, e)
	}
	dst = append(dst, w.bytes...)
	dst = append(dst, w.refs...)
	dst = append(dst, w.Updates.Bytes()...)
	return append(dst, message...)
}

// CompactError returns a compact answer with status and message, for a
// batch the plugin could not process.
func CompactError(status Status, message string) []byte {
	var w CompactWriter
	return w.Append(nil, status, 0, nil, message)
}

// applyCompact is Apply for a compact answer.
func applyCompact(b *flow.Batch, buf []byte, sc *Scratch) (removed int, err error) {
	st := &sc.Strings
	if len(buf) < CompactHeaderSize {
		return 0, malformed("compact answer of %d bytes is shorter than its %d-byte header", len(buf), CompactHeaderSize)
	}
	if err := CheckVersion(le.Uint16(buf[4:])); err != nil {
		return 0, err
	}
	hs := uint64(le.Uint16(buf[6:]))
	count := uint64(le.Uint32(buf[cCount:]))
	k := uint64(le.Uint32(buf[cStrings:]))
	sb := uint64(le.Uint32(buf[cStringBytes:]))
	m := uint64(le.Uint32(buf[cRefs:]))
	ul := uint64(le.Uint32(buf[cUpdatesLen:]))
	ml := uint64(le.Uint32(buf[cMessageLen:]))
	vw := (count + 63) / 64
	if hs < CompactHeaderSize {
		return 0, malformed("compact answer header size %d, want at least %d", hs, CompactHeaderSize)
	}
	if total := hs + 8*vw + 4*k + sb + refSize*m + ul + ml; total != uint64(len(buf)) {
		return 0, malformed("compact answer of %d bytes, its header accounts for %d", len(buf), total)
	}
	vo := hs
	eo := vo + 8*vw
	so := eo + 4*k
	ro := so + sb
	uo := ro + refSize*m
	mo := uo + ul
	if s := Status(le.Uint32(buf[cStatus:])); s != StatusOK {
		return 0, &PluginError{Status: s, Message: string(buf[mo : mo+ml])}
	}
	n := b.Len()
	if count != uint64(n) {
		return 0, malformed("answer covers %d records, the batch has %d", count, n)
	}
	// Check everything before changing b.
	table := sc.table[:0]
	prev := uint64(0)
	for j := range k {
		end := uint64(le.Uint32(buf[eo+4*j:]))
		if end < prev || end > sb {
			return 0, malformed("compact answer string %d ends at %d, after %d, of %d bytes", j, end, prev, sb)
		}
		table = append(table, st.Intern(buf[so+prev:so+end]))
		prev = end
	}
	sc.table = table
	refs := buf[ro:uo]
	for off := 0; off < len(refs); off += refSize {
		rec, x := le.Uint32(refs[off:]), le.Uint32(refs[off+4:])
		f, i := x&0xff, x>>8
		switch {
		case uint64(rec) >= uint64(n):
			return 0, malformed("string reference %d: record %d of %d", off/refSize, rec, n)
		case kinds[f] != flow.KindString:
			return 0, malformed("string reference %d (record %d): field %d is not a string field", off/refSize, rec, f)
		case uint64(i) >= k:
			return 0, malformed("string reference %d (record %d): string %d of %d", off/refSize, rec, i, k)
		}
	}
	updates := buf[uo:mo]
	if err := checkUpdates(updates, int(le.Uint32(buf[cUpdateCount:])), n); err != nil {
		return 0, err
	}
	for off := 0; off < len(refs); off += refSize {
		r := b.Records[le.Uint32(refs[off:])]
		x := le.Uint32(refs[off+4:])
		f := x & 0xff
		*r.StringRef(flow.FieldID(f)) = table[x>>8]
		r.Present.Add(flow.FieldID(f))
	}
	applyUpdates(b, updates, st)
	return applyVerdicts(b, buf[vo:eo], n, &sc.verdicts), nil
}
