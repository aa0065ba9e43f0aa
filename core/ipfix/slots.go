package ipfix

import (
	"net/netip"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// slot locates a typed field inside flow.Record so the data loop can store
// into it directly instead of going through the Set* switches (about a
// third of the decode time). The offsets come from flow.SlotOf, which
// core/flow computes with unsafe.Offsetof and tests against its accessors.
type slot struct {
	off  uintptr
	size uint8 // bytes of an unsigned field
}

var slots = func() (s [flow.NumFields]slot) {
	for i := range flow.Fields {
		l := flow.SlotOf(flow.FieldID(i))
		s[i] = slot{off: l.Offset, size: uint8(l.Size)}
	}
	return s
}()

// getString returns string field f of r.
func getString(r *flow.Record, f flow.FieldID) string {
	return *(*string)(unsafe.Add(unsafe.Pointer(r), slots[f].off))
}

// getAddr returns address field f of r.
func getAddr(r *flow.Record, f flow.FieldID) netip.Addr {
	return *(*netip.Addr)(unsafe.Add(unsafe.Pointer(r), slots[f].off))
}

// getUint returns unsigned or time field f of r.
func getUint(r *flow.Record, f flow.FieldID) uint64 {
	s := &slots[f]
	p := unsafe.Add(unsafe.Pointer(r), s.off)
	switch s.size {
	case 1:
		return uint64(*(*uint8)(p))
	case 2:
		return uint64(*(*uint16)(p))
	case 4:
		return uint64(*(*uint32)(p))
	}
	return *(*uint64)(p)
}
