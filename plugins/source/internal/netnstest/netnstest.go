// Package netnstest creates network namespaces for tests (as root, with
// `ip netns`), runs code and commands inside them, and removes them when
// the test ends.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

var seq atomic.Int64

// New creates a network namespace named PREFIX-PID-N with loopback up and
// deletes it (killing what still runs in it) when t ends.
func New(t testing.TB, prefix string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespace tests need root (CI runs as root)")
	}
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		// Kill what the test left in the namespace before deleting it.
		if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	Exec(t, name, "ip", "link", "set", "lo", "up")
	return name
}

// Run runs a command and fails t with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Exec runs a command inside namespace ns and fails t if it fails.
func Exec(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Command returns a command that runs inside namespace ns.
func Command(ns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Veth links namespaces a and b with a veth pair (ifA in a, ifB in b), gives
// them the addresses (CIDR, any number, IPv4 or IPv6) and brings them up.
// IPv6 duplicate address detection is off so addresses work at once.
func Veth(t testing.TB, a, ifA string, addrsA []string, b, ifB string, addrsB []string) {
	t.Helper()
	// Temporary names unique to this process: other test binaries make
	// veths at the same time.
	n := seq.Add(1)
	tmpA, tmpB := fmt.Sprintf("w%dv%da", os.Getpid(), n), fmt.Sprintf("w%dv%db", os.Getpid(), n)
	Run(t, "ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	Run(t, "ip", "link", "set", tmpA, "netns", a)
	Run(t, "ip", "link", "set", tmpB, "netns", b)
	for _, side := range []struct {
		ns, tmp, name string
		addrs         []string
	}{{a, tmpA, ifA, addrsA}, {b, tmpB, ifB, addrsB}} {
		Exec(t, side.ns, "ip", "link", "set", side.tmp, "name", side.name)
		Exec(t, side.ns, "sysctl", "-qw", "net.ipv6.conf."+side.name+".accept_dad=0")
		for _, addr := range side.addrs {
			args := []string{"ip", "addr", "add", addr, "dev", side.name}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			Exec(t, side.ns, args...)
		}
		Exec(t, side.ns, "ip", "link", "set", side.name, "up")
	}
}

// Do runs fn on an OS thread switched into namespace ns: sockets fn opens
// belong to ns and stay there after Do returns.
func Do(t testing.TB, ns string, fn func()) {
	t.Helper()
	if err := do(ns, fn); err != nil {
		t.Fatal(err)
	}
}

func do(ns string, fn func()) error {
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	// A fresh goroutine: if the thread cannot go back, it stays locked and
	// dies with the goroutine instead of running other code in ns.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		var panicked any
		func() {
			defer func() { panicked = recover() }()
			fn()
		}()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		if panicked != nil {
			errc <- fmt.Errorf("panic in netns %s: %v", ns, panicked)
			return
		}
		errc <- nil
	}()
	return <-errc
}
