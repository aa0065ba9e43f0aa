package rpchost

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel SIGKILL the plugin when Weir dies,
// even by SIGKILL, so no plugin outlives its host. The SDK also watches its
// parent, which covers the case where the forking thread exits first.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
