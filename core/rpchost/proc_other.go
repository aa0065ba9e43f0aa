//go:build !linux

package rpchost

import "os/exec"

// setParentDeathSignal is Linux-only; elsewhere the SDK's parent watch
// ends an orphaned plugin.
func setParentDeathSignal(*exec.Cmd) {}

func killGroup(*exec.Cmd) {}
