package abi

import (
	"math/bits"

	"github.com/weir-flow/weir/core/flow"
)

// planItem is one field of a masked encode or decode.
type planItem struct {
	field  flow.FieldID
	kind   flow.Kind
	size   uint8   // bytes per value
	block  uint16  // offset in the record block (record blocks)
	col    uint32  // offset of the field's column from the records offset (columns)
	record uintptr // flow.SlotOf(field).Offset, for the column loops
}

// plan lists the fields of a mask, in field order, and where they are in
// the mask's layout.
type plan struct {
	items [flow.NumFields]planItem
	n     int
	// byField is 1 + the index in items of each field of the mask, 0 for
	// the others.
	byField [flow.NumFields]uint8
	// columns: the layout is columnar; the offsets below are those of the
	// prelude columns, from the records offset, for records records
	// (presence is -1 without a presence column).
	columns                   bool
	records                   int
	presence, exporter, extra int
	// size is the size of the record area: the columns, or one record
	// block (RecordSize).
	size int
	// scalar: every item is an unsigned or time field and neither the
	// exporter nor Extra is encoded, so a record decodes with plain loads.
	scalar bool
}

// build lists the fields of m; for the columnar layout, it places the
// columns of n records.
func (p *plan) build(m Mask, n int) {
	p.n = 0
	p.byField = [flow.NumFields]uint8{}
	p.columns, p.records = m.Columns(), n
	p.presence, p.exporter, p.extra, p.size = rPresent, rExporter, rExtraOff, RecordSize
	at := 0
	if p.columns {
		p.presence = -1
		if m.presence() {
			p.presence, at = 0, align8(n*colPresence)
		}
		if m.Flags&FlagExporter != 0 {
			p.exporter, at = at, at+align8(n*colExporter)
		}
		if m.Flags&FlagExtra != 0 {
			p.extra, at = at, at+align8(n*colExtra)
		}
	}
	p.scalar = m.Flags&(FlagExporter|FlagExtra) == 0
	for w := range m.Fields {
		for word := m.Fields[w]; word != 0; word &= word - 1 {
			f := flow.FieldID(w*64 + bits.TrailingZeros64(word))
			if int(f) >= flow.NumFields {
				continue
			}
			kind := flow.Fields[f].Kind
			it := planItem{
				field: f, kind: kind, size: uint8(fieldSize[f]),
				block: uint16(fieldOffset[f]), record: flow.SlotOf(f).Offset,
			}
			if p.columns {
				it.col = uint32(at)
				at += align8(n * int(it.size))
			}
			p.items[p.n] = it
			p.n++
			p.byField[f] = uint8(p.n)
			if kind == flow.KindAddress || kind == flow.KindString {
				p.scalar = false
			}
		}
	}
	if p.columns {
		p.size = at
	}
}
