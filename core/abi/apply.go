package abi

import (
	"fmt"
	"net/netip"

	"github.com/weir-flow/weir/core/flow"
)

// kinds is flow.Fields' kinds, indexed by any field ID value (unknown
// IDs have kind 0), for the update check.
var kinds = func() (k [256]flow.Kind) {
	for i := range flow.Fields {
		k[i] = flow.Fields[i].Kind
	}
	return k
}()

// Scratch is what applying answers reuses: the strings interned from
// earlier answers (labels repeat across records and batches, so applying
// them mostly allocates nothing), a string table and the verdict words.
// The zero value is ready; it is not safe for concurrent use.
type Scratch struct {
	Strings  Strings
	table    []string
	verdicts Verdicts
}

// Apply decodes the answer buf, a compact answer ([MagicCompact]) or an
// ABI answer ([MagicAnswer]), and applies it to b, the batch it answers:
// the updates first, then the verdicts. It returns how many records the
// verdicts removed; a *PluginError for a status other than OK; an error
// wrapping ErrMalformed (or a *VersionError) for a buffer that does not
// follow its layout. On error b is unchanged.
//
// Both hosts apply answers through it. The updates are checked in one pass
// and applied in a second; strings are interned in sc, so labels repeated
// across records and batches do not allocate.
func Apply(b *flow.Batch, buf []byte, sc *Scratch) (removed int, err error) {
	if len(buf) >= 4 && le.Uint32(buf) == MagicCompact {
		return applyCompact(b, buf, sc)
	}
	a, err := parseAnswer(buf)
	if err != nil {
		return 0, err
	}
	if a.status != StatusOK {
		return 0, &PluginError{Status: a.status, Message: string(a.message)}
	}
	n := b.Len()
	if a.count != uint64(n) {
		return 0, malformed("answer covers %d records, the batch has %d", a.count, n)
	}
	if err := checkUpdates(a.updates, a.updateCount, n); err != nil {
		return 0, err
	}
	applyUpdates(b, a.updates, &sc.Strings)
	return applyVerdicts(b, a.verdicts, n, &sc.verdicts), nil
}

// applyUpdates applies checked ABI update entries to b.
func applyUpdates(b *flow.Batch, updates []byte, st *Strings) {
	for off := 0; off < len(updates); {
		h := updates[off:]
		vl := int(le.Uint32(h[uLen:]))
		apply(b, h, h[UpdateHeadSize:UpdateHeadSize+vl:UpdateHeadSize+vl], st)
		off += UpdateHeadSize + vl
	}
}

// applyVerdicts drops the records of b (n of them) whose bit is clear in
// words, the little-endian verdict words of an answer, and returns how
// many it dropped. verdicts is scratch space.
func applyVerdicts(b *flow.Batch, words []byte, n int, verdicts *Verdicts) int {
	vw := len(words) / 8
	v := *verdicts
	if cap(v) < vw {
		v = make(Verdicts, vw)
	}
	v = v[:vw]
	all := true
	for i := range v {
		v[i] = le.Uint64(words[8*i:])
		want := ^uint64(0)
		if r := n & 63; i == len(v)-1 && r != 0 {
			want = 1<<r - 1
		}
		all = all && v[i]&want == want
	}
	*verdicts = v
	if all {
		return 0 // an enricher keeps every record: skip the walk
	}
	return b.RetainMask(v)
}

// checkUpdates validates the updates of an answer to a batch of records
// records: complete entries, known ops, fields of the right kind, sane
// address lengths, and as many as the header announced.
func checkUpdates(buf []byte, count, records int) error {
	k := 0
	for off := 0; off < len(buf); k++ {
		h := buf[off:]
		if len(h) < UpdateHeadSize {
			return malformed("update at byte %d: %d bytes left, head needs %d", off, len(h), UpdateHeadSize)
		}
		vl := uint64(le.Uint32(h[uLen:]))
		if uint64(UpdateHeadSize)+vl > uint64(len(h)) {
			return malformed("update at byte %d: value of %d bytes beyond the buffer", off, vl)
		}
		op, f := Op(h[uOp]), h[uField]
		if rec := le.Uint32(h[uRecord:]); uint64(rec) >= uint64(records) {
			return malformed("update %d (%s on record %d): record index out of range for a batch of %d", k, op, rec, records)
		}
		var bad string
		switch op {
		case OpSetUint:
			if kd := kinds[f]; int(f) >= flow.NumFields || (kd != flow.KindUnsigned && kd != flow.KindTime) {
				bad = "is not an unsigned or time field"
			}
		case OpSetString:
			if int(f) >= flow.NumFields || kinds[f] != flow.KindString {
				bad = "is not a string field"
			}
		case OpSetAddr:
			if int(f) >= flow.NumFields || kinds[f] != flow.KindAddress {
				bad = "is not an address field"
			} else if vl != 0 && vl != 4 && vl != 16 {
				bad = fmt.Sprintf("address of %d bytes", vl)
			}
		case OpClear:
			if int(f) >= flow.NumFields {
				bad = "unknown field"
			}
		case OpSetExtra, OpAddExtra, OpDeleteExtra:
		default:
			bad = "unknown op"
		}
		if bad != "" {
			return malformed("update %d (%s on record %d): field %d %s", k, op, le.Uint32(h[uRecord:]), f, bad)
		}
		off += UpdateHeadSize + int(vl)
	}
	if k != count {
		return malformed("answer announces %d updates, holds %d", count, k)
	}
	return nil
}

// apply applies one checked update entry h (value val) to b.
func apply(b *flow.Batch, h, val []byte, st *Strings) {
	rec := b.Records[le.Uint32(h[uRecord:])]
	f := flow.FieldID(h[uField])
	switch Op(h[uOp]) {
	case OpSetUint:
		rec.SetUint(f, le.Uint64(h[uUint:]))
	case OpSetString:
		rec.SetString(f, st.Intern(val))
	case OpSetAddr:
		var a netip.Addr
		switch len(val) {
		case 4:
			a = netip.AddrFrom4([4]byte(val))
		case 16:
			a = netip.AddrFrom16([16]byte(val))
		}
		rec.SetAddr(f, a)
	case OpClear:
		rec.Clear(f)
	case OpSetExtra:
		k := flow.IEKey{Enterprise: le.Uint32(h[uEnterprise:]), Element: le.Uint16(h[uElement:])}
		if x := rec.FindExtra(k); x != nil {
			x.Value = b.CopyBytes(val)
			x.Variable = h[uField]&1 != 0
			return
		}
		rec.Extra = append(rec.Extra, flow.Field{Enterprise: k.Enterprise, Element: k.Element, Variable: h[uField]&1 != 0, Value: b.CopyBytes(val)})
	case OpAddExtra:
		rec.Extra = append(rec.Extra, flow.Field{
			Enterprise: le.Uint32(h[uEnterprise:]), Element: le.Uint16(h[uElement:]),
			Variable: h[uField]&1 != 0, Value: b.CopyBytes(val),
		})
	case OpDeleteExtra:
		k := flow.IEKey{Enterprise: le.Uint32(h[uEnterprise:]), Element: le.Uint16(h[uElement:])}
		kept := rec.Extra[:0]
		for _, x := range rec.Extra {
			if x.Key() != k {
				kept = append(kept, x)
			}
		}
		clear(rec.Extra[len(kept):])
		rec.Extra = kept
	}
}
