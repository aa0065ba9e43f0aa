package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Host describes the machine a report was made on, so figures from
// different machines (or a busy one) are not compared unawares.
type Host struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	GoVersion  string `json:"go_version"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// CPUModel is /proc/cpuinfo's first "model name"; "" where unknown.
	CPUModel string `json:"cpu_model,omitempty"`
	// LoadAverage is the 1-minute load average (/proc/loadavg) when the
	// benchmark started; -1 where unknown. Above the CPU count, other
	// processes took turns with the benchmark.
	LoadAverage float64 `json:"load_average_1m"`
}

// HostInfo describes this machine now.
func HostInfo() Host {
	h := Host{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version(),
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), LoadAverage: -1,
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				h.LoadAverage = v
			}
		}
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}

// String is the host line of the text report.
func (h Host) String() string {
	s := h.GOOS + "/" + h.GOARCH + ", " + strconv.Itoa(h.CPUs) + " CPUs (GOMAXPROCS " + strconv.Itoa(h.GOMAXPROCS) + "), " + h.GoVersion
	if h.CPUModel != "" {
		s += ", " + h.CPUModel
	}
	if h.LoadAverage >= 0 {
		s += ", load average " + strconv.FormatFloat(h.LoadAverage, 'f', 2, 64) + " at start"
	}
	return s
}
