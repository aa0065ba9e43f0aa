package flow

import (
	"net/netip"
	"unsafe"
)

// Pointers to a typed field by its slot offset, for the codecs' compiled
// field loops (the IPFIX decoder and encoder, the plugin ABI's columns):
// they check a template's fields against [SlotOf] once, then reach each
// record's field with one pointer add, without a switch on the FieldID.
// off must be SlotOf(f).Offset of a field whose Go type is the pointer's;
// these are the only places outside this package's accessors that turn an
// offset into a field, so the record's memory layout stays in core/flow.

// Uint8At returns the uint8 field at off.
func Uint8At(r *Record, off uintptr) *uint8 { return (*uint8)(unsafe.Add(unsafe.Pointer(r), off)) }

// Uint16At returns the uint16 field at off.
func Uint16At(r *Record, off uintptr) *uint16 { return (*uint16)(unsafe.Add(unsafe.Pointer(r), off)) }

// Uint32At returns the uint32 field at off.
func Uint32At(r *Record, off uintptr) *uint32 { return (*uint32)(unsafe.Add(unsafe.Pointer(r), off)) }

// Uint64At returns the uint64 field at off.
func Uint64At(r *Record, off uintptr) *uint64 { return (*uint64)(unsafe.Add(unsafe.Pointer(r), off)) }

// TimeAt returns the time field at off (nanoseconds since the Unix epoch).
func TimeAt(r *Record, off uintptr) *int64 { return (*int64)(unsafe.Add(unsafe.Pointer(r), off)) }

// AddrAt returns the address field at off.
func AddrAt(r *Record, off uintptr) *netip.Addr {
	return (*netip.Addr)(unsafe.Add(unsafe.Pointer(r), off))
}

// StringAt returns the string field at off.
func StringAt(r *Record, off uintptr) *string { return (*string)(unsafe.Add(unsafe.Pointer(r), off)) }
