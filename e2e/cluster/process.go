package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a component gets to exit after SIGTERM before its
// process group is killed. The state is thrown away, so there is nothing to
// flush; a short grace only lets logs end cleanly.
const stopGrace = 2 * time.Second

// Process is one program started by the cluster, with its output in a log
// file. It is stopped by Stop or by the cluster's Stop, whichever comes first.
type Process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File

	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// startProcess runs bin with args, output appended to logDir/name.log.
func startProcess(name, bin string, args []string, logDir string) (*Process, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logFile, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	// Not exec.CommandContext: its kill reaches only the leader, and the
	// shutdown order across components matters; Stop handles both.
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, logPath: logPath, cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name is the name the process was started under (also its log file name).
func (p *Process) Name() string { return p.name }

// LogPath is the file that receives the process's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Pid is the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group, then SIGKILL after a short grace,
// and waits until the process has been reaped. It is safe to call more than
// once and from several goroutines.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
		default:
			_ = signalGroup(p.cmd.Process, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(stopGrace):
			}
		}
		// Also after the leader exited: a child it forked may still hold
		// the group.
		_ = signalGroup(p.cmd.Process, syscall.SIGKILL)
		<-p.done
		_ = p.logFile.Close()
	})
}

// tail returns the last n lines of the log from byte offset from on.
func (p *Process) tail(from int64, n int) string {
	return tailFile(p.logPath, from, n)
}

func tailFile(path string, from int64, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if from > 0 && from <= int64(len(data)) {
		data = data[from:]
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = append([][]byte{[]byte(fmt.Sprintf("... (%d earlier lines)", len(lines)-n))}, lines[len(lines)-n:]...)
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func (p *Process) logSize() int64 {
	st, err := os.Stat(p.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// waitReady polls probe until it succeeds, the process exits, or timeout.
func waitReady(ctx context.Context, p *Process, timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		last = probe(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return &exitError{name: p.name, err: p.waitErr, log: p.tail(0, 40)}
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (last probe: %v); log tail:\n%s", p.name, timeout, last, p.tail(0, 40))
		case <-tick.C:
		}
	}
}

// exitError is a component that ended while starting.
type exitError struct {
	name string
	err  error
	log  string
}

func (e *exitError) Error() string {
	return fmt.Sprintf("%s exited while starting (%v); log tail:\n%s", e.name, e.err, e.log)
}

// portConflict reports whether a start failed because a port chosen as free
// was taken in the meantime, which is worth another try with new ports.
func portConflict(err error) bool {
	var ee *exitError
	return errors.As(err, &ee) && strings.Contains(ee.log, "address already in use")
}

// freePorts returns n distinct ports on 127.0.0.1 that were free a moment
// ago. The listeners stay open until all n are chosen so they differ.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
