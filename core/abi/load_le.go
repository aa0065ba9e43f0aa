package abi

import "unsafe"

// littleEndian reports whether this machine stores integers least
// significant byte first, as the ABI does: then a field is copied from a
// block into a flow.Record with one load and one store.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
