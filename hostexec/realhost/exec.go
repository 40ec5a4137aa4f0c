package realhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"

	"github.com/open-local/open-local/hostexec"
)

// runner starts tools with an argv, an optional prefix and a fixed
// environment. Nothing goes through a shell.
type runner struct {
	prefix []string
	env    []string
}

func newRunner(prefix, extraEnv []string) *runner {
	env := make([]string, 0, len(os.Environ())+len(extraEnv)+2)
	for _, kv := range os.Environ() {
		// Replaced below: messages must be in English to be classified.
		if strings.HasPrefix(kv, "LC_ALL=") || strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "LANGUAGE=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1")
	env = append(env, extraEnv...)
	return &runner{prefix: append([]string(nil), prefix...), env: env}
}

func (r *runner) argv(name string, args []string) []string {
	argv := make([]string, 0, len(r.prefix)+1+len(args))
	argv = append(argv, r.prefix...)
	argv = append(argv, name)
	return append(argv, args...)
}

// CommandError is a tool that failed. Kind is the typed error the failure
// maps to (hostexec.ErrNotFound, ...), or nil when none fits; the tool's
// stderr is always part of the message.
type CommandError struct {
	Argv     []string
	ExitCode int
	Stderr   string
	Kind     error
	Err      error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// Unwrap gives both the typed error and the underlying cause (so
// context.Canceled is visible when a call was cancelled).
func (e *CommandError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// run starts name with args and returns its stdout. A failure becomes a
// *CommandError classified from stderr.
func (r *runner) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	argv := r.argv(name, args)
	logger := klog.FromContext(ctx)
	logger.V(4).Info("Running command", "argv", argv)
	if err := ctx.Err(); err != nil {
		return nil, &CommandError{Argv: argv, ExitCode: -1, Err: err}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = r.env
	cmd.Stdin = nil // /dev/null: a prompt gets "no" instead of hanging
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// A killed tool may leave children holding the pipes; do not wait forever.
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	logger.V(5).Info("Command finished", "argv", argv, "duration", time.Since(start), "err", err)
	if err == nil {
		return stdout.Bytes(), nil
	}
	ce := &CommandError{Argv: argv, ExitCode: -1, Stderr: cleanStderr(stderr.String()), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ce.ExitCode = ee.ExitCode()
	}
	if ctx.Err() != nil {
		ce.Err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	} else {
		ce.Kind = classify(ce.Stderr)
	}
	return stdout.Bytes(), ce
}

// lvm runs an lvm subcommand with the configured global options.
func (h *Host) lvm(ctx context.Context, sub string, args ...string) ([]byte, error) {
	full := make([]string, 0, 1+len(h.cfg.ExtraLVMArgs)+len(args))
	full = append(full, sub)
	full = append(full, h.cfg.ExtraLVMArgs...)
	full = append(full, args...)
	return h.run.run(ctx, h.cfg.LVMBinary, full...)
}

// noise are stderr lines that say nothing about a failure.
var noise = []string{
	"WARNING: Activation disabled. No device-mapper interaction will be attempted.",
}

// cleanStderr drops noise and joins lines with "; " so that a message fits
// on one log line or status condition.
func cleanStderr(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		skip := false
		for _, n := range noise {
			if line == n {
				skip = true
				break
			}
		}
		if !skip {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "; ")
}

// Patterns of the tools' messages (LC_ALL=C), checked in this order: the
// broad "not found" comes last because other messages quote names.
var classes = []struct {
	kind     error
	patterns []string
}{
	{hostexec.ErrAlreadyExists, []string{"already exists"}},
	{hostexec.ErrInsufficientSpace, []string{
		"insufficient free space", "insufficient suitable allocatable extents",
		"insufficient allocatable extents", "must not exceed number of physical volumes",
		"no space left on device",
	}},
	{hostexec.ErrInUse, []string{
		"device or resource busy", "target is busy", "in use", "is busy",
		"open logical volume", "used by another device", "signature detected",
		"existing signature", "has a signature", "exclusively", "without -ff",
		"is already in volume group",
	}},
	{hostexec.ErrNotFound, []string{
		"not found", "failed to find", "no device found", "cannot find",
		"no such file or directory", "does not exist",
	}},
}

func classify(stderr string) error {
	low := strings.ToLower(stderr)
	for _, c := range classes {
		for _, p := range c.patterns {
			if strings.Contains(low, p) {
				return c.kind
			}
		}
	}
	return nil
}

// utilExec adapts the runner to k8s.io/utils/exec for mount-utils (its
// resizefs runs blkid, resize2fs and xfs_growfs), binding ctx, the prefix and
// the environment.
type utilExec struct {
	ctx context.Context
	r   *runner
}

var _ utilexec.Interface = utilExec{}

func (u utilExec) Command(cmd string, args ...string) utilexec.Cmd {
	return u.CommandContext(u.ctx, cmd, args...)
}

func (u utilExec) CommandContext(ctx context.Context, cmd string, args ...string) utilexec.Cmd {
	argv := u.r.argv(cmd, args)
	klog.FromContext(ctx).V(4).Info("Running command", "argv", argv)
	c := utilexec.New().CommandContext(ctx, argv[0], argv[1:]...)
	c.SetEnv(u.r.env)
	return c
}

func (u utilExec) LookPath(file string) (string, error) {
	if len(u.r.prefix) > 0 {
		// The tool is looked up by the prefix program in its own namespace.
		return file, nil
	}
	return utilexec.New().LookPath(file)
}
