package testenv

import (
	"os/exec"
	"syscall"
)

// azuriteSysProcAttr puts Azurite in its own process group, so stopping it stops all of it,
// and has the kernel kill it if the test process dies first (a test timeout runs no cleanup).
func azuriteSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func signalAzurite(cmd *exec.Cmd, sig syscall.Signal) {
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		_ = cmd.Process.Signal(sig)
	}
}
