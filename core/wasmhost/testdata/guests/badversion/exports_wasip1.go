//go:build wasip1

package main

//go:wasmexport weir_abi_version
func version() int32 { return 99 }
