//go:build wasip1

package main

import (
	"unsafe"

	"github.com/weir-flow/weir/core/abi"
)

//go:wasmexport weir_abi_version
func exportVersion() int32 { return abi.Version }

//go:wasmexport weir_kind
func exportKind() int32 { return int32(abi.KindFilter) }

//go:wasmexport weir_alloc
func exportAlloc(size int32) int32 {
	if cap(in) < int(size) {
		in = make([]byte, size)
	}
	in = in[:cap(in)]
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(in))))
}

//go:wasmexport weir_init
func exportInit(ptr, size int32) int64 { return pack(manifest(input(size))) }

//go:wasmexport weir_process
func exportProcess(ptr, size int32) int64 {
	buf, lie, p, n := process(input(size))
	if lie {
		return int64(uint64(p)<<32 | uint64(n))
	}
	return pack(buf)
}

// input returns what the host wrote into the input buffer.
func input(size int32) []byte {
	if size < 0 || int(size) > len(in) {
		return nil
	}
	return in[:size]
}

func pack(b []byte) int64 {
	return int64(uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))<<32 | uint64(len(b)))
}

// trap stores outside linear memory: the WebAssembly runtime traps.
func trap() {
	addr := uintptr(0xfffffff0)
	*(*uint32)(unsafe.Pointer(addr)) = 1
}
