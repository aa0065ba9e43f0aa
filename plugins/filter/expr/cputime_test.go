package expr

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime returns the CPU time (user + system) the process has used. On a
// shared machine it measures a benchmark's cost better than wall time.
// (Exported for the external test package; test builds only.)
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportPerRecord reports wall and CPU nanoseconds per record, given the
// CPU time at the start of the timed loop and the records processed.
func ReportPerRecord(b *testing.B, cpuStart time.Duration, records int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
	b.ReportMetric(float64((CPUTime()-cpuStart).Nanoseconds())/float64(records), "cpu-ns/record")
}
