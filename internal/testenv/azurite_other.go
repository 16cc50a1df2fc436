//go:build !linux

package testenv

import (
	"os/exec"
	"syscall"
)

func azuriteSysProcAttr() *syscall.SysProcAttr { return nil }

func signalAzurite(cmd *exec.Cmd, sig syscall.Signal) { _ = cmd.Process.Signal(sig) }
