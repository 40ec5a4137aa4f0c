//go:build vmguest

package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// OpenLocalBin is the path of the open-local binary under test, from
// OPEN_LOCAL_BIN (the guest's /init sets it).
func OpenLocalBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("OPEN_LOCAL_BIN")
	if bin == "" {
		t.Fatal("OPEN_LOCAL_BIN is not set; the guest's /init sets it to the open-local binary")
	}
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("OPEN_LOCAL_BIN=%s is not an executable file (%v)", bin, err)
	}
	return bin
}

// RunOpenLocal runs open-local with args to completion and returns its
// standard output and standard error.
func RunOpenLocal(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, OpenLocalBin(t), args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	t.Logf("$ open-local %s: %v", strings.Join(args, " "), errOrOK(err))
	return o.String(), e.String(), err
}

func errOrOK(err error) any {
	if err == nil {
		return "ok"
	}
	return err
}

// Process is an open-local subprocess started by StartOpenLocal.
type Process struct {
	Args []string

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // valid once done is closed
}

// StartOpenLocal starts open-local with args (e.g. "csi", "--endpoint",
// "unix:///tmp/csi.sock") as a long-running subprocess with extra environment
// entries env ("KEY=value"). At cleanup it is stopped (SIGTERM, then SIGKILL
// after 10 s); when the test failed, its output is logged.
func StartOpenLocal(t testing.TB, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{Args: args, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(OpenLocalBin(t), args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Its own process group: stopping it also stops whatever it spawned.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting open-local %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("started open-local %s (pid %d)", strings.Join(args, " "), p.cmd.Process.Pid)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil && !p.exitedBySignal(err) {
			t.Logf("open-local %s ended with: %v", strings.Join(args, " "), err)
		}
		if t.Failed() {
			t.Logf("output of open-local %s:\n%s", strings.Join(args, " "), p.Output())
		}
	})
	return p
}

// Output is everything the process wrote so far (stdout and stderr).
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits up to timeout for the process to end by itself.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("open-local %s still running after %s", strings.Join(p.Args, " "), timeout)
	}
}

// Stop sends SIGTERM to the process group and SIGKILL after grace; it returns
// how the process ended. Stopping an ended process just returns that.
func (p *Process) Stop(grace time.Duration) error {
	if ended, err := p.Exited(); ended {
		return err
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

func (p *Process) exitedBySignal(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && (ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGKILL)
}

// WaitForSocket waits until a unix socket accepts connections (a gRPC server
// is up) and fails the test when the process ends or timeout passes first.
func (p *Process) WaitForSocket(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, 100*time.Millisecond, "open-local listening on "+path, func() (bool, error) {
		if ended, err := p.Exited(); ended {
			t.Fatalf("open-local %s ended before listening on %s: %v\n%s", strings.Join(p.Args, " "), path, err, p.Output())
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err != nil {
			return false, err
		}
		_ = c.Close()
		return true, nil
	})
}

// syncBuffer is a bytes.Buffer safe for the writer goroutines of exec and a
// reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
