// Package initres creates what a NodeLocalStorage's spec.resourceToBeInited
// asks for: volume groups (created, or grown with devices listed later) and
// formatted, mounted filesystems. It never overwrites data it was not told
// to: a device that carries a signature joins a VG only when forced, only
// blank devices are formatted, and a device of another VG is never taken.
//
// Apply is idempotent: once everything exists it makes no change, so it
// can be retried until it succeeds.
package initres

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// Event reasons.
const (
	ReasonVGCreated       = "VolumeGroupCreated"
	ReasonVGExtended      = "VolumeGroupExtended"
	ReasonCreateVGFailed  = "CreateVGFailed"
	ReasonExtendVGFailed  = "ExtendVGFailed"
	ReasonMountPointReady = "MountPointCreated"
	ReasonMountPointFail  = "InitMountPointFailed"
	// ReasonMountOutsideRoot warns that a mount point will be mounted but,
	// not being directly under the mount root, never reported or offered.
	ReasonMountOutsideRoot = "MountPointOutsideRoot"
)

// Host operations Apply makes (Problem.Op).
const (
	OpSignatures = "Signatures"
	OpCreatePV   = "CreatePV"
	OpCreateVG   = "CreateVG"
	OpExtendVG   = "ExtendVG"
	OpMkfs       = "Mkfs"
	OpMakeDir    = "MakeDir"
	OpMount      = "Mount"
)

// lvmLabel is the signature of an LVM PV.
const lvmLabel = "LVM2_member"

// Options tune Apply.
type Options struct {
	// Force lets devices that carry signatures become PVs (pvcreate
	// --force), as open-local's Force_Create_VG.
	Force bool
	// MountRoot is the agent's mount root: mount points elsewhere are
	// mounted but draw a warning, as discovery does not report them.
	MountRoot string
}

// Event is what Apply reports to the NodeLocalStorage's events.
type Event struct {
	// Type is corev1.EventTypeNormal or corev1.EventTypeWarning.
	Type    string
	Reason  string
	Message string
}

// Problem is a resource that is not initialised yet.
type Problem struct {
	// Resource names it: "volume group <name>" or "mount point <path>".
	Resource string
	// Op is the host operation that failed, "" when Apply refused to act.
	Op      string
	Message string
}

func (p Problem) String() string { return p.Resource + ": " + p.Message }

// Result is the outcome of Apply.
type Result struct {
	Events   []Event
	Problems []Problem
	// Changed reports that the host was modified.
	Changed bool
}

// Err joins the problems into one error, nil when there is none.
func (r Result) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	parts := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		parts[i] = p.String()
	}
	return errors.New(strings.Join(parts, "; "))
}

// state is what Apply knows of the host, kept up to date as it acts.
type state struct {
	host      hostexec.Host
	blocks    map[string]core.BlockDevice
	pvOf      map[string]string // device -> VG of the PV ("" for an orphan PV)
	vgPVs     map[string]map[string]bool
	mountedAt map[string]string // source device -> a target it is mounted on
	mountOn   map[string]string // target -> source device (the visible mount)
}

func newState(host hostexec.Host, snap discovery.Snapshot) *state {
	s := &state{host: host, blocks: map[string]core.BlockDevice{}, pvOf: map[string]string{},
		vgPVs: map[string]map[string]bool{}, mountedAt: map[string]string{}, mountOn: map[string]string{}}
	for _, d := range snap.Storage.Devices {
		s.blocks[d.Name] = d
	}
	for _, vg := range snap.Storage.VGs {
		s.vgPVs[vg.Name] = map[string]bool{}
		for _, pv := range vg.PVs {
			s.pvOf[pv.Name] = vg.Name
			s.vgPVs[vg.Name][pv.Name] = true
		}
	}
	for _, pv := range snap.OrphanPVs {
		s.pvOf[pv.Name] = ""
	}
	for _, m := range snap.Mounts {
		if _, ok := s.mountedAt[m.Source]; !ok {
			s.mountedAt[m.Source] = m.Target
		}
		s.mountOn[path.Clean(m.Target)] = m.Source
	}
	return s
}

// device returns what is known of a device. One that ListBlockDevices did
// not report (a /dev/disk/by-id link, a device the discovery filter hides)
// is probed for signatures directly. found is false when it does not exist.
func (s *state) device(ctx context.Context, name string) (d core.BlockDevice, found bool, err error) {
	if d, ok := s.blocks[name]; ok {
		return d, true, nil
	}
	sigs, err := s.host.Signatures(ctx, name)
	if errors.Is(err, hostexec.ErrNotFound) {
		return core.BlockDevice{}, false, nil
	}
	if err != nil {
		return core.BlockDevice{}, false, err
	}
	d = core.BlockDevice{Name: name, Signatures: sigs}
	s.blocks[name] = d
	return d, true, nil
}

// busy says why a device cannot be taken whatever the force: it is read-only,
// mounted, partitioned, or has a mounted partition.
func (s *state) busy(d core.BlockDevice) string {
	if d.ReadOnly {
		return fmt.Sprintf("device %s is read-only", d.Name)
	}
	if t, ok := s.mountedAt[d.Name]; ok {
		return fmt.Sprintf("device %s is mounted on %s", d.Name, t)
	}
	if len(d.Partitions) > 0 {
		return fmt.Sprintf("device %s has partitions %s; list a partition instead", d.Name, strings.Join(d.Partitions, ", "))
	}
	return ""
}

// foreignSignatures are the signatures of d other than the LVM label of an
// orphan PV (which a VG may take as it is).
func (s *state) foreignSignatures(d core.BlockDevice) []string {
	vg, isPV := s.pvOf[d.Name]
	var out []string
	for _, sig := range d.Signatures {
		if sig == lvmLabel && isPV && vg == "" {
			continue
		}
		out = append(out, sig)
	}
	return out
}

// Apply creates or grows every VG of spec, then formats and mounts every
// mount point, starting from snap (a discovery pass made just before).
func Apply(ctx context.Context, host hostexec.Host, snap discovery.Snapshot, spec v1alpha1.ResourceToBeInited, opts Options) Result {
	if opts.MountRoot == "" {
		opts.MountRoot = discovery.DefaultMountRoot
	}
	s := newState(host, snap)
	var r Result
	for _, vg := range spec.VGs {
		if ctx.Err() != nil {
			r.Problems = append(r.Problems, Problem{Resource: "volume group " + vg.Name, Message: ctx.Err().Error()})
			continue
		}
		s.applyVG(ctx, vg, opts, &r)
	}
	for _, mp := range spec.MountPoints {
		if ctx.Err() != nil {
			r.Problems = append(r.Problems, Problem{Resource: "mount point " + mp.Path, Message: ctx.Err().Error()})
			continue
		}
		s.applyMountPoint(ctx, mp, opts, &r)
	}
	return r
}

// candidate is a device that may join a VG.
type candidate struct {
	name string
	// overwrite lists the signatures that forcing will destroy.
	overwrite []string
}

// check decides whether device may join VG vgName. member means it already
// is a PV of it; refusal says why it may not join; err is a failed probe.
func (s *state) check(ctx context.Context, device, vgName string, force bool) (c candidate, member bool, refusal string, err error) {
	if owner, isPV := s.pvOf[device]; isPV && owner != "" {
		if owner == vgName {
			return candidate{}, true, "", nil
		}
		return candidate{}, false, fmt.Sprintf("device %s is a physical volume of volume group %s", device, owner), nil
	}
	d, found, err := s.device(ctx, device)
	if err != nil {
		return candidate{}, false, "", err
	}
	if !found {
		return candidate{}, false, fmt.Sprintf("device %s not found", device), nil
	}
	if why := s.busy(d); why != "" {
		return candidate{}, false, why, nil
	}
	c = candidate{name: device}
	if sigs := s.foreignSignatures(d); len(sigs) > 0 {
		if !force {
			return candidate{}, false, fmt.Sprintf("device %s carries %s signatures; wipe it, or start the agent with --force-create-vg (Force_Create_VG=true) to overwrite them", device, strings.Join(sigs, ", ")), nil
		}
		c.overwrite = sigs
	}
	return c, false, "", nil
}

func (s *state) applyVG(ctx context.Context, vg v1alpha1.VGToBeInited, opts Options, r *Result) {
	resource := "volume group " + vg.Name
	if err := hostexec.ValidateVGName(vg.Name); err != nil {
		r.fail(Event{corev1.EventTypeWarning, ReasonCreateVGFailed, err.Error()}, Problem{Resource: resource, Message: err.Error()})
		return
	}
	_, exists := s.vgPVs[vg.Name]
	var cands []candidate
	var refusals []string
	failedOp := ""
	for _, dev := range dedupe(vg.Devices) {
		c, member, refusal, err := s.check(ctx, dev, vg.Name, opts.Force)
		switch {
		case err != nil:
			refusals = append(refusals, fmt.Sprintf("probe %s: %v", dev, err))
			failedOp = OpSignatures
		case refusal != "":
			refusals = append(refusals, refusal)
		case !member:
			cands = append(cands, c)
		}
	}
	if !exists {
		s.createVG(ctx, vg.Name, cands, refusals, failedOp, r)
		return
	}
	s.extendVG(ctx, vg.Name, cands, refusals, failedOp, r)
}

// createVG creates the VG when no device was refused. failedOp is the host
// operation behind a refusal, if one failed.
func (s *state) createVG(ctx context.Context, name string, cands []candidate, refusals []string, failedOp string, r *Result) {
	resource := "volume group " + name
	if len(refusals) > 0 {
		// Creating the VG from some of its devices would make it smaller
		// than asked; wait until every device can be used.
		msg := fmt.Sprintf("not creating volume group %s: %s", name, strings.Join(refusals, "; "))
		r.fail(Event{corev1.EventTypeWarning, ReasonCreateVGFailed, msg}, Problem{Resource: resource, Op: failedOp, Message: msg})
		return
	}
	devs := make([]string, len(cands))
	force := false
	var overwritten []string
	for i, c := range cands {
		devs[i] = c.name
		if len(c.overwrite) > 0 {
			force = true
			overwritten = append(overwritten, fmt.Sprintf("%s (%s)", c.name, strings.Join(c.overwrite, ", ")))
		}
	}
	if err := s.host.CreateVG(ctx, name, devs, force); err != nil {
		msg := fmt.Sprintf("create volume group %s from %s: %v", name, strings.Join(devs, ", "), err)
		r.fail(Event{corev1.EventTypeWarning, ReasonCreateVGFailed, msg}, Problem{Resource: resource, Op: OpCreateVG, Message: msg})
		return
	}
	r.Changed = true
	s.vgPVs[name] = map[string]bool{}
	for _, d := range devs {
		s.pvOf[d] = name
		s.vgPVs[name][d] = true
	}
	msg := fmt.Sprintf("created volume group %s from %s", name, strings.Join(devs, ", "))
	if len(overwritten) > 0 {
		msg += "; forced over existing signatures on " + strings.Join(overwritten, ", ")
	}
	r.Events = append(r.Events, Event{corev1.EventTypeNormal, ReasonVGCreated, msg})
}

// extendVG adds the accepted devices to an existing VG and reports the
// refused ones; one refused device does not hold the others back.
func (s *state) extendVG(ctx context.Context, name string, cands []candidate, refusals []string, failedOp string, r *Result) {
	resource := "volume group " + name
	if len(refusals) > 0 {
		msg := fmt.Sprintf("not adding to volume group %s: %s", name, strings.Join(refusals, "; "))
		r.fail(Event{corev1.EventTypeWarning, ReasonExtendVGFailed, msg}, Problem{Resource: resource, Op: failedOp, Message: msg})
	}
	if len(cands) == 0 {
		return
	}
	var devs, overwritten []string
	for _, c := range cands {
		if len(c.overwrite) > 0 {
			// vgextend has no force of its own: make the PV first.
			if err := s.host.CreatePV(ctx, c.name, true); err != nil {
				msg := fmt.Sprintf("create physical volume on %s for volume group %s: %v", c.name, name, err)
				r.fail(Event{corev1.EventTypeWarning, ReasonExtendVGFailed, msg}, Problem{Resource: resource, Op: OpCreatePV, Message: msg})
				continue
			}
			r.Changed = true
			s.pvOf[c.name] = ""
			overwritten = append(overwritten, fmt.Sprintf("%s (%s)", c.name, strings.Join(c.overwrite, ", ")))
		}
		devs = append(devs, c.name)
	}
	if len(devs) == 0 {
		return
	}
	if err := s.host.ExtendVG(ctx, name, devs); err != nil {
		msg := fmt.Sprintf("extend volume group %s with %s: %v", name, strings.Join(devs, ", "), err)
		r.fail(Event{corev1.EventTypeWarning, ReasonExtendVGFailed, msg}, Problem{Resource: resource, Op: OpExtendVG, Message: msg})
		return
	}
	r.Changed = true
	for _, d := range devs {
		s.pvOf[d] = name
		s.vgPVs[name][d] = true
	}
	msg := fmt.Sprintf("extended volume group %s with %s", name, strings.Join(devs, ", "))
	if len(overwritten) > 0 {
		msg += "; forced over existing signatures on " + strings.Join(overwritten, ", ")
	}
	r.Events = append(r.Events, Event{corev1.EventTypeNormal, ReasonVGExtended, msg})
}

func (s *state) applyMountPoint(ctx context.Context, mp v1alpha1.MountPointToBeInited, opts Options, r *Result) {
	resource := "mount point " + mp.Path
	fail := func(op, msg string) {
		r.fail(Event{corev1.EventTypeWarning, ReasonMountPointFail, msg}, Problem{Resource: resource, Op: op, Message: msg})
	}
	if err := hostexec.ValidatePath(path.Clean(mp.Path)); err != nil {
		fail("", err.Error())
		return
	}
	target := path.Clean(mp.Path)
	fsType := string(mp.FsType)
	if fsType == "" {
		fsType = string(v1alpha1.FSTypeExt4)
	}
	// Checked before formatting, so that a typo does not leave a formatted
	// device behind a failed mount.
	if err := hostexec.ValidateFSType(fsType); err != nil {
		fail("", err.Error())
		return
	}
	if err := hostexec.ValidateMountOptions(mp.Options); err != nil {
		fail("", err.Error())
		return
	}
	if src, ok := s.mountOn[target]; ok {
		if src != mp.Device {
			fail("", fmt.Sprintf("%s already has %s mounted; not mounting %s over it", target, src, mp.Device))
		}
		return
	}
	if owner, isPV := s.pvOf[mp.Device]; isPV {
		if owner != "" {
			fail("", fmt.Sprintf("device %s is a physical volume of volume group %s", mp.Device, owner))
		} else {
			fail("", fmt.Sprintf("device %s is a physical volume", mp.Device))
		}
		return
	}
	d, found, err := s.device(ctx, mp.Device)
	if err != nil {
		fail(OpSignatures, fmt.Sprintf("probe %s: %v", mp.Device, err))
		return
	}
	if !found {
		fail("", fmt.Sprintf("device %s not found", mp.Device))
		return
	}
	if why := s.busy(d); why != "" {
		fail("", why)
		return
	}
	sigs := append([]string(nil), d.Signatures...)
	sort.Strings(sigs)
	formatted := false
	switch {
	case len(sigs) == 0:
		if err := s.host.Mkfs(ctx, mp.Device, fsType, nil); err != nil {
			fail(OpMkfs, fmt.Sprintf("format %s as %s: %v", mp.Device, fsType, err))
			return
		}
		r.Changed = true
		formatted = true
		d.Signatures = []string{fsType}
		s.blocks[d.Name] = d
	case len(sigs) == 1 && sigs[0] == fsType:
		// Formatted by an earlier attempt (or before a reboot): mount it.
	default:
		fail("", fmt.Sprintf("device %s carries %s signatures; only blank devices are formatted (wipe it to use it for %s)", mp.Device, strings.Join(sigs, ", "), target))
		return
	}
	if err := s.host.MakeDir(ctx, target); err != nil {
		fail(OpMakeDir, fmt.Sprintf("create %s: %v", target, err))
		return
	}
	if err := s.host.Mount(ctx, mp.Device, target, fsType, mp.Options); err != nil {
		fail(OpMount, fmt.Sprintf("mount %s on %s: %v", mp.Device, target, err))
		return
	}
	r.Changed = true
	s.mountOn[target] = mp.Device
	s.mountedAt[mp.Device] = target
	verb := "mounted"
	if formatted {
		verb = "formatted as " + fsType + " and mounted"
	}
	r.Events = append(r.Events, Event{corev1.EventTypeNormal, ReasonMountPointReady, fmt.Sprintf("%s %s on %s", mp.Device, verb, target)})
	if root := path.Clean(opts.MountRoot); path.Dir(target) != root {
		r.Events = append(r.Events, Event{corev1.EventTypeWarning, ReasonMountOutsideRoot,
			fmt.Sprintf("mount point %s is not directly under %s: it is mounted but never reported or offered to volumes", target, root)})
	}
}

func (r *Result) fail(e Event, p Problem) {
	r.Events = append(r.Events, e)
	r.Problems = append(r.Problems, p)
}

func dedupe(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
