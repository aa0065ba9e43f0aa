package ipfix

import (
	"net/netip"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// slot locates a typed field inside flow.Record so the data loop can store
// into it directly instead of going through the Set* switches (about a
// third of the decode time). Slots are found at init by probing the
// public setters and verified by reading back through the getters; a field
// whose slot cannot be verified keeps using its setter.
type slot struct {
	off  uintptr
	size uint8 // bytes of an unsigned field
	ok   bool
}

var slots = probeSlots()

func probeSlots() (s [flow.NumFields]slot) {
	var r flow.Record
	base := unsafe.Pointer(&r)
	size := unsafe.Sizeof(r)
	raw := unsafe.Slice((*byte)(base), size)
	pOff := unsafe.Offsetof(r.Present)
	pEnd := pOff + unsafe.Sizeof(r.Present)
	nonZero := func(i uintptr) bool { return raw[i] != 0 && (i < pOff || i >= pEnd) }
	for i := range flow.Fields {
		f := flow.FieldID(i)
		r = flow.Record{}
		switch flow.Fields[f].Kind {
		case flow.KindUnsigned, flow.KindTime:
			r.SetUint(f, ^uint64(0))
			first, n := uintptr(0), uintptr(0)
			for j := uintptr(0); j < size; j++ {
				if nonZero(j) {
					if n == 0 {
						first = j
					}
					n++
				}
			}
			if n != 1 && n != 2 && n != 4 && n != 8 {
				continue
			}
			sl := slot{off: first, size: uint8(n)}
			r = flow.Record{}
			sl.store(&r, 0x0102030405060708)
			if r.Uint(f) == 0x0102030405060708&(1<<(8*n)-1) || n == 8 && r.Uint(f) == 0x0102030405060708 {
				sl.ok = true
				s[f] = sl
			}
		case flow.KindString:
			probe := "weir-slot-probe"
			r.SetString(f, probe)
			data := uintptr(unsafe.Pointer(unsafe.StringData(probe)))
			for off := uintptr(0); off+16 <= size; off += 8 {
				if *(*uintptr)(unsafe.Add(base, off)) == data && *(*uintptr)(unsafe.Add(base, off+8)) == uintptr(len(probe)) {
					r = flow.Record{}
					*(*string)(unsafe.Add(base, off)) = "ok"
					if r.String(f) == "ok" {
						s[f] = slot{off: off, ok: true}
					}
					break
				}
			}
		case flow.KindAddress:
			var all [16]byte
			for j := range all {
				all[j] = 0xff
			}
			r.SetAddr(f, netip.AddrFrom16(all))
			run := uintptr(0)
			for j := uintptr(0); j < size; j++ {
				if raw[j] != 0xff || !nonZero(j) {
					run = 0
					continue
				}
				if run++; run == 16 {
					off := j - 15
					if off%8 != 0 || off+unsafe.Sizeof(netip.Addr{}) > size || off+unsafe.Sizeof(netip.Addr{}) > pOff && off < pEnd {
						break
					}
					r = flow.Record{}
					want := netip.MustParseAddr("192.0.2.1")
					*(*netip.Addr)(unsafe.Add(base, off)) = want
					if r.Addr(f) == want {
						s[f] = slot{off: off, ok: true}
					}
					break
				}
			}
		}
	}
	return s
}

// store writes the unsigned value v, truncated to the field's width.
func (s *slot) store(r *flow.Record, v uint64) {
	p := unsafe.Add(unsafe.Pointer(r), s.off)
	switch s.size {
	case 1:
		*(*uint8)(p) = uint8(v)
	case 2:
		*(*uint16)(p) = uint16(v)
	case 4:
		*(*uint32)(p) = uint32(v)
	default:
		*(*uint64)(p) = v
	}
}

// getString returns string field f of r.
func getString(r *flow.Record, f flow.FieldID) string {
	if s := &slots[f]; s.ok {
		return *(*string)(unsafe.Add(unsafe.Pointer(r), s.off))
	}
	return r.String(f)
}

// getAddr returns address field f of r.
func getAddr(r *flow.Record, f flow.FieldID) netip.Addr {
	if s := &slots[f]; s.ok {
		return *(*netip.Addr)(unsafe.Add(unsafe.Pointer(r), s.off))
	}
	return r.Addr(f)
}

// getUint returns unsigned or time field f of r.
func getUint(r *flow.Record, f flow.FieldID) uint64 {
	s := &slots[f]
	if !s.ok {
		return r.Uint(f)
	}
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
