package abi

import "unsafe"

// littleEndian reports whether this machine stores integers least
// significant byte first, as the ABI does: then a field is copied from a
// block into a flow.Record with one load and one store.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// NativeLittleEndian reports whether this machine stores integers as the
// ABI does, least significant byte first (always, on WebAssembly): then
// columns and verdict words can be used in place.
func NativeLittleEndian() bool { return littleEndian }
