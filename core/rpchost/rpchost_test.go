package rpchost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

// harness is a started Processor with its metrics registry.
type harness struct {
	*Processor
	reg *prometheus.Registry
}

func start(t *testing.T, cfg *Config, set plugin.Settings) *harness {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	p, err := New(cfg, set)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &harness{Processor: p, reg: set.Metrics.(*prometheus.Registry)}
}

func exampleConfig() *Config {
	cfg := DefaultConfig()
	cfg.Cmd = exampleBin
	cfg.Config = map[string]any{"table": "testdata/subnets.csv"}
	return cfg
}

func testPluginConfig_(c testPluginConfig) *Config {
	cfg := DefaultConfig()
	cfg.Cmd = os.Args[0]
	cfg.Args = []string{argPlugin}
	cfg.Config = c
	cfg.Timeout = time.Second
	cfg.RestartBackoff = Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	return cfg
}

// counter reads a counter or gauge from reg; label is "" or "key=value".
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	if k, v, ok := strings.Cut(label, "="); ok {
		return plugintest.MetricValue(t, reg, name, k, v)
	}
	return plugintest.MetricValue(t, reg, name)
}

func errorsTotal(t *testing.T, reg *prometheus.Registry) float64 {
	var sum float64
	for _, r := range []string{ReasonTimeout, ReasonCrash, ReasonGarbage, ReasonPluginError, ReasonUnavailable} {
		sum += counter(t, reg, "weir_rpc_errors_total", "reason="+r)
	}
	return sum
}

func batchOf(src, dst string, sport uint16, n int) *flow.Batch {
	b := flow.NewBatch(n)
	for i := 0; i < n; i++ {
		plugintest.Record(b, src, dst, 6, sport, 80, 1, 100)
	}
	return b
}

func TestEnrichExample(t *testing.T) {
	h := start(t, exampleConfig(), plugin.NopSettings(ID))
	b := flow.NewBatch(4)
	plugintest.Record(b, "10.1.2.3", "192.0.2.1", 6, 1000, 80, 1, 100)
	plugintest.Record(b, "10.1.9.9", "10.9.9.9", 17, 1001, 53, 1, 100)
	plugintest.Record(b, "fd00:1::5", "2001:db8::1", 6, 1002, 443, 1, 100)
	r := plugintest.Record(b, "10.1.2.3", "10.1.2.3", 6, 1003, 443, 1, 100)
	r.SetString(flow.SourcePodLabels, `{"app":"web","env":"prod"}`)
	if err := h.Process(context.Background(), b); err != nil {
		t.Fatalf("Process: %v", err)
	}
	want := []struct{ src, dst string }{
		{`{"env":"staging","role":"db","team":"blue"}`, ""},
		{`{"env":"private","team":"blue"}`, `{"env":"private"}`},
		{`{"env":"private","team":"green"}`, ""},
		{`{"app":"web","env":"prod","role":"db","team":"blue"}`, `{"env":"staging","role":"db","team":"blue"}`},
	}
	if b.Len() != len(want) {
		t.Fatalf("got %d records, want %d", b.Len(), len(want))
	}
	for i, w := range want {
		r := b.Records[i]
		if r.SourcePodLabels != w.src || r.DestinationPodLabels != w.dst {
			t.Errorf("record %d: labels %q / %q, want %q / %q", i, r.SourcePodLabels, r.DestinationPodLabels, w.src, w.dst)
		}
		if r.SourceTransportPort != uint16(1000+i) || r.PacketDeltaCount != 1 {
			t.Errorf("record %d: other fields changed: %+v", i, r)
		}
	}
	if got := counter(t, h.reg, "weir_rpc_up", ""); got != 1 {
		t.Errorf("weir_rpc_up = %v, want 1", got)
	}
}

func TestFilterVerdicts(t *testing.T) {
	h := start(t, testPluginConfig_(testPluginConfig{Filter: true}), plugin.NopSettings(ID))
	b := plugintest.MixedBatch(100) // TCP, UDP, ICMP, ICMPv6 in turn
	if err := h.Process(context.Background(), b); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if b.Len() != 75 {
		t.Fatalf("kept %d records, want 75", b.Len())
	}
	for i, r := range b.Records {
		if r.ProtocolIdentifier == 17 {
			t.Errorf("record %d: UDP kept", i)
		}
		if r.SourceNodeName != fmt.Sprintf("pid-%d", h.PID()) {
			t.Errorf("record %d: not enriched: %q", i, r.SourceNodeName)
		}
	}
}

// TestEnv checks that env: reaches the plugin's environment, GOMAXPROCS
// included, which overrides the SDK's half of the CPUs.
func TestEnv(t *testing.T) {
	cfg := testPluginConfig_(testPluginConfig{})
	cfg.Env = map[string]string{"WEIR_TEST_NODE_NAME": "from-env", "GOMAXPROCS": "3"}
	h := start(t, cfg, plugin.NopSettings(ID))
	b := plugintest.MixedBatch(4)
	if err := h.Process(context.Background(), b); err != nil {
		t.Fatalf("Process: %v", err)
	}
	for i, r := range b.Records {
		if r.SourceNodeName != "from-env/procs=3" {
			t.Errorf("record %d: %q, want from-env/procs=3", i, r.SourceNodeName)
		}
	}
}

func TestConcurrentProcess(t *testing.T) {
	cfg := exampleConfig()
	cfg.InFlight = 3
	h := start(t, cfg, plugin.NopSettings(ID))
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				b := batchOf("10.1.2.3", "10.1.0.1", uint16(g), 1+i*7)
				if err := h.Process(context.Background(), b); err != nil {
					t.Errorf("Process: %v", err)
					return
				}
				for _, r := range b.Records {
					if r.SourcePodLabels != `{"env":"staging","role":"db","team":"blue"}` || r.DestinationPodLabels != `{"env":"private","team":"blue"}` || r.SourceTransportPort != uint16(g) {
						bad.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d records wrongly enriched", bad.Load())
	}
}

func TestEmptyBatch(t *testing.T) {
	h := start(t, exampleConfig(), plugin.NopSettings(ID))
	if err := h.Process(context.Background(), flow.NewBatch(0)); err != nil {
		t.Fatal(err)
	}
}

func TestStartErrors(t *testing.T) {
	sum := "0000000000000000000000000000000000000000000000000000000000000000"
	tests := []struct {
		name    string
		mutate  func(c *Config)
		env     string
		want    error
		message string // substring of the error
	}{
		{"missing binary", func(c *Config) { c.Cmd = "testdata/no-such-plugin" }, "", ErrNotFound, "no-such-plugin"},
		{"checksum mismatch", func(c *Config) { c.SHA256 = sum }, "", ErrChecksum, filepath.Base(exampleBin)},
		{"not a plugin", func(c *Config) { c.Cmd = "/bin/echo"; c.Args = []string{"hello"} }, "", ErrHandshake, "echo"},
		// Issue 12: a wrapper whose child keeps stdout open must not hold
		// the failed start until the child exits.
		{"wrapper child keeps stdout", func(c *Config) {
			c.Cmd = "/bin/sh"
			c.Args = []string{"-c", "sleep 30 & echo not-a-handshake"}
		}, "", ErrHandshake, "sh"},
		{"silent binary", func(c *Config) {
			c.Cmd = "/bin/sleep"
			c.Args = []string{"30"}
			c.StartTimeout = 300 * time.Millisecond
		}, "", ErrHandshake, "timeout"},
		{"protocol version", func(c *Config) { c.Cmd = os.Args[0]; c.Args = []string{argPlugin} }, "WEIR_TEST_PROTOCOL_VERSION=99", ErrHandshake, "incompatible API version"},
		{"protocol version 1", func(c *Config) { c.Cmd = os.Args[0]; c.Args = []string{argPlugin} }, "WEIR_TEST_PROTOCOL_VERSION=1", ErrHandshake, "the plugin speaks rpc protocol 1, this Weir speaks 3: rebuild the plugin"},
		{"config rejected", func(c *Config) {
			c.Cmd = os.Args[0]
			c.Args = []string{argPlugin}
			c.Config = testPluginConfig{Reject: "bad threshold 7"}
		}, "", ErrInit, "bad threshold 7"},
		{"example without table", func(c *Config) { c.Config = nil }, "", ErrInit, "table: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				k, v, _ := strings.Cut(tt.env, "=")
				t.Setenv(k, v)
			}
			cfg := exampleConfig()
			tt.mutate(cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			begin := time.Now()
			p, err := New(cfg, plugin.NopSettings(ID))
			if err == nil {
				err = p.Start(context.Background())
				if err == nil {
					p.Shutdown(context.Background())
				}
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not mention %q", err, tt.message)
			}
			if d := time.Since(begin); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			// Check reports the same problem for `weir validate`.
			if err := cfg.Check(context.Background(), ""); !errors.Is(err, tt.want) {
				t.Errorf("Check: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestChecksumPinned(t *testing.T) {
	sum, err := fileSHA256(exampleBin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := exampleConfig()
	cfg.SHA256 = strings.ToUpper(sum)
	h := start(t, cfg, plugin.NopSettings(ID))
	b := batchOf("10.1.2.3", "192.0.2.1", 1, 1)
	if err := h.Process(context.Background(), b); err != nil || b.Records[0].SourcePodLabels == "" {
		t.Fatalf("Process: %v, labels %q", err, b.Records[0].SourcePodLabels)
	}
	if err := cfg.Check(context.Background(), ""); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestRelativeCmd(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink(exampleBin, filepath.Join(dir, "labels")); err != nil {
		t.Fatal(err)
	}
	table, _ := filepath.Abs("testdata/subnets.csv")
	cfg := exampleConfig()
	cfg.Cmd = "labels"
	cfg.Config = map[string]any{"table": table}
	set := plugin.NopSettings(ID)
	set.BaseDir = dir
	h := start(t, cfg, set)
	if h.launch.path != filepath.Join(dir, "labels") {
		t.Errorf("resolved %s", h.launch.path)
	}
	if _, err := New(cfg, plugin.NopSettings(ID)); !errors.Is(err, ErrNotFound) {
		t.Errorf("without BaseDir: %v, want ErrNotFound", err)
	}
}

// TestFaults makes the plugin crash, hang, answer garbage and panic on one
// batch each: Process returns the reason (the engine applies on_error) with
// the batch unchanged, the plugin is restarted, and the next batch is
// served by the new process.
func TestFaults(t *testing.T) {
	tests := []struct {
		port    uint16
		reason  string
		wantErr error
	}{
		{portCrash, ReasonCrash, ErrCrashed},
		{portHang, ReasonTimeout, ErrTimeout},
		{portGarbage, ReasonGarbage, ErrGarbage},
		{portPanic, ReasonCrash, ErrCrashed},
	}
	{
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%d", tt.reason, tt.port), func(t *testing.T) {
				cfg := testPluginConfig_(testPluginConfig{})
				cfg.Timeout = 300 * time.Millisecond
				h := start(t, cfg, plugin.NopSettings(ID))
				pid := h.PID()

				b := batchOf("10.0.0.1", "10.0.0.2", tt.port, 10)
				begin := time.Now()
				err := h.Process(context.Background(), b)
				if d := time.Since(begin); d > cfg.Timeout+2*time.Second {
					t.Errorf("Process took %s", d)
				}
				var be *BatchError
				if !errors.As(err, &be) || be.Reason != tt.reason || !errors.Is(err, tt.wantErr) || plugin.ReasonOf(err) != tt.reason {
					t.Fatalf("Process: %v, want a %s BatchError", err, tt.reason)
				}
				if b.Len() != 10 || b.Records[0].SourceNodeName != "" || b.Records[0].SourceTransportPort != tt.port {
					t.Errorf("a failed batch changed: %d records, %+v", b.Len(), b.Records[0])
				}
				if got := counter(t, h.reg, "weir_rpc_errors_total", "reason="+tt.reason); got != 1 {
					t.Errorf("errors{%s} = %v, want 1", tt.reason, got)
				}

				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := h.WaitReady(ctx); err != nil {
					t.Fatalf("no restart: %v", err)
				}
				if h.PID() == pid {
					t.Fatalf("still pid %d", pid)
				}
				if alive(pid) {
					t.Errorf("old plugin %d still running", pid)
				}
				if got := counter(t, h.reg, "weir_rpc_restarts_total", ""); got != 1 {
					t.Errorf("restarts = %v, want 1", got)
				}
				b = batchOf("10.0.0.1", "10.0.0.2", 1, 10)
				if err := h.Process(context.Background(), b); err != nil {
					t.Fatalf("after restart: %v", err)
				}
				if want := fmt.Sprintf("pid-%d", h.PID()); b.Records[9].SourceNodeName != want {
					t.Errorf("after restart: %q, want %q", b.Records[9].SourceNodeName, want)
				}
			})
		}
	}
}

// TestKill9MidStream kills the plugin with SIGKILL while three goroutines
// send batches and one slow batch is sure to be in flight: that batch is
// counted as a crash, no record is lost under fail-open, every failed batch
// is counted, and the restarted plugin enriches again.
func TestKill9MidStream(t *testing.T) {
	cfg := testPluginConfig_(testPluginConfig{})
	cfg.Timeout = 2 * time.Second
	cfg.RestartBackoff.Initial = 50 * time.Millisecond
	h := start(t, cfg, plugin.NopSettings(ID))
	first := h.PID()

	var sent, received, failed atomic.Int64
	var enrichedAfter atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	send := func(b *flow.Batch) error {
		sent.Add(int64(b.Len()))
		err := h.Process(context.Background(), b)
		var be *BatchError
		if err != nil && !errors.As(err, &be) {
			t.Errorf("Process: %v", err)
		}
		if err != nil {
			failed.Add(1)
		}
		received.Add(int64(b.Len()))
		return err
	}
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := batchOf("10.1.2.3", "10.1.0.1", uint16(i%1000), 64)
				if send(b) == nil {
					if pid := h.PID(); pid != first && b.Records[0].SourceNodeName == fmt.Sprintf("pid-%d", pid) {
						enrichedAfter.Store(true)
					}
				}
			}
		}()
	}
	slow := make(chan error, 1)
	go func() { slow <- send(batchOf("10.0.0.1", "10.0.0.2", portSlow, 64)) }()
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var be *BatchError
	if err := <-slow; !errors.As(err, &be) || be.Reason != ReasonCrash {
		t.Errorf("batch in flight during the kill: %v, want a crash BatchError", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !enrichedAfter.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	if !enrichedAfter.Load() {
		t.Errorf("no batch enriched by the restarted plugin")
	}
	if sent.Load() != received.Load() {
		t.Errorf("sent %d records, got %d back", sent.Load(), received.Load())
	}
	if got := errorsTotal(t, h.reg); got != float64(failed.Load()) {
		t.Errorf("weir_rpc_errors_total sums to %v, %d batches failed", got, failed.Load())
	}
	if got := counter(t, h.reg, "weir_rpc_errors_total", "reason="+ReasonCrash); got < 1 {
		t.Errorf("errors{crash} = %v", got)
	}
	if got := counter(t, h.reg, "weir_rpc_restarts_total", ""); got != 1 {
		t.Errorf("restarts = %v, want 1", got)
	}
	t.Logf("%d records, %d batches failed during the restart", sent.Load(), failed.Load())
}

func TestShutdownStopsPlugin(t *testing.T) {
	p, err := New(exampleConfig(), plugin.NopSettings(ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	if !alive(pid) {
		t.Fatalf("plugin %d not running", pid)
	}
	begin := time.Now()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("plugin %d still running after Shutdown", pid)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("graceful shutdown took %s", d)
	}
	// Process after Shutdown fails through on_error instead of hanging.
	b := batchOf("10.0.0.1", "10.0.0.2", 1, 3)
	var be *BatchError
	if err := p.Process(context.Background(), b); !errors.As(err, &be) || be.Reason != ReasonUnavailable || b.Len() != 3 {
		t.Errorf("Process after Shutdown: %v, %d records", err, b.Len())
	}
}

// TestNoOrphan kills a host process with SIGKILL and checks that its
// plugin dies with it.
func TestNoOrphan(t *testing.T) {
	table, _ := filepath.Abs("testdata/subnets.csv")
	host := exec.Command(os.Args[0], argHost, exampleBin, table)
	host.Stderr = os.Stderr
	stdout, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer host.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("host: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("host said %q", line)
	}
	if !alive(pid) {
		t.Fatalf("plugin %d not running", pid)
	}
	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	host.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin %d outlived its host", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// recordingHandler keeps log records for assertions.
type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
	with []slog.Attr
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	r = r.Clone()
	r.AddAttrs(h.with...)
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordingProxy{h, append(append([]slog.Attr(nil), h.with...), as...)}
}
func (h *recordingHandler) WithGroup(string) slog.Handler { return h }

type recordingProxy struct {
	root *recordingHandler
	with []slog.Attr
}

func (p *recordingProxy) Enabled(context.Context, slog.Level) bool { return true }
func (p *recordingProxy) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(p.with...)
	return p.root.Handle(ctx, r)
}
func (p *recordingProxy) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordingProxy{p.root, append(append([]slog.Attr(nil), p.with...), as...)}
}
func (p *recordingProxy) WithGroup(string) slog.Handler { return p }

func (h *recordingHandler) find(msg string) (slog.Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.recs {
		if strings.Contains(r.Message, msg) {
			return r, true
		}
	}
	return slog.Record{}, false
}

func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

func TestPluginLogs(t *testing.T) {
	rec := &recordingHandler{}
	set := plugin.NopSettings(ID)
	set.Logger = slog.New(rec)
	start(t, testPluginConfig_(testPluginConfig{Log: true}), set)
	deadline := time.Now().Add(5 * time.Second)
	for {
		warn, ok1 := rec.find("test plugin warns")
		raw, ok2 := rec.find("test plugin prints to stderr")
		if ok1 && ok2 {
			if warn.Level != slog.LevelWarn || attr(warn, "answer") != "42" {
				t.Errorf("structured log: level %s, answer %q", warn.Level, attr(warn, "answer"))
			}
			if raw.Level != slog.LevelInfo {
				t.Errorf("stderr line at level %s, want INFO", raw.Level)
			}
			if got := attr(warn, "cmd"); got != filepath.Base(os.Args[0]) {
				t.Errorf("cmd attribute %q", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin logs not seen (structured %v, stderr %v)", ok1, ok2)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		p, err := New(exampleConfig(), plugin.NopSettings(ID))
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
}

func TestProcessHonoursContext(t *testing.T) {
	cfg := testPluginConfig_(testPluginConfig{})
	cfg.InFlight = 1
	cfg.Timeout = 5 * time.Second
	h := start(t, cfg, plugin.NopSettings(ID))
	// Occupy the only slot with a hanging batch.
	go h.Process(context.Background(), batchOf("10.0.0.1", "10.0.0.2", portHang, 1))
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	b := batchOf("10.0.0.1", "10.0.0.2", 1, 2)
	if err := h.Process(ctx, b); !errors.Is(err, context.DeadlineExceeded) || b.Len() != 2 {
		t.Fatalf("got %v, %d records; want the context's error", err, b.Len())
	}
}

func TestAddrHelpers(t *testing.T) {
	// The example treats IPv4-mapped IPv6 addresses as IPv4.
	h := start(t, exampleConfig(), plugin.NopSettings(ID))
	b := flow.NewBatch(1)
	r := b.Append()
	r.SetAddr(flow.SourceAddress, netip.MustParseAddr("::ffff:10.1.2.3"))
	if err := h.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if b.Records[0].SourcePodLabels != `{"env":"staging","role":"db","team":"blue"}` {
		t.Errorf("mapped address: %q", b.Records[0].SourcePodLabels)
	}
}

// TestStoppedPlugin stops the plugin (SIGSTOP) so that it reads nothing:
// a batch too large for the socket's buffers then blocks in gRPC's flow
// control, and Process must still give up at its timeout and restart the
// plugin.
func TestStoppedPlugin(t *testing.T) {
	cfg := exampleConfig()
	cfg.Timeout = 300 * time.Millisecond
	cfg.InFlight = 3
	cfg.RestartBackoff = Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	h := start(t, cfg, plugin.NopSettings(ID))
	pid := h.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Built before any call starts: under -race building one takes long
	// enough that a late call would reach the restarted plugin.
	batches := make([]*flow.Batch, cfg.InFlight)
	for i := range batches {
		batches[i] = plugintest.MixedBatch(50000) // megabytes: more than the socket holds
	}
	begin := time.Now()
	var wg sync.WaitGroup
	for _, b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := h.Process(context.Background(), b)
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCrashed) {
				t.Errorf("got %v, want ErrTimeout or ErrCrashed (aborted)", err)
			}
		}()
	}
	wg.Wait()
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Process took %s with a timeout of %s", d, cfg.Timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.WaitReady(ctx); err != nil || h.PID() == pid {
		t.Fatalf("plugin not restarted: %v (pid %d, was %d)", err, h.PID(), pid)
	}
}

// TestRestartFailingFailsFast reproduces issue 12: a plugin that cannot
// restart, with restart_backoff.max within timeout, must not make every
// batch wait its whole timeout for the next attempt; once an attempt has
// failed, batches go through on_error at once.
func TestRestartFailingFailsFast(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "plugin.sh")
	body := "#!/bin/sh\nif [ -e " + dir + "/started ]; then exit 3; fi\ntouch " + dir + "/started\nexec " + exampleBin + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := exampleConfig()
	cfg.Cmd = script
	cfg.Timeout = 20 * time.Second
	cfg.RestartBackoff = Backoff{Initial: 10 * time.Millisecond, Max: time.Second}
	h := start(t, cfg, plugin.NopSettings(ID))
	if err := h.Process(context.Background(), batchOf("10.1.2.3", "10.1.0.1", 1, 8)); err != nil {
		t.Fatalf("first batch: %v", err)
	}
	if err := syscall.Kill(h.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for counter(t, h.reg, "weir_rpc_start_errors_total", "") < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	began := time.Now()
	for i := range 5 {
		err := h.Process(context.Background(), batchOf("10.1.2.3", "10.1.0.1", uint16(i), 8))
		var be *BatchError
		if !errors.As(err, &be) {
			t.Fatalf("batch %d while the plugin cannot start: %v, want a BatchError", i, err)
		}
	}
	// Five batches waiting for restarts would take 5 × timeout (100s).
	if d := time.Since(began); d >= cfg.Timeout {
		t.Errorf("5 batches took %s while the plugin was down, want far less than one timeout (%s)", d, cfg.Timeout)
	}
}
