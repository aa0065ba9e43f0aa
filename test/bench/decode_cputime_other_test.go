//go:build !linux

package bench

// threadCPU is unavailable: the cpu-ns/record metric reads 0.
func threadCPU() int64 { return 0 }
