package vm

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestVM runs the whole VM tier (e2e/vm/run.sh) when OPEN_LOCAL_VM=1. It
// takes minutes (packages, kernel, build, boot, guest suite), so it is opt-in.
func TestVM(t *testing.T) {
	if os.Getenv("OPEN_LOCAL_VM") != "1" {
		t.Skip("VM tier runs from .ci/run via e2e/vm/run.sh; set OPEN_LOCAL_VM=1 to run it from go test")
	}
	// Room for installing packages and building on top of the VM's own timeout.
	vmTimeout := 600
	if s := os.Getenv("OPEN_LOCAL_VM_TIMEOUT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("OPEN_LOCAL_VM_TIMEOUT=%q is not a number of seconds", s)
		}
		vmTimeout = n
	}
	limit := time.Duration(vmTimeout)*time.Second + 10*time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	if d, ok := t.Deadline(); ok && time.Until(d) < limit {
		t.Logf("go test -timeout leaves %s; the VM tier may need up to %s (use -timeout 30m)", time.Until(d).Round(time.Second), limit)
	}

	cmd := exec.CommandContext(ctx, "bash", "run.sh")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// run.sh and QEMU in their own process group, stopped together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("e2e/vm/run.sh: %v (console: e2e/vm/work/console.log)", err)
	}
}
