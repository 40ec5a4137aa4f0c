package cluster

import (
	"os"
	"syscall"
)

// procAttr puts every component in its own process group, so that Stop can
// signal anything it forked, and asks the kernel to kill the component if
// the test binary dies without running its cleanups (a -timeout panic, a
// SIGKILL).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group led by p.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
