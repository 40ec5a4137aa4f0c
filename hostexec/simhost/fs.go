package simhost

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// node is a file or directory of the simulated trees: the host's root tree
// and one tree per filesystem.
type node struct {
	dir      bool
	children map[string]*node
	data     []byte
	blockDev string // set on the node a device file bind mount shows
}

func newDir() *node { return &node{dir: true, children: map[string]*node{}} }

func (n *node) clone() *node {
	c := &node{dir: n.dir, data: append([]byte(nil), n.data...), blockDev: n.blockDev}
	if n.dir {
		c.children = make(map[string]*node, len(n.children))
		for k, v := range n.children {
			c.children[k] = v.clone()
		}
	}
	return c
}

// usage is what a tree takes: 4 KiB blocks for data, one inode per node.
func (n *node) usage() (bytes, inodes int64) {
	inodes = 1
	if !n.dir {
		return core.RoundUp(int64(len(n.data)), 4*core.KiB), inodes
	}
	for _, c := range n.children {
		b, i := c.usage()
		bytes += b
		inodes += i
	}
	return bytes, inodes
}

// filesystem is what Mkfs leaves on a device.
type filesystem struct {
	fsType string
	size   int64
	uuid   string
	root   *node
	owner  string // device path the filesystem lives on
	// truncated: a partial copy (CopyDevice of fewer bytes than the
	// filesystem); it no longer mounts.
	truncated bool
}

func (f *filesystem) clone(owner string) *filesystem {
	c := *f
	c.root = f.root.clone()
	c.owner = owner
	return &c
}

// inodeRatio is ext4's default bytes-per-inode.
const inodeRatio = 16 * core.KiB

func (f *filesystem) stats() hostexec.FSStats {
	used, inodes := f.root.usage()
	total := f.size
	avail := total - used
	if avail < 0 {
		avail = 0
	}
	totalInodes := f.size / inodeRatio
	if totalInodes < inodes {
		totalInodes = inodes
	}
	return hostexec.FSStats{
		TotalBytes: total, AvailableBytes: avail, UsedBytes: used,
		TotalInodes: totalInodes, FreeInodes: totalInodes - inodes, UsedInodes: inodes,
	}
}

// hostRootSize is what StatFS reports for paths outside any mounted filesystem.
const hostRootSize = 100 * core.GiB

type mountEntry struct {
	source   string
	target   string
	fsType   string
	options  []string
	readOnly bool
	bind     bool
	fs       *filesystem // filesystem shown (nil for the host tree or a device file)
	root     *node       // node shown at target
	holds    string      // block device the mount keeps open ("" for directory binds)
}

func splitPath(p string) []string {
	if p == "/" {
		return nil
	}
	return strings.Split(strings.TrimPrefix(p, "/"), "/")
}

func (h *Host) mountAt(target string) *mountEntry {
	for _, m := range h.mounts {
		if m.target == target {
			return m
		}
	}
	return nil
}

// resolve walks p through the mount table. It returns the node, the mount
// whose tree holds it (nil for the host tree) and whether p exists.
func (h *Host) resolve(p string) (*node, *mountEntry, bool) {
	cur, curM := h.root, (*mountEntry)(nil)
	if m := h.mountAt("/"); m != nil {
		cur, curM = m.root, m
	}
	sofar := ""
	for _, c := range splitPath(p) {
		if !cur.dir {
			return nil, nil, false
		}
		next, ok := cur.children[c]
		if !ok {
			return nil, nil, false
		}
		sofar += "/" + c
		cur = next
		if m := h.mountAt(sofar); m != nil {
			cur, curM = m.root, m
		}
	}
	return cur, curM, true
}

func parentOf(p string) (dir, base string) {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "/", p[i+1:]
	}
	return p[:i], p[i+1:]
}

func (m *mountEntry) writable() bool { return m == nil || !m.readOnly }

// mkdirAll creates p and its parents.
func (h *Host) mkdirAll(p string) error {
	sofar := ""
	for _, c := range splitPath(p) {
		parentPath := sofar
		if parentPath == "" {
			parentPath = "/"
		}
		// The previous step made sure parentPath is a directory.
		parent, pm, _ := h.resolve(parentPath)
		sofar += "/" + c
		if _, exists := parent.children[c]; !exists {
			if !pm.writable() {
				return fmt.Errorf("make directory %s: read-only file system", sofar)
			}
			parent.children[c] = newDir()
			continue
		}
		if n, _, _ := h.resolve(sofar); !n.dir {
			return fmt.Errorf("make directory %s: %s is not a directory: %w", p, sofar, hostexec.ErrAlreadyExists)
		}
	}
	return nil
}

// writeFile stores data at p, charging the filesystem and any snapshot COW.
func (h *Host) writeFile(p string, data []byte) error {
	dir, base := parentOf(p)
	parent, pm, ok := h.resolve(dir)
	if !ok {
		return fmt.Errorf("write %s: directory %s: %w", p, dir, hostexec.ErrNotFound)
	}
	if !parent.dir {
		return hostexec.Invalid("path", p, dir+" is not a directory")
	}
	if h.mountAt(p) != nil {
		return fmt.Errorf("write %s: is a mount point: %w", p, hostexec.ErrInUse)
	}
	old, exists := parent.children[base]
	if exists && old.dir {
		return hostexec.Invalid("path", p, "is a directory")
	}
	if exists && old.blockDev != "" {
		return hostexec.Invalid("path", p, "is a device file")
	}
	if !pm.writable() {
		return fmt.Errorf("write %s: read-only file system", p)
	}
	if pm != nil && pm.fs != nil {
		fs := pm.fs
		st := fs.stats()
		oldBytes := int64(0)
		if exists {
			oldBytes = core.RoundUp(int64(len(old.data)), 4*core.KiB)
		}
		newBytes := core.RoundUp(int64(len(data)), 4*core.KiB)
		if newBytes-oldBytes > st.AvailableBytes {
			return fmt.Errorf("write %s: no space left on device: %w", p, hostexec.ErrInsufficientSpace)
		}
		h.chargeCOW(fs.owner, newBytes)
	}
	parent.children[base] = &node{data: append([]byte(nil), data...)}
	return nil
}

// chargeCOW accounts a write to the filesystem on device: a write to an
// origin copies chunks into each of its snapshots, a write to a snapshot
// uses its own COW space. A snapshot whose COW overflows becomes invalid.
func (h *Host) chargeCOW(device string, bytes int64) {
	vg, lv, ok := h.lvByPath(device)
	if !ok {
		return
	}
	charge := func(s *logicalVolume) {
		if s.invalid {
			return
		}
		s.cowUsed += bytes
		if s.cowUsed > s.extents*vg.extentSize {
			s.invalid = true
		}
	}
	if lv.origin != "" {
		charge(lv)
		return
	}
	for _, s := range vg.lvs {
		if s.origin == lv.name {
			charge(s)
		}
	}
}

func (h *Host) checkPath(ctx context.Context, op, p string) (func(error) error, error) {
	if err := hostexec.ValidatePath(p); err != nil {
		return nil, err
	}
	return h.enter(ctx, op, p)
}

// MakeDir creates a directory and its parents.
func (h *Host) MakeDir(ctx context.Context, p string) (err error) {
	finish, err := h.checkPath(ctx, "MakeDir", p)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mkdirAll(p)
}

// MakeFile creates an empty file and its parents; an existing file is kept.
func (h *Host) MakeFile(ctx context.Context, p string) (err error) {
	finish, err := h.checkPath(ctx, "MakeFile", p)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	if n, _, ok := h.resolve(p); ok {
		if n.dir {
			return fmt.Errorf("make file %s: a directory is in the way: %w", p, hostexec.ErrAlreadyExists)
		}
		return nil
	}
	dir, _ := parentOf(p)
	if err := h.mkdirAll(dir); err != nil {
		return err
	}
	return h.writeFile(p, nil)
}

// RemovePath removes a file or an empty directory; a missing path is fine.
func (h *Host) RemovePath(ctx context.Context, p string) (err error) {
	finish, err := h.checkPath(ctx, "RemovePath", p)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	if p == "/" {
		return hostexec.Invalid("path", p, "the root directory cannot be removed")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n, _, ok := h.resolve(p)
	if !ok {
		return nil
	}
	if h.mountAt(p) != nil {
		return fmt.Errorf("remove %s: is a mount point: %w", p, hostexec.ErrInUse)
	}
	if n.dir && len(n.children) > 0 {
		return fmt.Errorf("remove %s: directory not empty: %w", p, hostexec.ErrInUse)
	}
	dir, base := parentOf(p)
	parent, pm, _ := h.resolve(dir)
	if !pm.writable() {
		return fmt.Errorf("remove %s: read-only file system", p)
	}
	delete(parent.children, base)
	return nil
}

// PathExists reports whether p exists: a file, a directory or a device node.
func (h *Host) PathExists(ctx context.Context, p string) (ok bool, err error) {
	finish, err := h.checkPath(ctx, "PathExists", p)
	if err != nil {
		return false, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, isBlock := h.block(p); isBlock {
		return true, nil
	}
	_, _, ok = h.resolve(p)
	return ok, nil
}

func (h *Host) readFile(p string) ([]byte, error) {
	n, _, ok := h.resolve(p)
	if !ok {
		if _, isBlock := h.block(p); isBlock {
			return nil, hostexec.Invalid("path", p, "is a block device")
		}
		return nil, fmt.Errorf("read %s: %w", p, hostexec.ErrNotFound)
	}
	if n.dir {
		return nil, hostexec.Invalid("path", p, "is a directory")
	}
	if n.blockDev != "" {
		return nil, hostexec.Invalid("path", p, "is a device file")
	}
	return append([]byte(nil), n.data...), nil
}

// ReadFile reads a whole file.
func (h *Host) ReadFile(ctx context.Context, p string) (b []byte, err error) {
	finish, err := h.checkPath(ctx, "ReadFile", p)
	if err != nil {
		return nil, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.readFile(p)
}

// WriteFileAtomic replaces a file's content in one step. The parent
// directory must exist.
func (h *Host) WriteFileAtomic(ctx context.Context, p string, data []byte) (err error) {
	finish, err := h.checkPath(ctx, "WriteFileAtomic", p)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.writeFile(p, data)
}

// ListDir lists the names in a directory, sorted.
func (h *Host) ListDir(ctx context.Context, p string) (names []string, err error) {
	finish, err := h.checkPath(ctx, "ListDir", p)
	if err != nil {
		return nil, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	n, _, ok := h.resolve(p)
	if !ok {
		return nil, fmt.Errorf("list %s: %w", p, hostexec.ErrNotFound)
	}
	if !n.dir {
		return nil, hostexec.Invalid("path", p, "is not a directory")
	}
	return sortedKeys(n.children), nil
}

func (h *Host) mountsBelow(p string) []string {
	var out []string
	prefix := p + "/"
	if p == "/" {
		prefix = "/"
	}
	for _, m := range h.mounts {
		if m.target != p && strings.HasPrefix(m.target, prefix) {
			out = append(out, m.target)
		}
	}
	sort.Strings(out)
	return out
}

// CleanDir empties a directory and keeps it; a mount inside it is ErrInUse.
func (h *Host) CleanDir(ctx context.Context, p string) (err error) {
	finish, err := h.checkPath(ctx, "CleanDir", p)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	if p == "/" {
		return hostexec.Invalid("path", p, "the root directory cannot be cleaned")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n, m, ok := h.resolve(p)
	if !ok {
		return fmt.Errorf("clean %s: %w", p, hostexec.ErrNotFound)
	}
	if !n.dir {
		return hostexec.Invalid("path", p, "is not a directory")
	}
	if below := h.mountsBelow(p); len(below) > 0 {
		return fmt.Errorf("clean %s: %s is mounted inside it: %w", p, below[0], hostexec.ErrInUse)
	}
	if !m.writable() {
		return fmt.Errorf("clean %s: read-only file system", p)
	}
	n.children = map[string]*node{}
	return nil
}

// WriteTestFile writes a file the way a workload would (through mounts,
// charging snapshots' COW space), without fault injection or a call log
// entry. The parent directory must exist.
func (h *Host) WriteTestFile(p string, data []byte) error {
	if err := hostexec.ValidatePath(p); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.writeFile(p, data)
}

// ReadTestFile reads a file without fault injection or a call log entry.
func (h *Host) ReadTestFile(p string) ([]byte, error) {
	if err := hostexec.ValidatePath(p); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.readFile(p)
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// Mount mounts the filesystem on source at target (an existing directory).
func (h *Host) Mount(ctx context.Context, source, target, fsType string, options []string) (err error) {
	if err := hostexec.ValidateDevicePath(source); err != nil {
		return err
	}
	if err := hostexec.ValidatePath(target); err != nil {
		return err
	}
	if err := hostexec.ValidateFSType(fsType); err != nil {
		return err
	}
	if err := hostexec.ValidateMountOptions(options); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "Mount", source, target)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.block(source)
	if !ok {
		return fmt.Errorf("mount source %s: %w", source, hostexec.ErrNotFound)
	}
	tn, _, ok := h.resolve(target)
	if !ok {
		return fmt.Errorf("mount target %s: %w", target, hostexec.ErrNotFound)
	}
	if !tn.dir {
		return hostexec.Invalid("mount target", target, "is not a directory")
	}
	if h.mountAt(target) != nil {
		return fmt.Errorf("mount target %s already has a mount: %w", target, hostexec.ErrInUse)
	}
	fs := b.data.fs
	switch {
	case fs == nil:
		return fmt.Errorf("mount %s on %s: wrong fs type, bad option, bad superblock: %s holds no filesystem", source, target, source)
	case fs.truncated:
		return fmt.Errorf("mount %s on %s: bad superblock: the %s filesystem on %s is truncated", source, target, fs.fsType, source)
	case fs.fsType != fsType && !(fsType == "ext4" && fs.fsType == "ext3"):
		return fmt.Errorf("mount %s on %s: wrong fs type: %s holds %s, not %s", source, target, source, fs.fsType, fsType)
	}
	if fs.fsType == "xfs" && !hasOption(options, "nouuid") {
		for _, m := range h.mounts {
			if m.fs != nil && m.fs != fs && m.fs.fsType == "xfs" && m.fs.uuid == fs.uuid {
				return fmt.Errorf("mount %s on %s: XFS filesystem has duplicate UUID %s (already mounted at %s); mount with nouuid", source, target, fs.uuid, m.target)
			}
		}
	}
	ro := hasOption(options, "ro") || b.readOnly
	h.mounts = append(h.mounts, &mountEntry{source: source, target: target, fsType: fs.fsType,
		options: append([]string(nil), options...), readOnly: ro, fs: fs, root: fs.root, holds: source})
	return nil
}

// BindMount shows source (a directory, a file or a device node) at target.
func (h *Host) BindMount(ctx context.Context, source, target string, readOnly bool) (err error) {
	if err := hostexec.ValidatePath(source); err != nil {
		return err
	}
	if err := hostexec.ValidatePath(target); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "BindMount", source, target)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	// Checks in the real host's order: source, target, kinds, busy target.
	b, srcIsBlock := h.block(source)
	var sn *node
	var sm *mountEntry
	if !srcIsBlock {
		var ok bool
		if sn, sm, ok = h.resolve(source); !ok {
			return fmt.Errorf("bind source %s: %w", source, hostexec.ErrNotFound)
		}
	}
	tn, _, ok := h.resolve(target)
	if !ok {
		return fmt.Errorf("bind target %s: %w", target, hostexec.ErrNotFound)
	}
	srcIsDir := !srcIsBlock && sn.dir
	if srcIsDir != tn.dir {
		return hostexec.Invalid("bind target", target, "must be a directory exactly when the source is one")
	}
	if h.mountAt(target) != nil {
		return fmt.Errorf("bind target %s already has a mount: %w", target, hostexec.ErrInUse)
	}
	entry := &mountEntry{source: source, target: target, bind: true, readOnly: readOnly}
	switch {
	case srcIsBlock:
		entry.root = &node{blockDev: b.path}
		entry.holds = b.path
		entry.fsType = "devtmpfs"
	default:
		entry.root = sn
		if sm != nil {
			entry.fs = sm.fs
			entry.fsType = sm.fsType
			entry.readOnly = readOnly || sm.readOnly
			entry.holds = sm.holds
		}
		if sn.blockDev != "" {
			entry.holds = sn.blockDev
		}
	}
	entry.options = []string{"bind"}
	if entry.readOnly {
		entry.options = append(entry.options, "ro")
	}
	h.mounts = append(h.mounts, entry)
	return nil
}

// Unmount removes the mount on target; nothing mounted is fine. A mount with
// other mounts below it is busy.
func (h *Host) Unmount(ctx context.Context, target string) (err error) {
	finish, err := h.checkPath(ctx, "Unmount", target)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.mountAt(target)
	if m == nil {
		return nil
	}
	if below := h.mountsBelow(target); len(below) > 0 {
		return fmt.Errorf("unmount %s: target is busy (%s is mounted inside it): %w", target, below[0], hostexec.ErrInUse)
	}
	for i, x := range h.mounts {
		if x == m {
			h.mounts = append(h.mounts[:i], h.mounts[i+1:]...)
			break
		}
	}
	return nil
}

// IsMountPoint reports whether something is mounted on p.
func (h *Host) IsMountPoint(ctx context.Context, p string) (ok bool, err error) {
	finish, err := h.checkPath(ctx, "IsMountPoint", p)
	if err != nil {
		return false, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, _, exists := h.resolve(p); !exists {
		return false, fmt.Errorf("path %s: %w", p, hostexec.ErrNotFound)
	}
	return h.mountAt(p) != nil, nil
}

// ListMounts is the mount table, in mount order.
func (h *Host) ListMounts(ctx context.Context) (out []hostexec.MountInfo, err error) {
	finish, err := h.enter(ctx, "ListMounts")
	if err != nil {
		return nil, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.mounts {
		opts := append([]string{}, m.options...)
		if !hasOption(opts, "ro") {
			opts = append([]string{"rw"}, opts...)
		}
		out = append(out, hostexec.MountInfo{Source: m.source, Target: m.target, FSType: m.fsType, Options: opts})
	}
	return out, nil
}

// StatFS reports the filesystem holding p.
func (h *Host) StatFS(ctx context.Context, p string) (st hostexec.FSStats, err error) {
	finish, err := h.checkPath(ctx, "StatFS", p)
	if err != nil {
		return hostexec.FSStats{}, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	_, m, ok := h.resolve(p)
	if !ok {
		return hostexec.FSStats{}, fmt.Errorf("statfs %s: %w", p, hostexec.ErrNotFound)
	}
	if m != nil && m.fs != nil {
		return m.fs.stats(), nil
	}
	root := &filesystem{size: hostRootSize, root: h.root}
	return root.stats(), nil
}
