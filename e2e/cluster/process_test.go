package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	require.Eventually(t, func() bool { return !alive(pid) }, 5*time.Second, 20*time.Millisecond, "pid %d still alive", pid)
}

func TestProcessStopKillsTheWholeGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The shell starts a child that ignores SIGTERM, records its pid, and
	// waits: Stop must take down the child too.
	p, err := startProcess("group", "/bin/sh", []string{"-c",
		`sh -c 'trap "" TERM; while :; do sleep 0.05; done' & echo $! > ` + pidFile + `; wait`}, dir)
	require.NoError(t, err)
	var child int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(pidFile)
		if err != nil || len(strings.TrimSpace(string(data))) == 0 {
			return false
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	require.True(t, alive(child))

	start := time.Now()
	p.Stop()
	done, _ := p.Exited()
	assert.True(t, done)
	waitGone(t, p.Pid())
	waitGone(t, child)
	assert.Less(t, time.Since(start), stopGrace+3*time.Second)
	p.Stop() // idempotent

	log, err := os.ReadFile(p.LogPath())
	require.NoError(t, err)
	assert.Contains(t, string(log), "=== ", "the log starts with the command line")
}

func TestWaitReadyReportsAnExitWithTheLogTail(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("dies", "/bin/sh", []string{"-c", "echo listen tcp 127.0.0.1:1: bind: address already in use; exit 3"}, dir)
	require.NoError(t, err)
	defer p.Stop()
	err = waitReady(context.Background(), p, 10*time.Second, func(context.Context) error { return errors.New("not yet") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dies exited while starting")
	assert.Contains(t, err.Error(), "exit status 3")
	assert.True(t, portConflict(err), "a bind failure is worth a retry on other ports")

	q, err := startProcess("other", "/bin/sh", []string{"-c", "echo bad flag; exit 1"}, dir)
	require.NoError(t, err)
	defer q.Stop()
	err = waitReady(context.Background(), q, 10*time.Second, func(context.Context) error { return errors.New("not yet") })
	require.Error(t, err)
	assert.False(t, portConflict(err))
}

func TestWaitReadyTimesOut(t *testing.T) {
	p, err := startProcess("slow", "/bin/sh", []string{"-c", "echo starting; exec sleep 60"}, t.TempDir())
	require.NoError(t, err)
	defer p.Stop()
	err = waitReady(context.Background(), p, 300*time.Millisecond, func(context.Context) error { return errors.New("not listening") })
	require.ErrorContains(t, err, "slow not ready after 300ms (last probe: not listening)")
	assert.Contains(t, err.Error(), "starting")

	calls := 0
	err = waitReady(context.Background(), p, 5*time.Second, func(context.Context) error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 3, calls)
}

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := freePorts(5)
	require.NoError(t, err)
	seen := map[int]bool{}
	for _, p := range ports {
		assert.False(t, seen[p], "port %d twice", p)
		seen[p] = true
		assert.Positive(t, p)
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	require.NoError(t, os.WriteFile(path, []byte("a\nb\nc\nd\n"), 0o600))
	assert.Equal(t, "a\nb\nc\nd", tailFile(path, 0, 10))
	assert.Equal(t, "... (2 earlier lines)\nc\nd", tailFile(path, 0, 2))
	assert.Equal(t, "c\nd", tailFile(path, 4, 10), "from an offset on")
	assert.Contains(t, tailFile(filepath.Join(t.TempDir(), "none"), 0, 1), "cannot read")
}
