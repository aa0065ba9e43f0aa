package abi

import (
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// Filter runs keep over every record of v and clears, in verdicts, the
// bit of each record keep rejects (verdicts must hold at least
// Words(v.Len()) words; bits of kept records are left as they are). Each
// record is decoded into r, which is reused: only the parts in v's mask
// are written, so keep must not rely on the others, nor retain r.
//
// It is the guest SDK's loop for filters. In the columnar layout with a
// mask of unsigned and time fields only (no addresses, strings, exporter
// or Extra IEs), a record is decoded with a load and a store per field
// and no function call, so the only call per record is keep; otherwise
// each record decodes as with [Decoder.Record].
func (d *Decoder) Filter(v *View, r *flow.Record, keep func(*flow.Record) bool, verdicts Verdicts) error {
	n := v.n
	if n == 0 {
		return nil
	}
	if len(verdicts) < Words(n) {
		return malformed("%d verdict words for %d records", len(verdicts), n)
	}
	if pl := d.planFor(v); !v.columns || !pl.scalar || pl.n == 0 || !littleEndian {
		for i := range n {
			if err := d.Record(v, i, r); err != nil {
				return err
			}
			if !keep(r) {
				verdicts[i>>6] &^= 1 << (i & 63)
			}
		}
		return nil
	}
	pl := &d.plan
	items := pl.items[:pl.n]
	// Go's WebAssembly code goes back to its function's dispatch loop on
	// every backward jump, so a loop over the items would cost a dispatch
	// per field: the first four are copied in straight-line code. Unused
	// slots copy the first field again.
	var first [4]planItem
	for k := range first {
		first[k] = items[0]
	}
	copy(first[:], items)
	rest := items[min(len(items), len(first)):]
	m0, m1 := v.mask.Fields[0], v.mask.Fields[1]
	cols := v.buf[v.recOff : v.recOff+pl.size] // ParseBatch checked the bounds
	base := unsafe.Pointer(unsafe.SliceData(cols))
	var pres [][2]uint64
	if pl.presence >= 0 {
		pres = unsafe.Slice((*[2]uint64)(unsafe.Add(base, pl.presence)), n)
	} else {
		// Without a presence column every field of the mask is present.
		r.Present = v.mask.Fields
	}
	for i := range n {
		// Every column holds n values within cols.
		copyScalar(r, base, i, &first[0])
		copyScalar(r, base, i, &first[1])
		copyScalar(r, base, i, &first[2])
		copyScalar(r, base, i, &first[3])
		for k := range rest {
			copyScalar(r, base, i, &rest[k])
		}
		if pres != nil {
			r.Present[0] = pres[i][0] & m0
			r.Present[1] = pres[i][1] & m1
		}
		if !keep(r) {
			verdicts[i>>6] &^= 1 << (i & 63)
		}
	}
	return nil
}

// copyScalar copies value i of the unsigned column of it, in the columns
// at base, into the record at r: little-endian machines only.
func copyScalar(r *flow.Record, base unsafe.Pointer, i int, it *planItem) {
	src := unsafe.Add(base, int(it.col)+i*int(it.size))
	switch it.size {
	case 1:
		*flow.Uint8At(r, it.record) = *(*uint8)(src)
	case 2:
		*flow.Uint16At(r, it.record) = *(*uint16)(src)
	case 4:
		*flow.Uint32At(r, it.record) = *(*uint32)(src)
	default:
		*flow.Uint64At(r, it.record) = *(*uint64)(src)
	}
}

// Columnar reports whether v has the columnar layout, in which
// [Decoder.Column] gives whole columns.
func (v *View) Columnar() bool { return v.columns }

// Column returns the column of typed field f in v: Len() values of the
// field's canonical width (docs/abi.md), little-endian, starting at a
// multiple of 8 bytes from the start of the buffer; string columns hold
// references into the data section and address columns 17-byte values.
// It returns nil if v is not columnar or f is not in its mask.
func (d *Decoder) Column(v *View, f flow.FieldID) []byte {
	if !v.columns || int(f) >= flow.NumFields {
		return nil
	}
	pl := d.planFor(v)
	k := pl.byField[f]
	if k == 0 {
		return nil
	}
	it := &pl.items[k-1]
	off := v.recOff + int(it.col)
	end := off + v.n*int(it.size)
	return v.buf[off:end:end]
}

// PresenceColumn returns the presence column of a columnar v: for each
// record two little-endian u64 words of flow.FieldSet, masked. It returns
// nil if v is not columnar or has no presence column (FlagNoPresence).
func (d *Decoder) PresenceColumn(v *View) []byte {
	if !v.columns {
		return nil
	}
	pl := d.planFor(v)
	if pl.presence < 0 {
		return nil
	}
	off := v.recOff + pl.presence
	return v.buf[off : off+v.n*colPresence : off+v.n*colPresence]
}
