//go:build !wasip1

package main

// trap exists only in the WASM build; the module is not meant to run
// natively.
func trap() { panic("misbehave: trap is WASM-only") }
