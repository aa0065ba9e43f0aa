package iecompat_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the CPU time (user + system) the process has used. On a
// shared machine it measures a benchmark's cost better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportPerRecord reports wall and CPU nanoseconds per record, given the
// CPU time at the start of the timed loop and the records processed.
func reportPerRecord(b *testing.B, cpuStart time.Duration, records int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
	b.ReportMetric(float64((cpuTime()-cpuStart).Nanoseconds())/float64(records), "cpu-ns/record")
}
