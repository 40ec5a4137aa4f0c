// Package realhost is the Host that runs the real tools: lvm, wipefs, mkfs,
// mount, resize2fs/xfs_growfs and dd, each through exec.CommandContext with an
// argv (never a shell), plus sysfs, /proc and cgroupfs reads and writes.
package realhost

import (
	"fmt"
	"path/filepath"

	"k8s.io/mount-utils"

	"github.com/open-local/open-local/hostexec"
)

// Config says how to reach the host's tools and filesystems.
type Config struct {
	// CommandPrefix runs every tool through another program, e.g.
	// ["nsenter", "--mount=/proc/1/ns/mnt", "--"] so that lvm uses the host's
	// configuration and locks. It applies to the commands this package starts
	// (lvm, wipefs, blkid, mkfs, resize2fs, xfs_growfs, dd); file, sysfs,
	// cgroup and mount operations run in the plugin's own mount namespace,
	// which must therefore see /dev, the kubelet directory and the cgroup
	// root with bidirectional mount propagation.
	CommandPrefix []string
	// ExtraLVMArgs are global lvm options put after every lvm subcommand,
	// e.g. ["--driverloaded", "n"] to run metadata commands without
	// device-mapper. They are not given to other tools.
	ExtraLVMArgs []string
	// Env adds variables (KEY=VALUE) to every command's environment, e.g.
	// LVM_SYSTEM_DIR to point lvm at another lvm.conf. LC_ALL=C is always
	// set, so that messages can be matched.
	Env []string
	// LVMBinary is the lvm program ("lvm" when empty).
	LVMBinary string
	// SysfsRoot is where sysfs is mounted ("/sys" when empty).
	SysfsRoot string
	// DevRoot is where device nodes are ("/dev" when empty); it names the
	// devices ListBlockDevices reports and LVDevicePath returns.
	DevRoot string
	// CgroupRoot is the cgroup v2 mount ("/sys/fs/cgroup" when empty).
	CgroupRoot string
	// IncludeLoopDevices makes ListBlockDevices report attached loop devices
	// (tests build disks from them); they are skipped otherwise.
	IncludeLoopDevices bool
	// NoActivation creates LVs without activating them (-an --zero n) and
	// builds snapshots from metadata only, for hosts without device-mapper.
	// LVs then have no device node: nothing can be formatted or mounted on
	// them. Use together with ExtraLVMArgs ["--driverloaded", "n"].
	NoActivation bool
}

// Host is the real host. It is safe for concurrent use; LVM serialises its
// own metadata updates with its locks.
type Host struct {
	cfg     Config
	run     *runner
	mounter mount.Interface
}

var _ hostexec.Host = (*Host)(nil)

// New checks the configuration and returns a Host.
func New(cfg Config) (*Host, error) {
	if cfg.LVMBinary == "" {
		cfg.LVMBinary = "lvm"
	}
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = "/sys"
	}
	if cfg.DevRoot == "" {
		cfg.DevRoot = "/dev"
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/sys/fs/cgroup"
	}
	for field, p := range map[string]string{"SysfsRoot": cfg.SysfsRoot, "DevRoot": cfg.DevRoot, "CgroupRoot": cfg.CgroupRoot} {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("realhost config: %s %q must be a clean absolute path: %w", field, p, hostexec.ErrInvalidArgument)
		}
	}
	for _, kv := range cfg.Env {
		if !validEnv(kv) {
			return nil, fmt.Errorf("realhost config: Env entry %q is not KEY=VALUE: %w", kv, hostexec.ErrInvalidArgument)
		}
	}
	return &Host{
		cfg: cfg,
		run: newRunner(cfg.CommandPrefix, cfg.Env),
		// No systemd-run scopes: ext4 and xfs need no helper process that
		// would have to outlive the plugin.
		mounter: mount.NewWithoutSystemd(""),
	}, nil
}

func validEnv(kv string) bool {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return i > 0
		}
	}
	return false
}
