package weir

import (
	"fmt"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/sdk/wasm/internal/guest"
)

// Batch is a whole batch by column, for a filter that loops over the
// records itself ([RegisterBatchFilter]): each field the filter reads is a
// slice with one value per record, and Drop removes a record. It is the
// fastest way through the sandbox — a loop over a column compiles to a few
// instructions per record, where [RegisterFilter] calls a function per
// record — and the columns are read in place from the host's buffer.
//
// A Batch and its columns are valid only during the call.
type Batch struct {
	c *guest.Columns
}

// Len returns the number of records.
func (b *Batch) Len() int { return b.c.N }

// Drop removes record i from the batch.
func (b *Batch) Drop(i int) { b.c.Verdicts[i>>6] &^= 1 << (i & 63) }

// Kept reports whether record i is still kept.
func (b *Batch) Kept(i int) bool { return b.c.Verdicts.Keep(i) }

// Verdicts returns the batch's keep bitmap, for a filter that decides 64
// records at a time: bit i%64 of word i/64 keeps record i. Every record's
// bit is set on entry; clearing it drops the record, and bits past Len
// must stay clear. It is valid only during the call.
func (b *Batch) Verdicts() []uint64 { return b.c.Verdicts }

// KeepIn drops every record i whose value col[i] is not in s, and leaves
// the others as they are (kept, or dropped before). col is a 1-byte column
// of the batch ([Batch.Uint8]): the fastest way to filter on
// protocolIdentifier, ipClassOfService or flowEndReason.
func (b *Batch) KeepIn(col []uint8, s *ByteSet) {
	s.match(b.c.Verdicts, col, true)
}

// Has reports whether record i carries field f (an absent field reads as
// zero in its column). f must be one the filter reads, and the filter must
// be registered with [ReadsPresence]; it panics otherwise.
func (b *Batch) Has(i int, f FieldID) bool {
	p := b.c.Presence
	if p == nil {
		panic("weir: Batch.Has without a presence column: register the filter with weir.ReadsPresence()")
	}
	if int(f) >= flow.NumFields {
		return false
	}
	return p[2*i+int(f)>>6]&(1<<(f&63)) != 0
}

// Uint8 returns the column of a 1-byte field (protocolIdentifier,
// ipClassOfService, flowEndReason, …), one value per record. It panics if
// the filter does not read f (see [Reads]) or f is not 1 byte wide.
func (b *Batch) Uint8(f FieldID) []uint8 {
	return column(&b.c.U8, f, flow.KindUnsigned, 1)
}

// Uint16 returns the column of a 2-byte field (sourceTransportPort,
// destinationTransportPort, tcpControlBits, …); it panics as Uint8 does.
func (b *Batch) Uint16(f FieldID) []uint16 {
	return column(&b.c.U16, f, flow.KindUnsigned, 2)
}

// Uint32 returns the column of a 4-byte field (ingressInterface,
// egressInterface, …); it panics as Uint8 does.
func (b *Batch) Uint32(f FieldID) []uint32 {
	return column(&b.c.U32, f, flow.KindUnsigned, 4)
}

// Uint64 returns the column of an 8-byte counter (octetDeltaCount, …);
// it panics as Uint8 does. Time fields have their own column, [Batch.Time].
func (b *Batch) Uint64(f FieldID) []uint64 {
	return column(&b.c.U64, f, flow.KindUnsigned, 8)
}

// Time returns the column of a time field (FlowStart, FlowEnd), in
// nanoseconds since the Unix epoch; it panics as Uint8 does.
func (b *Batch) Time(f FieldID) []int64 {
	return column(&b.c.Time, f, flow.KindTime, 8)
}

// column returns field f's column from cols, or panics with columnError.
func column[T any](cols *[flow.NumFields][]T, f FieldID, kind flow.Kind, width int) []T {
	if int(f) < flow.NumFields && cols[f] != nil {
		return cols[f]
	}
	panic(columnError(f, kind, width))
}

// columnError says why field f has no column of that kind and width: it
// is not such a field, or the filter does not read it.
func columnError(f FieldID, kind flow.Kind, width int) string {
	if int(f) >= flow.NumFields {
		return fmt.Sprintf("weir: Batch column of field %d: no such field", f)
	}
	d := flow.Fields[f]
	switch {
	case d.Kind == kind && (kind == flow.KindTime || int(d.Width) == width):
		return fmt.Sprintf("weir: Batch column of %v: the filter does not read it (add it to weir.Reads)", f)
	case kind == flow.KindTime:
		return fmt.Sprintf("weir: Batch column of %v: not a time field", f)
	}
	return fmt.Sprintf("weir: Batch column of %v: not a %d-byte unsigned field", f, width)
}

// RegisterBatchFilter makes the module a filter that sees the whole batch
// by column: filter calls [Batch.Drop] for each record to remove, or works
// on [Batch.Verdicts] a word at a time. Reads must list the fields it
// uses, which must be unsigned or time fields; the host sends those
// columns only, and presence only with [ReadsPresence].
//
//	weir.RegisterBatchFilter(func(b *weir.Batch) {
//		for i, p := range b.Uint8(weir.ProtocolIdentifier) {
//			if p != 6 {
//				b.Drop(i)
//			}
//		}
//	}, weir.Reads(weir.ProtocolIdentifier))
func RegisterBatchFilter(filter func(b *Batch), reads Option, more ...Option) {
	opts := append([]Option{reads}, more...)
	var b Batch
	guest.Default.Register(guest.Plugin{
		Kind: abi.KindFilter,
		Batch: func(c *guest.Columns) {
			b.c = c
			filter(&b)
		},
		Reads: batchMask(opts),
		Init:  initFunc(),
	})
}

// batchMask is mask for a batch filter: without a presence column unless
// it asks for one.
func batchMask(opts []Option) abi.Mask {
	return mask(append([]Option{noPresence}, opts...))
}

// noPresence leaves out the presence column; ReadsPresence, after it,
// brings it back.
func noPresence(m *abi.Mask) { m.Flags |= abi.FlagNoPresence }

// ReadsPresence makes the host send, with a batch filter's columns, which
// fields each record carries, for [Batch.Has]. Without it an absent field
// reads as zero and the host sends 16 bytes per record fewer.
func ReadsPresence() Option { return func(m *abi.Mask) { m.Flags &^= abi.FlagNoPresence } }
