package rpchost

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel SIGKILL the plugin when Weir dies,
// even by SIGKILL, so no plugin outlives its host. The SDK also watches its
// parent, which covers the case where the forking thread exits first.
//
// The plugin also gets its own process group (Setpgid): a signal to Weir's
// group (systemd's KillMode, `timeout`, Ctrl-C in a terminal) reaches Weir
// only, which then drains the batches still in the plugin and stops it in
// order, instead of the plugin dying under them mid-shutdown; and killGroup
// reaches the children of a wrapper script too.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// killGroup SIGKILLs the plugin's process group: a wrapper's children
// that still hold its stdout would otherwise keep go-plugin waiting for
// them (a failed handshake took as long as a `sleep 30` they ran).
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
