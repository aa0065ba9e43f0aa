package hostile

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
)

// TestSecondSignalExits: a shutdown stuck on a dead collector (export.ipfix
// over TCP to a port nobody listens on, so the exporter cannot drain its
// batch; --shutdown-timeout 10m) is cut short by a second SIGTERM: weir
// exits at once with status 130, saying so, without the end-of-shutdown
// summary.
func TestSecondSignalExits(t *testing.T) {
	udpPort, deadPort := weirtest.FreePort(t, "udp"), weirtest.FreePort(t, "tcp")
	w := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  batch: {size: 64, timeout: 50ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}
  exporters:
    - export.ipfix: {address: "127.0.0.1:%d", transport: tcp}
`, udpPort, deadPort), "--shutdown-timeout", "10m")
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range records(t, 1, 0, 100, 1400) {
		if _, err := c.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	// The exporter is stuck dialling the dead collector with this batch.
	w.WaitSample(t, "weir_export_ipfix_dial_errors_total", "", 1)
	if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(w.Stderr.String(), "shutting down: signal received"); {
		if time.Now().After(deadline) {
			t.Fatal("weir did not start shutting down on SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The second-signal watcher starts listening once the first signal is
	// handled: repeat the signal until it exits (each one after the first
	// is a second signal).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(60 * time.Second)
wait:
	for {
		if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) && !strings.Contains(err.Error(), "finished") {
			t.Fatal(err)
		}
		select {
		case <-w.Exited:
			break wait
		case <-tick.C:
		case <-timeout:
			t.Fatal("weir did not exit on a second SIGTERM")
		}
	}
	var ee *exec.ExitError
	if !errors.As(w.WaitErr, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("weir exited with %v, want status 130", w.WaitErr)
	}
	out := w.Stderr.String()
	if !strings.Contains(out, "second signal: exiting without finishing the shutdown") {
		t.Errorf("no second-signal message in stderr")
	}
	if strings.Contains(out, "stage summary") {
		t.Errorf("the shutdown finished (stage summary logged): the test did not exercise a stuck shutdown")
	}
}
