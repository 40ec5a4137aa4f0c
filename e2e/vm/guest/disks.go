//go:build vmguest

package guest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Serials that run.sh gives the VM's virtio disks. The guest finds a disk by
// its serial rather than by its name (vda, vdb...), which depends on probe
// order.
const (
	SerialVG     = "ol-vg"     // for the VG that resourceToBeInited creates
	SerialDevice = "ol-device" // for an exclusive Device volume
	SerialExtra  = "ol-extra"  // for growing a VG (vgextend) and striping
	SerialSanity = "ol-sanity" // csi-sanity's VG, so that it can run beside the lifecycle test
)

// Disk is one virtio disk of the VM.
type Disk struct {
	Name      string // kernel name, e.g. vdb
	Path      string // device node, e.g. /dev/vdb
	Serial    string
	SizeBytes int64
}

// Disks are the VM's disks, by role.
type Disks struct {
	VG, Device, Extra, Sanity Disk
}

// FindDisks reads /sys/block/vd* and returns the disks by serial.
func FindDisks() (Disks, error) {
	all, err := ListDisks()
	if err != nil {
		return Disks{}, err
	}
	bySerial := map[string]Disk{}
	for _, d := range all {
		bySerial[d.Serial] = d
	}
	var ds Disks
	for _, want := range []struct {
		serial string
		into   *Disk
	}{{SerialVG, &ds.VG}, {SerialDevice, &ds.Device}, {SerialExtra, &ds.Extra}, {SerialSanity, &ds.Sanity}} {
		d, ok := bySerial[want.serial]
		if !ok {
			return Disks{}, fmt.Errorf("no virtio disk with serial %q among %v", want.serial, all)
		}
		*want.into = d
	}
	return ds, nil
}

// ListDisks lists every virtio disk with its serial and size, sorted by name.
func ListDisks() ([]Disk, error) {
	dirs, err := filepath.Glob("/sys/block/vd*")
	if err != nil {
		return nil, err
	}
	sort.Strings(dirs)
	disks := make([]Disk, 0, len(dirs))
	for _, dir := range dirs {
		name := filepath.Base(dir)
		serial, err := os.ReadFile(filepath.Join(dir, "serial"))
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", name, err)
		}
		sectors, err := readInt(filepath.Join(dir, "size"))
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", name, err)
		}
		disks = append(disks, Disk{
			Name:      name,
			Path:      "/dev/" + name,
			Serial:    strings.TrimSpace(string(serial)),
			SizeBytes: sectors * 512, // sysfs counts 512-byte sectors whatever the block size
		})
	}
	return disks, nil
}

// RequireDisks returns the VM's disks or fails the test.
func RequireDisks(t testing.TB) Disks {
	t.Helper()
	ds, err := FindDisks()
	if err != nil {
		t.Fatalf("VM disks: %v", err)
	}
	return ds
}

// ClaimDisk gives the test a disk that must be blank (no signature, no PV,
// not mounted) and wipes it again at cleanup: whatever the test left on it
// (mounts of its LVs, VGs, the PV, signatures) is removed so that the next
// test also starts from a blank disk.
func ClaimDisk(t testing.TB, d Disk) string {
	t.Helper()
	if sigs := Signatures(t, d.Path); len(sigs) > 0 {
		t.Fatalf("disk %s (%s) is not blank: %s; an earlier test did not clean up", d.Path, d.Serial, strings.Join(sigs, ", "))
	}
	t.Cleanup(func() {
		if err := ResetDisk(d.Path); err != nil {
			t.Errorf("wiping %s after the test: %v", d.Path, err)
		}
	})
	return d.Path
}

// Signatures lists the signatures wipefs finds on a device ("LVM2_member at
// 0x218", "ext4 at 0x438"), empty for a blank device.
func Signatures(t testing.TB, device string) []string {
	t.Helper()
	out := Run(t, "wipefs", "--noheadings", "--output", "TYPE,OFFSET", device)
	var sigs []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			sigs = append(sigs, f[0]+" at "+f[1])
		}
	}
	return sigs
}

// ResetDisk returns a disk to blank: it unmounts every filesystem on the disk
// or on an LV of a VG that uses it, removes those VGs and the PV, and erases
// all signatures. A disk that is already blank is left alone.
func ResetDisk(device string) error {
	vgs, err := Tool("lvm", "pvs", "--noheadings", "-o", "vg_name", "--select", "pv_name="+device)
	if err != nil && !strings.Contains(err.Error(), "Failed to find") && !strings.Contains(err.Error(), "No physical volume") {
		return err
	}
	sources := map[string]bool{device: true}
	vgNames := strings.Fields(vgs)
	for _, vg := range vgNames {
		out, err := Tool("lvm", "lvs", "--noheadings", "-o", "lv_path,lv_dm_path", vg)
		if err != nil {
			return err
		}
		for _, p := range strings.Fields(out) {
			sources[p] = true
		}
	}
	if err := unmountSources(sources); err != nil {
		return err
	}
	for _, vg := range vgNames {
		if _, err := Tool("lvm", "vgremove", "-ff", "-y", vg); err != nil {
			return err
		}
	}
	if len(vgNames) > 0 || hasPV(device) {
		if _, err := Tool("lvm", "pvremove", "-ff", "-y", device); err != nil {
			return err
		}
	}
	_, err = Tool("wipefs", "-a", device)
	return err
}

func hasPV(device string) bool {
	out, err := Tool("lvm", "pvs", "--noheadings", "-o", "pv_name")
	return err == nil && strings.Contains(" "+strings.Join(strings.Fields(out), " ")+" ", " "+device+" ")
}

// unmountSources unmounts, deepest first, every mount whose source is one of
// the given device paths (compared after resolving symlinks).
func unmountSources(sources map[string]bool) error {
	resolved := map[string]bool{}
	for s := range sources {
		resolved[s] = true
		if r, err := filepath.EvalSymlinks(s); err == nil {
			resolved[r] = true
		}
	}
	mounts, err := Mounts()
	if err != nil {
		return err
	}
	var targets []string
	for _, m := range mounts {
		src := m.Source
		if r, err := filepath.EvalSymlinks(src); err == nil {
			src = r
		}
		if resolved[m.Source] || resolved[src] {
			targets = append(targets, m.Target)
		}
	}
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, target := range targets {
		if _, err := Tool("umount", target); err != nil {
			return err
		}
	}
	return nil
}

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	Source, Target, FSType string
	Options                []string
}

// Mounts reads the guest's mount table.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var mounts []Mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root target options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 6 || len(fields) < sep+3 {
			continue
		}
		mounts = append(mounts, Mount{
			Source:  unescapeMountinfo(fields[sep+2]),
			Target:  unescapeMountinfo(fields[4]),
			FSType:  fields[sep+1],
			Options: strings.Split(fields[5], ","),
		})
	}
	return mounts, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountOf returns the mount on target, if any.
func MountOf(target string) (Mount, bool, error) {
	mounts, err := Mounts()
	if err != nil {
		return Mount{}, false, err
	}
	for i := len(mounts) - 1; i >= 0; i-- { // the last mount on a path is the visible one
		if mounts[i].Target == target {
			return mounts[i], true, nil
		}
	}
	return Mount{}, false, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// Eventually polls cond every interval until it reports true, and fails the
// test with what and the last error when timeout passes first.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s (last error: %v)", what, timeout, lastErr)
		}
		time.Sleep(interval)
	}
}
