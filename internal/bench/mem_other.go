//go:build !linux

package bench

// resetPeakRSS is unsupported outside Linux.
func resetPeakRSS() bool { return false }

// peakRSS is unknown outside Linux.
func peakRSS() uint64 { return 0 }
