//go:build linux

package bench

import "golang.org/x/sys/unix"

// threadCPU returns the calling thread's CPU time in nanoseconds; with the
// goroutine locked to its thread it measures the decode loop without the
// time other jobs on a shared machine take from it.
func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
