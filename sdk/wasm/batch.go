package weir

import (
	"encoding/binary"
	"fmt"
	"unsafe"

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
	view     *abi.View
	dec      *abi.Decoder
	verdicts abi.Verdicts
}

// Len returns the number of records.
func (b *Batch) Len() int { return b.view.Len() }

// Drop removes record i from the batch.
func (b *Batch) Drop(i int) { b.verdicts[i>>6] &^= 1 << (i & 63) }

// Kept reports whether record i is still kept.
func (b *Batch) Kept(i int) bool { return b.verdicts.Keep(i) }

// Has reports whether record i carries field f (an absent field reads as
// zero in its column). f must be one the filter reads.
func (b *Batch) Has(i int, f FieldID) bool {
	p := b.dec.PresenceColumn(b.view)
	if p == nil || int(f) >= flow.NumFields {
		return false
	}
	return binary.LittleEndian.Uint64(p[16*i+8*(int(f)>>6):])&(1<<(f&63)) != 0
}

// Uint8 returns the column of a 1-byte field (protocolIdentifier,
// ipClassOfService, flowEndReason, …), one value per record. It panics if
// the filter does not read f (see [Reads]) or f is not 1 byte wide.
func (b *Batch) Uint8(f FieldID) []uint8 { return column[uint8](b, f) }

// Uint16 returns the column of a 2-byte field (sourceTransportPort,
// destinationTransportPort, tcpControlBits, …); it panics as Uint8 does.
func (b *Batch) Uint16(f FieldID) []uint16 { return column[uint16](b, f) }

// Uint32 returns the column of a 4-byte field (ingressInterface,
// egressInterface, …); it panics as Uint8 does.
func (b *Batch) Uint32(f FieldID) []uint32 { return column[uint32](b, f) }

// Uint64 returns the column of an 8-byte counter (octetDeltaCount, …);
// it panics as Uint8 does. Time fields have their own column, [Batch.Time].
func (b *Batch) Uint64(f FieldID) []uint64 { return column[uint64](b, f) }

// Time returns the column of a time field (FlowStart, FlowEnd), in
// nanoseconds since the Unix epoch; it panics as Uint8 does.
func (b *Batch) Time(f FieldID) []int64 { return column[int64](b, f) }

type scalar interface {
	~uint8 | ~uint16 | ~uint32 | ~uint64 | ~int64
}

// column returns the column of f as a []T, in place when the buffer is
// little-endian-compatible and aligned (always, on WebAssembly), else
// decoded into a copy.
func column[T scalar](b *Batch, f FieldID) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	kind := flow.KindUnsigned
	if _, ok := any(zero).(int64); ok {
		kind = flow.KindTime
	}
	if int(f) >= flow.NumFields || flow.Fields[f].Kind != kind || fieldWidth(f) != size {
		panic(fmt.Sprintf("weir: Batch column of %v: not a %d-byte %s field", f, size, kindName(kind)))
	}
	if !b.view.Columnar() {
		panic("weir: Batch columns: the host sent record blocks, not columns; it is older than this SDK")
	}
	col := b.dec.Column(b.view, f)
	if col == nil {
		panic(fmt.Sprintf("weir: Batch column of %v: the filter does not read it (add it to weir.Reads)", f))
	}
	n := b.view.Len()
	if n == 0 {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(col))
	if littleEndian && uintptr(p)%uintptr(size) == 0 {
		return unsafe.Slice((*T)(p), n)
	}
	out := make([]T, n)
	for i := range out {
		var v uint64
		for k := size - 1; k >= 0; k-- {
			v = v<<8 | uint64(col[i*size+k])
		}
		out[i] = T(v)
	}
	return out
}

func fieldWidth(f FieldID) int {
	if flow.Fields[f].Kind == flow.KindTime {
		return 8
	}
	return int(flow.Fields[f].Width)
}

func kindName(k flow.Kind) string {
	if k == flow.KindTime {
		return "time"
	}
	return "unsigned"
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// RegisterBatchFilter makes the module a filter that sees the whole batch
// by column: filter calls [Batch.Drop] for each record to remove. Reads
// must list the fields it uses, which must be unsigned or time fields;
// the host sends those columns only.
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
		Batch: func(v *abi.View, d *abi.Decoder, verdicts abi.Verdicts) {
			b = Batch{view: v, dec: d, verdicts: verdicts}
			filter(&b)
		},
		Reads: mask(opts),
		Init:  initFunc(),
	})
}
