// Package simhost is an in-memory Host with the semantics of the real one:
// block devices, LVM with extent rounding and per-PV allocation, COW
// snapshots, filesystems that hold files, a mount table, a file tree and pod
// cgroups. It is deterministic, safe for concurrent use, and lets tests
// inject failures, delays and read a log of calls.
//
// What it does not model: LVM's exact choice of extents on fragmented PVs
// (it tracks free extents per PV, not their positions), LVM's reduction of a
// COW larger than its origin needs, and file contents beyond what tests
// write.
package simhost

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// peStart is where LVM puts the first extent of a PV (its default 1 MiB data
// alignment); the space before holds the label and metadata.
const peStart = core.MiB

// content is what a block device holds.
type content struct {
	sigs []string    // foreign signatures (not a filesystem, not an LVM label)
	fs   *filesystem // nil when there is none
}

func (c content) clone(owner string) content {
	out := content{sigs: append([]string(nil), c.sigs...)}
	if c.fs != nil {
		out.fs = c.fs.clone(owner)
	}
	return out
}

type device struct {
	name       string
	size       int64
	media      core.MediaType
	readOnly   bool
	major      uint32
	minor      uint32
	parent     string
	partitions []string
	data       content
	pv         bool   // carries an LVM label
	vg         string // VG of the PV ("" for an orphan PV)
}

type allocation struct {
	pv      string
	extents int64
}

type logicalVolume struct {
	name    string
	extents int64
	stripes int
	alloc   []allocation
	tags    map[string]bool
	origin  string
	active  bool
	minor   uint32
	data    content
	cowUsed int64 // bytes of COW space used (snapshots)
	invalid bool  // the COW space overflowed
}

type physVol struct {
	dev     string
	extents int64
	free    int64
}

type volumeGroup struct {
	name       string
	extentSize int64
	pvs        []*physVol
	lvs        map[string]*logicalVolume
}

// Host is the simulated host.
type Host struct {
	mu          sync.Mutex
	extentSize  int64
	devs        map[string]*device
	vgs         map[string]*volumeGroup
	root        *node
	mounts      []*mountEntry
	pods        map[string]string                       // pod UID -> cgroup dir
	cgroups     map[string]map[string]hostexec.IOLimits // cgroup dir -> "maj:min" -> limits
	noCgroupIO  bool
	nextDMMinor uint32
	nextUUID    int

	faultMu sync.Mutex
	counts  map[string]int
	rules   []*faultRule
	delays  map[string]time.Duration
	calls   []string
}

var _ hostexec.Host = (*Host)(nil)

// New builds a host from a Config.
func New(cfg Config) (*Host, error) {
	extent, devs, err := cfg.parse()
	if err != nil {
		return nil, err
	}
	h := &Host{
		extentSize: extent,
		devs:       map[string]*device{},
		vgs:        map[string]*volumeGroup{},
		root:       newDir(),
		pods:       map[string]string{},
		cgroups:    map[string]map[string]hostexec.IOLimits{},
		noCgroupIO: cfg.NoCgroupIO,
		counts:     map[string]int{},
		delays:     map[string]time.Duration{},
	}
	disks := uint32(0)
	for _, d := range devs {
		dev := &device{name: d.Name, size: d.size, media: d.media, readOnly: d.ReadOnly, major: 8,
			parent: d.Parent, data: content{sigs: append([]string(nil), d.Signatures...)}}
		if d.Parent == "" {
			dev.minor = 16 * disks
			disks++
		} else {
			p := h.devs[d.Parent]
			p.partitions = append(p.partitions, d.Name)
			dev.minor = p.minor + uint32(len(p.partitions))
			dev.media = p.media
			dev.readOnly = dev.readOnly || p.readOnly
		}
		h.devs[d.Name] = dev
	}
	for i, v := range cfg.VGs {
		if err := h.createVG(v.Name, v.Devices, false); err != nil {
			return nil, fmt.Errorf("simhost config: vgs[%d]: %w", i, err)
		}
	}
	return h, nil
}

// MustNew is New for tests and examples with a known-good Config.
func MustNew(cfg Config) *Host {
	h, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return h
}

// AddDevice attaches a new disk (hot-plug).
func (h *Host) AddDevice(d DeviceConfig) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.devs[d.Name]; ok {
		return fmt.Errorf("device %s: %w", d.Name, hostexec.ErrAlreadyExists)
	}
	_, devs, err := Config{Devices: []DeviceConfig{d}}.parse()
	if err != nil {
		return err
	}
	maxMinor := uint32(0)
	for _, x := range h.devs {
		if x.parent == "" && x.minor+16 > maxMinor {
			maxMinor = x.minor + 16
		}
	}
	h.devs[d.Name] = &device{name: d.Name, size: devs[0].size, media: devs[0].media, readOnly: d.ReadOnly,
		major: 8, minor: maxMinor, data: content{sigs: append([]string(nil), d.Signatures...)}}
	return nil
}

// GrowDevice makes a whole disk larger (as a cloud disk resize would); a PV
// on it keeps its size until pvresize, which the simulator does not model.
func (h *Host) GrowDevice(name string, newSize int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.devs[name]
	if !ok {
		return fmt.Errorf("device %s: %w", name, hostexec.ErrNotFound)
	}
	if newSize < d.size || newSize%core.SectorSize != 0 {
		return hostexec.Invalid("device size", fmt.Sprint(newSize), "must be a multiple of 512 not below the current size")
	}
	d.size = newSize
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// enter records a call, applies the configured delay (honouring ctx) and
// injected failures. The returned finish function turns a successful call
// into an injected failure when FailAfterEffect asked for it.
func (h *Host) enter(ctx context.Context, op string, args ...string) (finish func(error) error, err error) {
	delay, failNow, failAfter := h.recordCall(op, args)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
	}
	if failNow != nil {
		return nil, failNow
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return func(err error) error {
		if err == nil && failAfter != nil {
			return failAfter
		}
		return err
	}, nil
}
