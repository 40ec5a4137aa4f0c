package realhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/open-local/open-local/hostexec"
)

const (
	dirMode  = 0o750
	fileMode = 0o640
)

func checkPath(ctx context.Context, p string) error {
	if err := hostexec.ValidatePath(p); err != nil {
		return err
	}
	return ctx.Err()
}

// MakeDir creates a directory and its parents.
func (h *Host) MakeDir(ctx context.Context, p string) error {
	if err := checkPath(ctx, p); err != nil {
		return err
	}
	if err := os.MkdirAll(p, dirMode); err != nil {
		return pathError("make directory", p, err)
	}
	return nil
}

// MakeFile creates an empty file (and its parents); an existing file is kept.
func (h *Host) MakeFile(ctx context.Context, p string) error {
	if err := checkPath(ctx, p); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), dirMode); err != nil {
		return pathError("make directory", filepath.Dir(p), err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, fileMode)
	if err != nil {
		if errors.Is(err, os.ErrExist) || isDir(p) {
			return fmt.Errorf("make file %s: a directory is in the way: %w", p, hostexec.ErrAlreadyExists)
		}
		return pathError("make file", p, err)
	}
	return f.Close()
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// RemovePath removes a file or an empty directory; a missing path is fine.
func (h *Host) RemovePath(ctx context.Context, p string) error {
	if err := checkPath(ctx, p); err != nil {
		return err
	}
	if p == "/" {
		return hostexec.Invalid("path", p, "the root directory cannot be removed")
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return pathError("remove", p, err)
	}
	return nil
}

// PathExists reports whether p exists (symlinks followed).
func (h *Host) PathExists(ctx context.Context, p string) (bool, error) {
	if err := checkPath(ctx, p); err != nil {
		return false, err
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, pathError("stat", p, err)
	}
	return true, nil
}

// ReadFile reads a whole file.
func (h *Host) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if err := checkPath(ctx, p); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, pathError("read", p, err)
	}
	return b, nil
}

// WriteFileAtomic writes a temporary file next to p, fsyncs it, renames it
// over p and fsyncs the directory: after a crash p holds either the old or
// the new content. The parent directory must exist.
func (h *Host) WriteFileAtomic(ctx context.Context, p string, data []byte) (err error) {
	if err := checkPath(ctx, p); err != nil {
		return err
	}
	if isDir(p) {
		return hostexec.Invalid("path", p, "is a directory")
	}
	dir := filepath.Dir(p)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return pathError("write", p, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), fileMode)
	}
	if err != nil {
		return pathError("write", p, err)
	}
	if err = os.Rename(tmp.Name(), p); err != nil {
		return pathError("write", p, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return pathError("sync directory", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return pathError("sync directory", dir, err)
	}
	return nil
}

// ListDir lists the names in a directory, sorted.
func (h *Host) ListDir(ctx context.Context, p string) ([]string, error) {
	if err := checkPath(ctx, p); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, pathError("list", p, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// CleanDir removes everything inside a directory and keeps the directory.
// Anything mounted below it is ErrInUse: deleting through a mount would
// destroy another volume's data.
func (h *Host) CleanDir(ctx context.Context, p string) error {
	if err := checkPath(ctx, p); err != nil {
		return err
	}
	if p == "/" {
		return hostexec.Invalid("path", p, "the root directory cannot be cleaned")
	}
	fi, err := os.Stat(p)
	if err != nil {
		return pathError("clean", p, err)
	}
	if !fi.IsDir() {
		return hostexec.Invalid("path", p, "is not a directory")
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return pathError("clean", p, err)
	}
	mps, err := h.mounter.List()
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	for _, mp := range mps {
		if strings.HasPrefix(mp.Path, resolved+"/") {
			return fmt.Errorf("clean %s: %s is mounted inside it: %w", p, mp.Path, hostexec.ErrInUse)
		}
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return pathError("clean", p, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := os.RemoveAll(filepath.Join(p, e.Name())); err != nil {
			return pathError("clean", filepath.Join(p, e.Name()), err)
		}
	}
	return nil
}
