// Package weirtest runs the shipped weir binary as a child process for the
// end-to-end tests (test/e2e) and the hostile-input tests (test/hostile):
// it builds the binary once per test package, finds free loopback ports,
// starts `weir run` on a config with a free metrics address, and reads the
// process's metrics, log and resident memory.
package weirtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// timeout bounds the waits for weir to start, to exit after SIGTERM and
// for a metric or log line to appear: generous, for a loaded CI machine.
const timeout = 60 * time.Second

// RepoRoot is the repository root, from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Main builds ./cmd/weir into a temporary directory, sets *bin to its path,
// runs the package's tests and exits with their status. Call it from
// TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "weirtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "weir")
	cmd := exec.Command("go", "build", "-o", *bin, "./cmd/weir")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build weir: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// SharedCapture returns ../shared/testdata/netns-mix.pcap beside the
// repository, the real capture the tests replay.
func SharedCapture(t testing.TB) string {
	t.Helper()
	p := filepath.Join(RepoRoot(), "..", "shared", "testdata", "netns-mix.pcap")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared capture: %v", err)
	}
	return p
}

// FreePort returns a loopback port ("udp" or "tcp") that was free a moment
// ago.
func FreePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// CountLines returns the number of newlines in the file at path.
func CountLines(t testing.TB, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte{'\n'})
}

// LockedBuffer collects a child's output; safe for concurrent use.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Proc is a running `weir run -c FILE`.
type Proc struct {
	Cmd     *exec.Cmd
	Dir     string        // the test's temporary directory holding Config
	Config  string        // the config file
	Metrics string        // host:port of the metrics endpoint
	Stderr  *LockedBuffer // weir's log
	// Exited is closed when the process has exited; WaitErr is then its
	// exit error.
	Exited  chan struct{}
	WaitErr error
}

// Start writes yaml to a file and runs `weir run -c FILE args...` with bin;
// "{{metrics}}" in yaml becomes a free metrics address. setup, when not
// nil, is called on the command before it starts (arguments, process
// attributes). Start waits until the pipeline runs; the process is killed
// at the end of the test if still alive, and its log printed if the test
// failed.
func Start(t testing.TB, bin, yaml string, setup func(*exec.Cmd), args ...string) *Proc {
	t.Helper()
	w := &Proc{Dir: t.TempDir(), Stderr: &LockedBuffer{}, Exited: make(chan struct{})}
	w.Metrics = fmt.Sprintf("127.0.0.1:%d", FreePort(t, "tcp"))
	yaml = strings.ReplaceAll(yaml, "{{metrics}}", w.Metrics)
	w.Config = filepath.Join(w.Dir, "weir.yaml")
	if err := os.WriteFile(w.Config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	w.Cmd = exec.Command(bin, append([]string{"run", "-c", w.Config}, args...)...)
	w.Cmd.Stdout = io.Discard
	w.Cmd.Stderr = w.Stderr
	if setup != nil {
		setup(w.Cmd)
	}
	if err := w.Cmd.Start(); err != nil {
		t.Fatalf("start weir: %v", err)
	}
	go func() { w.WaitErr = w.Cmd.Wait(); close(w.Exited) }()
	t.Cleanup(func() {
		select {
		case <-w.Exited:
		default:
			w.Cmd.Process.Kill()
			<-w.Exited
		}
		if t.Failed() {
			t.Logf("weir stderr (last 16 KB):\n%s", w.tail())
		}
	})
	deadline := time.Now().Add(timeout)
	for !strings.Contains(w.Stderr.String(), "pipeline running") {
		select {
		case <-w.Exited:
			t.Fatalf("weir exited at start (%v):\n%s", w.WaitErr, w.Stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("weir did not start:\n%s", w.Stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return w
}

func (w *Proc) tail() string {
	out := w.Stderr.String()
	return out[max(0, len(out)-16<<10):]
}

// Running reports whether weir is still alive.
func (w *Proc) Running() bool {
	select {
	case <-w.Exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and requires exit status 0.
func (w *Proc) Stop(t testing.TB) {
	t.Helper()
	if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	w.Wait(t)
}

// Wait requires weir to exit with status 0 within the timeout.
func (w *Proc) Wait(t testing.TB) {
	t.Helper()
	select {
	case <-w.Exited:
	case <-time.After(timeout):
		t.Fatalf("weir did not exit within %v:\n%s", timeout, w.tail())
	}
	if w.WaitErr != nil {
		t.Fatalf("weir exited with %v, want status 0:\n%s", w.WaitErr, w.tail())
	}
}

// eachSample calls f with the name (without labels), the labels part
// ("{...}" or "") and the value of every sample on the metrics endpoint.
func (w *Proc) eachSample(t testing.TB, f func(name, labels string, v float64)) {
	t.Helper()
	resp, err := http.Get("http://" + w.Metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		key := line[:sp]
		name, labels := key, ""
		if i := strings.IndexByte(key, '{'); i >= 0 {
			name, labels = key[:i], key[i:]
		}
		if v, err := strconv.ParseFloat(line[sp+1:], 64); err == nil {
			f(name, labels, v)
		}
	}
}

// Scrape returns every metric of the endpoint, summed over its labels.
func (w *Proc) Scrape(t testing.TB) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	w.eachSample(t, func(name, _ string, v float64) { out[name] += v })
	return out
}

// Sample returns the sum of the samples of metric name whose labels
// contain label ("" for all).
func (w *Proc) Sample(t testing.TB, name, label string) float64 {
	t.Helper()
	sum := 0.0
	w.eachSample(t, func(n, labels string, v float64) {
		if n == name && strings.Contains(labels, label) {
			sum += v
		}
	})
	return sum
}

// HasSample reports whether metric name has a non-zero sample whose labels
// contain label (e.g. `ie="99999/42"`).
func (w *Proc) HasSample(t testing.TB, name, label string) bool {
	t.Helper()
	found := false
	w.eachSample(t, func(n, labels string, v float64) {
		if n == name && labels != "" && strings.Contains(labels, label) && v != 0 {
			found = true
		}
	})
	return found
}

// WaitMetric polls until metric name, summed over its labels, reaches at
// least want.
func (w *Proc) WaitMetric(t testing.TB, name string, want float64) {
	t.Helper()
	w.WaitSample(t, name, "", want)
}

// WaitSample polls until Sample(name, label) reaches at least want.
func (w *Proc) WaitSample(t testing.TB, name, label string, want float64) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := w.Sample(t, name, label)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v\n%s", name, label, got, want, w.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitLog waits until weir's log holds n occurrences of s.
func (w *Proc) WaitLog(t testing.TB, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(w.Stderr.String(), s) < n {
		if !w.Running() || time.Now().After(deadline) {
			t.Fatalf("weir's log never held %d× %q (running: %v):\n%s", n, s, w.Running(), w.tail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StageSummary returns the in/out counts the engine logs for a stage at
// shutdown (the "stage summary" line whose stage= is stage).
func (w *Proc) StageSummary(t testing.TB, stage string) (in, out int) {
	t.Helper()
	for _, line := range strings.Split(w.Stderr.String(), "\n") {
		if !strings.Contains(line, "stage summary") || !strings.Contains(line, "stage="+stage+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "in="); ok {
				in, _ = strconv.Atoi(v)
			}
			if v, ok := strings.CutPrefix(f, "out="); ok {
				out, _ = strconv.Atoi(v)
			}
		}
		return in, out
	}
	t.Fatalf("no stage summary for %s in weir's log:\n%s", stage, w.tail())
	return 0, 0
}

// LogValue returns the integer value of key=... in the last log line
// containing msg.
func (w *Proc) LogValue(t testing.TB, msg, key string) int {
	t.Helper()
	lines := strings.Split(w.Stderr.String(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], msg) {
			continue
		}
		for _, f := range strings.Fields(lines[i]) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%s=%q in %q", key, v, lines[i])
				}
				return n
			}
		}
	}
	t.Fatalf("no %q with %s= in weir's log", msg, key)
	return 0
}

// RSS returns the process's resident set in bytes (VmRSS).
func (w *Proc) RSS(t testing.TB) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
