// Package hostile reproduces, against the real weir binary, the attacks
// and failures of issue 12: hostile exporters (oversized records, template
// and session floods, idle TCP connections) and failing neighbours (a full
// socket backlog at SIGTERM). Memory bounds are asserted from the
// process's RSS against the configured limits, never from timings.
package hostile

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

var weirBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weir-hostile-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weirBin = filepath.Join(dir, "weir")
	cmd := exec.Command("go", "build", "-o", weirBin, "./cmd/weir")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build weir: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func freePort(t *testing.T, network string) int {
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

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// weirProc is a running `weir run -c FILE`.
type weirProc struct {
	cmd     *exec.Cmd
	stderr  *lockedBuffer
	metrics string
	exited  chan struct{}
	waitErr error
}

// startWeir runs weir on yaml ("{{metrics}}" becomes a free metrics
// address), with args added to `weir run -c FILE`, and waits until the
// pipeline runs.
func startWeir(t *testing.T, yaml string, args ...string) *weirProc {
	t.Helper()
	dir := t.TempDir()
	w := &weirProc{stderr: &lockedBuffer{}, exited: make(chan struct{})}
	w.metrics = fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	yaml = strings.ReplaceAll(yaml, "{{metrics}}", w.metrics)
	cfg := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	w.cmd = exec.Command(weirBin, append([]string{"run", "-c", cfg}, args...)...)
	w.cmd.Stdout = io.Discard
	w.cmd.Stderr = w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start weir: %v", err)
	}
	go func() { w.waitErr = w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			w.cmd.Process.Kill()
			<-w.exited
		}
		if t.Failed() {
			out := w.stderr.String()
			t.Logf("weir stderr (last 4 KB):\n%s", out[max(0, len(out)-4096):])
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(w.stderr.String(), "pipeline running") {
		select {
		case <-w.exited:
			t.Fatalf("weir exited at start (%v):\n%s", w.waitErr, w.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("weir did not start:\n%s", w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return w
}

// stop sends SIGTERM and requires exit status 0.
func (w *weirProc) stop(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	w.wait(t)
}

func (w *weirProc) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("weir did not exit within 60s of SIGTERM")
	}
	if w.waitErr != nil {
		t.Fatalf("weir exited with %v after SIGTERM, want status 0", w.waitErr)
	}
}

// sample returns the sum of the samples of name whose labels contain
// label ("" for all).
func (w *weirProc) sample(t *testing.T, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + w.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	sum := 0.0
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
		n := key
		if i := strings.IndexByte(key, '{'); i >= 0 {
			n = key[:i]
		}
		if n != name || !strings.Contains(key, label) {
			continue
		}
		if v, err := strconv.ParseFloat(line[sp+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// waitSample polls until sample(name, label) reaches want.
func (w *weirProc) waitSample(t *testing.T, name, label string, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := w.sample(t, name, label)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v", name, label, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rss returns the process's resident set, in bytes (VmRSS).
func (w *weirProc) rss(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
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

// logValue returns the value of key=... in the last log line containing msg.
func (w *weirProc) logValue(t *testing.T, msg, key string) int {
	t.Helper()
	lines := strings.Split(w.stderr.String(), "\n")
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

func sharedCapture(t *testing.T) string {
	t.Helper()
	p := filepath.Join(repoRoot(), "..", "shared", "testdata", "netns-mix.pcap")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared capture: %v", err)
	}
	return p
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte{'\n'})
}
