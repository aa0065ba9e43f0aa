package wire

import (
	"fmt"
	"net/netip"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
)

// ABI answer header and update entry offsets (docs/abi.md, "Answer").
const (
	aMagic       = 0
	aVersion     = 4
	aHeaderSize  = 6
	aStatus      = 8
	aCount       = 12
	aVerdictOff  = 16
	aVerdictLen  = 20
	aUpdatesOff  = 24
	aUpdatesLen  = 28
	aUpdateCount = 32
	aMessageOff  = 36
	aMessageLen  = 40

	uRecord     = 0
	uOp         = 4
	uField      = 5
	uElement    = 6
	uEnterprise = 8
	uLen        = 12
	uUint       = 16
)

// kinds is flow.Fields' kinds, indexed by field, for the update check.
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
	verdicts abi.Verdicts
}

// ApplyAnswer decodes the answer buf, a compact answer ([MagicCompact]) or
// an ABI answer, and applies it to b, the batch it answers, as
// abi.DecodeAnswer followed by abi.Apply do: it returns a *abi.PluginError
// for a status other than OK, an error wrapping abi.ErrMalformed (or a
// *abi.VersionError) for a buffer that does not follow the layout, and
// otherwise applies the updates, then the verdicts, and returns how many
// records the verdicts removed. On error b is unchanged.
//
// It differs in cost only: the updates are checked in one pass and applied
// in a second (abi walks them three times), and strings are interned in
// sc, so labels repeated across records do not allocate.
func ApplyAnswer(b *flow.Batch, buf []byte, sc *Scratch) (removed int, err error) {
	if len(buf) >= 4 && le.Uint32(buf) == MagicCompact {
		return applyCompact(b, buf, sc)
	}
	if len(buf) < abi.AnswerHeaderSize {
		return 0, malformed("answer of %d bytes is shorter than its %d-byte header", len(buf), abi.AnswerHeaderSize)
	}
	if m := le.Uint32(buf[aMagic:]); m != abi.MagicAnswer {
		return 0, malformed("answer magic %#08x, want %#08x or %#08x", m, abi.MagicAnswer, MagicCompact)
	}
	if err := abi.CheckVersion(le.Uint16(buf[aVersion:])); err != nil {
		return 0, err
	}
	count := uint64(le.Uint32(buf[aCount:]))
	vo, vw := uint64(le.Uint32(buf[aVerdictOff:])), uint64(le.Uint32(buf[aVerdictLen:]))
	uo, ul := uint64(le.Uint32(buf[aUpdatesOff:])), uint64(le.Uint32(buf[aUpdatesLen:]))
	mo, ml := uint64(le.Uint32(buf[aMessageOff:])), uint64(le.Uint32(buf[aMessageLen:]))
	hs := uint64(le.Uint16(buf[aHeaderSize:]))
	size := uint64(len(buf))
	switch {
	case hs < abi.AnswerHeaderSize:
		return 0, malformed("answer header size %d, want at least %d", hs, abi.AnswerHeaderSize)
	case vw != (count+63)/64:
		return 0, malformed("answer has %d verdict words for %d records, want %d", vw, count, (count+63)/64)
	case vo < hs || vo+8*vw > size:
		return 0, malformed("answer verdicts %d+%d beyond the %d-byte answer", vo, 8*vw, size)
	case uo < hs || uo+ul > size:
		return 0, malformed("answer updates %d+%d beyond the %d-byte answer", uo, ul, size)
	case mo < hs || mo+ml > size:
		return 0, malformed("answer message %d+%d beyond the %d-byte answer", mo, ml, size)
	}
	if s := abi.Status(le.Uint32(buf[aStatus:])); s != abi.StatusOK {
		return 0, &abi.PluginError{Status: s, Message: string(buf[mo : mo+ml])}
	}
	n := b.Len()
	if count != uint64(n) {
		return 0, malformed("answer covers %d records, the batch has %d", count, n)
	}
	updates := buf[uo : uo+ul]
	if err := checkUpdates(updates, int(le.Uint32(buf[aUpdateCount:])), n); err != nil {
		return 0, err
	}
	applyUpdates(b, updates, &sc.Strings)
	return applyVerdicts(b, buf[vo:vo+8*vw], n, &sc.verdicts), nil
}

// applyUpdates applies checked ABI update entries to b.
func applyUpdates(b *flow.Batch, updates []byte, st *Strings) {
	for off := 0; off < len(updates); {
		h := updates[off:]
		vl := int(le.Uint32(h[uLen:]))
		apply(b, h, h[abi.UpdateHeadSize:abi.UpdateHeadSize+vl:abi.UpdateHeadSize+vl], st)
		off += abi.UpdateHeadSize + vl
	}
}

// applyVerdicts drops the records of b (n of them) whose bit is clear in
// words, the little-endian verdict words of an answer, and returns how
// many it dropped. verdicts is scratch space.
func applyVerdicts(b *flow.Batch, words []byte, n int, verdicts *abi.Verdicts) int {
	vw := len(words) / 8
	v := *verdicts
	if cap(v) < vw {
		v = make(abi.Verdicts, vw)
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
		if len(h) < abi.UpdateHeadSize {
			return malformed("update at byte %d: %d bytes left, head needs %d", off, len(h), abi.UpdateHeadSize)
		}
		vl := uint64(le.Uint32(h[uLen:]))
		if uint64(abi.UpdateHeadSize)+vl > uint64(len(h)) {
			return malformed("update at byte %d: value of %d bytes beyond the buffer", off, vl)
		}
		op, f := abi.Op(h[uOp]), h[uField]
		if rec := le.Uint32(h[uRecord:]); uint64(rec) >= uint64(records) {
			return malformed("update %d (%s on record %d): record index out of range for a batch of %d", k, op, rec, records)
		}
		var bad string
		switch op {
		case abi.OpSetUint:
			if kd := kinds[f]; int(f) >= flow.NumFields || (kd != flow.KindUnsigned && kd != flow.KindTime) {
				bad = "is not an unsigned or time field"
			}
		case abi.OpSetString:
			if int(f) >= flow.NumFields || kinds[f] != flow.KindString {
				bad = "is not a string field"
			}
		case abi.OpSetAddr:
			if int(f) >= flow.NumFields || kinds[f] != flow.KindAddress {
				bad = "is not an address field"
			} else if vl != 0 && vl != 4 && vl != 16 {
				bad = fmt.Sprintf("address of %d bytes", vl)
			}
		case abi.OpClear:
			if int(f) >= flow.NumFields {
				bad = "unknown field"
			}
		case abi.OpSetExtra, abi.OpAddExtra, abi.OpDeleteExtra:
		default:
			bad = "unknown op"
		}
		if bad != "" {
			return malformed("update %d (%s on record %d): field %d %s", k, op, le.Uint32(h[uRecord:]), f, bad)
		}
		off += abi.UpdateHeadSize + int(vl)
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
	switch abi.Op(h[uOp]) {
	case abi.OpSetUint:
		rec.SetUint(f, le.Uint64(h[uUint:]))
	case abi.OpSetString:
		rec.SetString(f, st.Intern(val))
	case abi.OpSetAddr:
		var a netip.Addr
		switch len(val) {
		case 4:
			a = netip.AddrFrom4([4]byte(val))
		case 16:
			a = netip.AddrFrom16([16]byte(val))
		}
		rec.SetAddr(f, a)
	case abi.OpClear:
		rec.Clear(f)
	case abi.OpSetExtra:
		k := flow.IEKey{Enterprise: le.Uint32(h[uEnterprise:]), Element: le.Uint16(h[uElement:])}
		if x := rec.FindExtra(k); x != nil {
			x.Value = b.CopyBytes(val)
			x.Variable = h[uField]&1 != 0
			return
		}
		rec.Extra = append(rec.Extra, flow.Field{Enterprise: k.Enterprise, Element: k.Element, Variable: h[uField]&1 != 0, Value: b.CopyBytes(val)})
	case abi.OpAddExtra:
		rec.Extra = append(rec.Extra, flow.Field{
			Enterprise: le.Uint32(h[uEnterprise:]), Element: le.Uint16(h[uElement:]),
			Variable: h[uField]&1 != 0, Value: b.CopyBytes(val),
		})
	case abi.OpDeleteExtra:
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

func malformed(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), abi.ErrMalformed)
}
