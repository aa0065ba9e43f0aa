package conntrack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// capNetAdmin is CAP_NET_ADMIN's bit (linux/capability.h).
const capNetAdmin = 12

// hasCapNetAdmin reports whether the calling thread has CAP_NET_ADMIN in
// its effective set, which ctnetlink requires for dumps and events.
func hasCapNetAdmin() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	return data[0].Effective&(1<<capNetAdmin) != 0, nil
}

// inNetNS runs fn on a thread moved into the network namespace at path
// ("" runs fn where we are). /proc/sys/net and new sockets belong to the
// namespace of the thread that opens them.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("netns %q: %w", path, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: own namespace: %w", err)
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %q: setns: %w", path, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so Go discards it when the goroutine ends.
		return errors.Join(ferr, fmt.Errorf("netns: back to own namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// sysctlPath maps "net.netfilter.nf_conntrack_acct" to its /proc/sys file.
func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// readSysctl reads a sysctl of the namespace at netns.
func readSysctl(netns, name string) (string, error) {
	var v string
	err := inNetNS(netns, func() error {
		b, err := os.ReadFile(sysctlPath(name))
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// writeSysctl sets a sysctl of the namespace at netns.
func writeSysctl(netns, name, value string) error {
	return inNetNS(netns, func() error {
		return os.WriteFile(sysctlPath(name), []byte(value), 0o644)
	})
}
