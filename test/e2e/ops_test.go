package e2e

// Operating Weir: validate refuses what run refuses, health endpoints,
// signals, port ownership.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
)

// weirCmd runs the weir binary with args and returns its combined output
// and exit error.
func weirCmd(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(weirBin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestValidate: `weir validate` refuses every config `weir run` refuses,
// prints warnings (errors with --strict), and takes the file as -c FILE or
// as a positional argument.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notWasm := write("junk.wasm", "not a wasm module")
	tests := []struct {
		name    string
		yaml    string
		args    []string // before the file
		want    string   // substring of the output
		wantErr bool
	}{
		{"no sources", "pipeline:\n  exporters: [{export.jsonl: {}}]\n", nil, "pipeline.sources: at least one source is required", true},
		{"no exporters", "pipeline:\n  sources: [{source.ipfix: {udp: \"127.0.0.1:0\", tcp: \"\"}}]\n", nil, "pipeline.exporters: at least one exporter is required", true},
		{"missing pcap", "pipeline:\n  sources: [{source.pcap: {path: missing.pcap}}]\n  exporters: [{export.jsonl: {}}]\n", nil, "pipeline.sources[0].source.pcap: path: open", true},
		{"missing jsonl directory", "pipeline:\n  sources: [{source.pcap: {path: " + filepath.Join(weirtest.RepoRoot(), "test/testdata/softflowd-ipfix.pcap") + "}}]\n  exporters: [{export.jsonl: {path: nodir/x.jsonl}}]\n", nil, "pipeline.exporters[0].export.jsonl: path: stat", true},
		{"wasm that is not wasm", "pipeline:\n  sources: [{source.ipfix: {udp: \"127.0.0.1:0\", tcp: \"\"}}]\n  processors: [{wasm: {path: " + notWasm + "}}]\n  exporters: [{export.jsonl: {}}]\n", nil, "pipeline.processors[0].wasm", true},
		{"rpc binary missing", "pipeline:\n  sources: [{source.ipfix: {udp: \"127.0.0.1:0\", tcp: \"\"}}]\n  processors: [{rpc: {cmd: ./no-such-plugin}}]\n  exporters: [{export.jsonl: {}}]\n", nil, "pipeline.processors[0].rpc", true},
		{"invalid protocol name is a warning", "pipeline:\n  sources: [{source.ipfix: {udp: \"127.0.0.1:0\", tcp: \"\"}}]\n  processors: [{filter.protocol: {protocols: [tcp, tcpp]}}]\n  exporters: [{export.jsonl: {}}]\n", nil, "warning: pipeline.processors[0].filter.protocol: ignoring protocols[1] = tcpp", false},
		{"warning with --strict", "pipeline:\n  sources: [{source.ipfix: {udp: \"127.0.0.1:0\", tcp: \"\"}}]\n  processors: [{filter.protocol: {protocols: [tcp, tcpp]}}]\n  exporters: [{export.jsonl: {}}]\n", []string{"--strict"}, "--strict: the config has warnings", true},
		{"duplicate stage names", "pipeline:\n  sources: [{name: in, source.ipfix: {udp: \"127.0.0.1:0\", tcp: \"\"}}]\n  exporters: [{name: in, export.jsonl: {}}]\n", nil, `pipeline.exporters[0].export.jsonl.name: "in" is already the name of pipeline.sources[0].source.ipfix`, true},
		{"valid", "pipeline:\n  sources: [{name: in, source.ipfix: {udp: \"127.0.0.1:0\", tcp: \"\"}}]\n  exporters: [{export.jsonl: {}}]\n", nil, "ok (1 sources, 0 processors, 1 exporters)", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := write(fmt.Sprintf("case%d.yaml", i), tt.yaml)
			for _, form := range [][]string{{"-c", file}, {file}} {
				out, err := weirCmd(t, dir, append(append([]string{"validate"}, tt.args...), form...)...)
				if (err != nil) != tt.wantErr {
					t.Errorf("weir validate %s: err %v, want error %v:\n%s", strings.Join(form, " "), err, tt.wantErr, out)
				}
				if !strings.Contains(out, tt.want) {
					t.Errorf("weir validate %s: output lacks %q:\n%s", strings.Join(form, " "), tt.want, out)
				}
			}
			if tt.wantErr && !strings.Contains(tt.name, "strict") && !strings.Contains(tt.name, "duplicate") {
				// run refuses the same config, with the same words.
				cmd := exec.Command(weirBin, "run", file)
				cmd.Dir = dir
				done := make(chan struct{})
				var out []byte
				var err error
				go func() { out, err = cmd.CombinedOutput(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					cmd.Process.Kill()
					<-done
					t.Fatalf("weir run started a config validate refuses:\n%s", out)
				}
				if err == nil || !strings.Contains(string(out), strings.SplitN(tt.want, ":", 2)[0]) {
					t.Errorf("weir run: err %v, want a refusal naming %q:\n%s", err, strings.SplitN(tt.want, ":", 2)[0], out)
				}
			}
		})
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestHealthEndpoints: /healthz and /readyz before the pipeline runs (an
// RPC plugin that takes 2 s to start), while it runs and during shutdown
// (a source draining a busy socket); /metrics only at /metrics; pprof only
// when enabled; 404 elsewhere.
func TestHealthEndpoints(t *testing.T) {
	plugin := buildSubnetLabels(t)
	slow := filepath.Join(t.TempDir(), "slow-plugin.sh")
	if err := os.WriteFile(slow, []byte("#!/bin/sh\nsleep 2\nexec "+plugin+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	udpPort := weirtest.FreePort(t, "udp")
	metrics := fmt.Sprintf("127.0.0.1:%d", weirtest.FreePort(t, "tcp"))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "weir.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
telemetry: {metrics_address: %q}
pipeline:
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}
  processors:
    - rpc: {cmd: %s, config: {table: %s}, start_timeout: 30s}
  exporters:
    - export.jsonl: {path: %q}
`, metrics, udpPort, slow, filepath.Join(weirtest.RepoRoot(), "examples/rpc/subnetlabels/subnets.csv"), filepath.Join(dir, "out.jsonl"))), 0o644)
	var stderr lockedBuffer
	cmd := exec.Command(weirBin, "run", cfg)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("weir stderr:\n%s", stderr.String())
		}
	})
	base := "http://" + metrics
	// Before start: the admin server is up, the pipeline is not.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "starting") {
				t.Fatalf("/readyz before start: %d %q, want 503 starting", resp.StatusCode, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin server never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz before start: %d, want 200", code)
	}
	for !strings.Contains(stderr.String(), "pipeline running") {
		if time.Now().After(deadline) {
			t.Fatal("weir did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		path, want string
		code       int
	}{
		{"/healthz", "ok", 200},
		{"/readyz", "ready", 200},
		{"/metrics", "weir_build_info{", 200},
		{"/metrics", `weir_queue_batches{pipeline="main",stage="queue"}`, 200},
		{"/", "processors[0]", 200},
		{"/anything", "404", 404},
		{"/debug/pprof/", "404", 404},
		{"/metrics/x", "404", 404},
	} {
		code, body := httpGet(t, base+c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d, want %d with %q:\n%.300s", c.path, code, c.code, c.want, body)
		}
	}
	// During shutdown: keep the socket busy so the source drains for up
	// to 2 s, and catch /readyz saying so while /healthz stays 200.
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	stop := make(chan struct{})
	stopSending := sync.OnceFunc(func() { close(stop) })
	defer stopSending()
	msgs := goodRecords(t, 1, 0, 1000)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			u.Write(msgs[i%len(msgs)])
			time.Sleep(50 * time.Microsecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	sawShutdown := false
	for !sawShutdown {
		select {
		case err := <-exited:
			t.Fatalf("weir exited (%v) before /readyz reported the shutdown", err)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "shutting down") {
			sawShutdown = true
			if code, _ := httpGet(t, base+"/healthz"); code != 200 {
				t.Errorf("/healthz during shutdown: %d, want 200", code)
			}
		}
	}
	stopSending()
	if err := <-exited; err != nil {
		t.Errorf("weir exited with %v, want 0", err)
	}
}

// TestPprof: /debug/pprof/ answers only with telemetry.pprof: true.
func TestPprof(t *testing.T) {
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}", pprof: true}
pipeline:
  sources: [{source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}}]
  exporters: [{export.jsonl: {path: %q}}]
`, weirtest.FreePort(t, "udp"), filepath.Join(t.TempDir(), "x.jsonl")))
	code, body := httpGet(t, "http://"+w.Metrics+"/debug/pprof/")
	if code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ with pprof: true: %d\n%.300s", code, body)
	}
	if code, _ := httpGet(t, "http://"+w.Metrics+"/debug/pprof/goroutine?debug=1"); code != 200 {
		t.Errorf("/debug/pprof/goroutine: %d", code)
	}
	w.Stop(t)
}

// TestSIGHUPDoesNotKill: SIGHUP (what `systemctl reload` sends) reloads;
// weir keeps running and loses nothing.
func TestSIGHUPDoesNotKill(t *testing.T) {
	udpPort := weirtest.FreePort(t, "udp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 64, timeout: 50ms}
  sources: [{source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}}]
  exporters: [{export.jsonl: {path: %q}}]
`, udpPort, jsonl))
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	msgs := goodRecords(t, 1, 0, 500)
	for i, m := range msgs {
		u.Write(m)
		if i == len(msgs)/2 {
			w.Cmd.Process.Signal(syscall.SIGHUP)
			w.WaitLog(t, "msg=reloaded", 1)
		}
	}
	w.Cmd.Process.Signal(syscall.SIGHUP)
	w.WaitLog(t, "msg=reloaded", 2)
	if !w.Running() {
		t.Fatalf("weir died of SIGHUP: %v\n%s", w.WaitErr, w.Stderr.String())
	}
	w.Stop(t)
	if got := len(jsonlLines(t, jsonl)); got != 500 {
		t.Errorf("got %d records, want 500", got)
	}
	if n := strings.Count(w.Stderr.String(), "msg=reloaded"); n != 2 {
		t.Errorf("%d reloads logged, want 2", n)
	}
}

// TestSIGTERMProcessGroupRPC: SIGTERM to weir's whole process group (what
// systemd and timeout(1) do) with an RPC plugin running: weir exits 0,
// drains through the plugin, and logs no ERROR and no WARN.
func TestSIGTERMProcessGroupRPC(t *testing.T) {
	plugin := buildSubnetLabels(t)
	udpPort := weirtest.FreePort(t, "udp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeirCmd(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 64, timeout: 10s}
  sources: [{source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}}]
  processors:
    - rpc: {cmd: %s, config: {table: %s}}
  exporters: [{export.jsonl: {path: %q}}]
`, udpPort, plugin, filepath.Join(weirtest.RepoRoot(), "examples/rpc/subnetlabels/subnets.csv"), jsonl),
		func(c *exec.Cmd) { c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} })
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, m := range goodRecords(t, 1, 0, 3000) {
		u.Write(m)
	}
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(-w.Cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Exited:
	case <-time.After(30 * time.Second):
		t.Fatal("weir did not exit")
	}
	if w.WaitErr != nil {
		t.Fatalf("weir exited with %v, want 0:\n%s", w.WaitErr, w.Stderr.String())
	}
	for _, bad := range []string{"level=ERROR", "level=WARN"} {
		if strings.Contains(w.Stderr.String(), bad) {
			t.Errorf("weir logged %s on SIGTERM to its process group:\n%s", bad, w.Stderr.String())
		}
	}
	if got := len(jsonlLines(t, jsonl)); got != 3000 {
		t.Errorf("got %d records through the plugin, want 3000", got)
	}
}

// TestSecondInstanceSamePort: a second weir on a UDP port the first holds
// (with SO_REUSEPORT readers) fails at start with a clear error instead of
// splitting the traffic.
func TestSecondInstanceSamePort(t *testing.T) {
	udpPort := weirtest.FreePort(t, "udp")
	yaml := fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  sources: [{source.ipfix: {udp: "127.0.0.1:%d", tcp: "", readers: 2}}]
  exporters: [{export.jsonl: {path: %q}}]
`, udpPort, filepath.Join(t.TempDir(), "x.jsonl"))
	first := startWeir(t, yaml)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "second.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(yaml, "{{metrics}}", fmt.Sprintf("127.0.0.1:%d", weirtest.FreePort(t, "tcp")))), 0o644)
	out, err := weirCmd(t, dir, "run", cfg)
	if err == nil {
		t.Fatalf("the second weir ran on a bound port:\n%s", out)
	}
	want := fmt.Sprintf("source.ipfix: listen udp 127.0.0.1:%d: address already in use by another socket (set reuse_port: true to share it)", udpPort)
	if !strings.Contains(out, want) {
		t.Errorf("second weir's error lacks %q:\n%s", want, out)
	}
	first.Stop(t)
}

// TestReloadWatch: with reload.watch, writing the file reloads it; a broken
// write is refused and the pipeline keeps running.
func TestReloadWatch(t *testing.T) {
	udpPort := weirtest.FreePort(t, "udp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	base := fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
reload: {watch: true}
pipeline:
  batch: {size: 64, timeout: 50ms}
  sources: [{source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}}]
  exporters: [{export.jsonl: {path: %q}}]
`, udpPort, jsonl)
	w := startWeir(t, base)
	write := func(extra string) {
		data := strings.ReplaceAll(base+extra, "{{metrics}}", w.Metrics)
		if err := os.WriteFile(w.Config, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("  processors: [{name: tcp-only, filter.protocol: {protocols: [tcp]}}]\n")
	w.WaitLog(t, `msg=reloaded trigger="config file changed"`, 1)
	write("  processors: [{filter.protocol: {protocols: 7}}]\n")
	w.WaitLog(t, `msg="reload refused: the running pipeline is unchanged" trigger="config file changed"`, 1)
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, m := range goodRecords(t, 1, 0, 100) { // UDP: the kept filter drops them
		u.Write(m)
	}
	w.WaitMetric(t, "weir_stage_records_dropped_total", 100)
	w.Stop(t)
	if in, out := w.StageSummary(t, "tcp-only"); in != 100 || out != 0 {
		t.Errorf("tcp-only: in %d out %d, want 100 and 0", in, out)
	}
}

// TestREADMEFirstRun: the README's first run, softflowd metering the
// repository's own raw capture into weir, prints one JSON line per flow
// (44).
func TestREADMEFirstRun(t *testing.T) {
	needTools(t, "softflowd")
	udpPort := weirtest.FreePort(t, "udp")
	jsonl := filepath.Join(t.TempDir(), "flows.jsonl")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 256, timeout: 50ms}
  sources: [{source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}}]
  processors: [{proxy: {}}]
  exporters: [{export.jsonl: {path: %q}}]
`, udpPort, jsonl))
	runSoftflowd(t, filepath.Join(weirtest.RepoRoot(), "test/testdata/netns-traffic.pcap"), udpPort)
	w.WaitMetric(t, "weir_stage_records_in_total", 3*44) // source, proxy, exporter
	w.Stop(t)
	lines := jsonlLines(t, jsonl)
	if len(lines) != 44 {
		t.Fatalf("got %d JSON lines, want the README's 44", len(lines))
	}
	for _, want := range []string{`"protocolIdentifier":6`, `"protocolIdentifier":17`, `"protocolIdentifier":1,`, `"protocolIdentifier":58`, `"sourceIPv6Address":"fd78::1"`, `"sourceIPv4Address":"10.78.0.1"`} {
		if !strings.Contains(strings.Join(lines, "\n"), want) {
			t.Errorf("no record with %s", want)
		}
	}
}
