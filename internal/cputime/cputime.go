// Package cputime measures benchmarks in CPU time, which other jobs on a
// shared or loaded machine disturb less than wall time: the benchmarks of
// the hot path report cpu-ns/record (or /op) beside ns/record.
package cputime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Self returns the CPU time (user + system) this process has used,
// getrusage(2) RUSAGE_SELF; 0 if the system cannot say.
func Self() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Process returns the CPU time (user + system) process pid has used, from
// fields 14 and 15 of /proc/pid/stat (clock ticks of USER_HZ, 100 on
// Linux, so 10 ms resolution). It fails where /proc has no such file.
func Process(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(stat)
	end := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if end < 0 || end+2 > len(s) {
		return 0, fmt.Errorf("/proc/%d/stat: no ')' after the command name", pid)
	}
	fields := strings.Fields(s[end+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want 13 or more", pid, len(fields))
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, fields[11], fields[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// Meter measures the CPU time of this process and of child processes
// (an out-of-process plugin) from Start on.
type Meter struct {
	pids  []int
	start time.Duration
}

// Start starts a meter over this process and pids.
func Start(pids ...int) Meter {
	m := Meter{pids: pids}
	m.start = m.total()
	return m
}

func (m Meter) total() time.Duration {
	t := Self()
	for _, pid := range m.pids {
		if c, err := Process(pid); err == nil {
			t += c
		}
	}
	return t
}

// Elapsed returns the CPU time used since Start.
func (m Meter) Elapsed() time.Duration { return m.total() - m.start }

// Report reports the CPU nanoseconds per unit since Start, n units done,
// as the metric "cpu-ns/<unit>" (unit "record", "op", …).
func (m Meter) Report(b *testing.B, n int, unit string) {
	b.ReportMetric(float64(m.Elapsed().Nanoseconds())/float64(n), "cpu-ns/"+unit)
}

// ReportPer reports wall time per unit (b.Elapsed, "ns/<unit>") beside
// Report's CPU time.
func (m Meter) ReportPer(b *testing.B, n int, unit string) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/"+unit)
	m.Report(b, n, unit)
}
