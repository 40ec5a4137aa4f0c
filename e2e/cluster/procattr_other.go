//go:build !linux

package cluster

import (
	"os"
	"syscall"
)

// procAttr: outside Linux there is no parent-death signal; components are
// still stopped by Stop and on context cancellation.
func procAttr() *syscall.SysProcAttr { return nil }

// signalGroup signals only the process itself.
func signalGroup(p *os.Process, sig syscall.Signal) error { return p.Signal(sig) }
