//go:build vmguest

package guest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CommandTimeout bounds one tool run. Under emulation an LVM command takes
// up to a few seconds; minutes mean it hangs.
const CommandTimeout = 2 * time.Minute

// Tool runs a tool with CommandTimeout. Its context deliberately does not
// derive from the test's context, which is already cancelled while cleanups
// run.
func Tool(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	return Exec(ctx, name, args...)
}

// Exec runs a tool and returns its standard output. The error names the
// command and carries its exit status and standard error.
func Exec(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", commandLine(name, args), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Run runs a tool, logs it with its duration, and fails the test when it
// fails. It returns standard output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := Tool(name, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("$ %s (%.2fs)", commandLine(name, args), time.Since(start).Seconds())
	return out
}

func commandLine(name string, args []string) string {
	return strings.TrimSpace(name + " " + strings.Join(args, " "))
}
