//go:build wasip1

package weir

import (
	"unsafe"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/sdk/wasm/internal/guest"
)

// The ABI v1 exports (docs/abi.md). Results that are buffers are packed
// as ptr<<32 | len; the buffer stays valid until the next call.

//go:wasmexport weir_abi_version
func exportABIVersion() int32 { return abi.Version }

//go:wasmexport weir_kind
func exportKind() int32 {
	p, _ := guest.Default.Registered()
	return int32(p.Kind)
}

//go:wasmexport weir_alloc
func exportAlloc(size int32) int32 {
	buf := guest.Default.Alloc(int(size))
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
}

//go:wasmexport weir_init
func exportInit(ptr, size int32) int64 {
	return pack(guest.Default.Init(input(ptr, size)))
}

//go:wasmexport weir_process
func exportProcess(ptr, size int32) int64 {
	return pack(guest.Default.Process(input(ptr, size)))
}

// input returns the bytes the host wrote at ptr: the input buffer (from
// weir_alloc), checked against its bounds.
func input(ptr, size int32) []byte {
	buf := guest.Default.Alloc(0)
	if size <= 0 || len(buf) == 0 || uintptr(ptr) != uintptr(unsafe.Pointer(unsafe.SliceData(buf))) || int(size) > len(buf) {
		return nil
	}
	return buf[:size]
}

func pack(b []byte) int64 {
	return int64(uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))<<32 | uint64(len(b)))
}
