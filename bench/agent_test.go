package bench

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/realhost"
	"github.com/open-local/open-local/hostexec/realhost/looptest"
	"github.com/open-local/open-local/hostexec/simhost"
)

// The agent's steady cost is one discovery pass per --interval: block
// devices, one LVM report, the mount table and a statfs per mount point,
// then the conversion to a NodeLocalStorage status.

// agentListConfig lists everything, as a permissive NLS would.
var agentListConfig = core.ListConfig{
	VGs:         core.Filter{Include: []string{".*"}},
	MountPoints: core.Filter{Include: []string{".*"}},
	Devices:     core.Filter{Include: []string{".*"}},
}

// benchTick is one agent pass: discovery, status and filtered list.
func benchTick(b *testing.B, d *discovery.Discoverer, lc *core.CompiledListConfig) {
	b.Helper()
	snap, err := d.Discover(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	info := discovery.NodeStorageInfo(snap, discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes})
	f := discovery.Filtered(snap, lc)
	if len(info.VolumeGroups) == 0 || len(f.VolumeGroups) == 0 {
		b.Fatal("nothing discovered")
	}
}

// reportCPU adds the CPU the process and its children (lvm, wipefs) spent
// per pass, which is what the pass costs the node.
func reportCPU(b *testing.B, run func()) {
	var before, beforeChildren syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &beforeChildren)
	n := 0
	// b.Loop runs the setup before it once, however many rounds follow.
	for b.Loop() {
		run()
		n++
	}
	var after, afterChildren syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &afterChildren)
	cpu := func(a, z syscall.Rusage) time.Duration {
		return time.Duration(z.Utime.Nano()+z.Stime.Nano()-a.Utime.Nano()-a.Stime.Nano()) * time.Nanosecond
	}
	b.ReportMetric(float64(cpu(before, after).Microseconds())/float64(n)/1000, "self-cpu-ms/op")
	b.ReportMetric(float64(cpu(beforeChildren, afterChildren).Microseconds())/float64(n)/1000, "child-cpu-ms/op")
}

// BenchmarkAgentDiscoverySim is one pass over a simulated node with 8
// disks (NVMe with partitions among them), 2 VGs holding 200 LVs and 4
// mount points.
func BenchmarkAgentDiscoverySim(b *testing.B) {
	d, lc := simNode(b)
	b.ReportAllocs()
	reportCPU(b, func() { benchTick(b, d, lc) })
}

// BenchmarkAgentStatusSim is the agent's own share of a pass on that node:
// turning one snapshot into the status and the filtered list, without the
// host calls.
func BenchmarkAgentStatusSim(b *testing.B) {
	d, lc := simNode(b)
	snap, err := d.Discover(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	so := discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes}
	b.ReportAllocs()
	for b.Loop() {
		info := discovery.NodeStorageInfo(snap, so)
		f := discovery.Filtered(snap, lc)
		if len(info.VolumeGroups[0].LogicalVolumes) != 100 || len(f.Devices) == 0 {
			b.Fatal("unexpected status")
		}
	}
}

func simNode(b *testing.B) (*discovery.Discoverer, *core.CompiledListConfig) {
	cfg := simhost.Config{}
	for i := 0; i < 6; i++ {
		cfg.Devices = append(cfg.Devices, simhost.DeviceConfig{Name: fmt.Sprintf("/dev/sd%c", 'b'+i), Size: "1Ti", Media: "ssd"})
	}
	cfg.Devices = append(cfg.Devices,
		simhost.DeviceConfig{Name: "/dev/nvme0n1", Size: "1Ti", Media: "ssd", Signatures: []string{"gpt"}},
		simhost.DeviceConfig{Name: "/dev/nvme0n1p1", Size: "100Gi", Parent: "/dev/nvme0n1"},
		simhost.DeviceConfig{Name: "/dev/nvme0n1p2", Size: "100Gi", Parent: "/dev/nvme0n1"},
		simhost.DeviceConfig{Name: "/dev/nvme0n1p3", Size: "100Gi", Parent: "/dev/nvme0n1"},
		simhost.DeviceConfig{Name: "/dev/nvme0n1p4", Size: "100Gi", Parent: "/dev/nvme0n1"},
		simhost.DeviceConfig{Name: "/dev/nvme1n1", Size: "1Ti", Media: "ssd"})
	cfg.VGs = []simhost.VGConfig{
		{Name: "open-local-pool-0", Devices: []string{"/dev/sdb", "/dev/sdc", "/dev/sdd"}},
		{Name: "open-local-pool-1", Devices: []string{"/dev/sde", "/dev/sdf", "/dev/sdg"}},
	}
	h := simhost.MustNew(cfg)
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		vg := cfg.VGs[i%2].Name
		if err := h.CreateLV(ctx, hostexec.LVSpec{VG: vg, Name: fmt.Sprintf("local-%03d", i), SizeBytes: 4 * core.GiB}); err != nil {
			b.Fatal(err)
		}
	}
	for i := 1; i <= 4; i++ {
		dev := fmt.Sprintf("/dev/nvme0n1p%d", i)
		target := fmt.Sprintf("/mnt/open-local/disk%d", i)
		if err := h.Mkfs(ctx, dev, "ext4", nil); err != nil {
			b.Fatal(err)
		}
		if err := h.MakeDir(ctx, target); err != nil {
			b.Fatal(err)
		}
		if err := h.Mount(ctx, dev, target, "ext4", nil); err != nil {
			b.Fatal(err)
		}
	}
	d, err := discovery.New(h, discovery.Options{})
	if err != nil {
		b.Fatal(err)
	}
	lc, err := core.CompileListConfig(agentListConfig)
	if err != nil {
		b.Fatal(err)
	}
	return d, lc
}

// realNode is a real host over 4 loop devices of 1 GiB, two of them in a VG.
func realNode(b *testing.B) (*realhost.Host, *looptest.Loops, *regexp.Regexp) {
	loops := looptest.New(b, 4, core.GiB)
	h, err := realhost.New(realhost.Config{
		ExtraLVMArgs:       loops.LVMArgs(),
		Env:                loops.Env(),
		IncludeLoopDevices: true,
		NoActivation:       !loops.HasDeviceMapper,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := h.CreateVG(ctx, "ol-bench-agent", loops.Devices[:2], false); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := h.CreateLV(ctx, hostexec.LVSpec{VG: "ol-bench-agent", Name: fmt.Sprintf("local-%02d", i), SizeBytes: 16 * core.MiB}); err != nil {
			b.Fatal(err)
		}
	}
	var names []string
	for _, dev := range loops.Devices {
		names = append(names, strings.TrimPrefix(dev, "/dev/"))
	}
	return h, loops, regexp.MustCompile(strings.Join(names, "|"))
}

// BenchmarkAgentDiscoveryReal is one pass on real LVM over loop devices
// (skipped without root and lvm2): wipefs per block device of the host,
// one `lvm fullreport`, /proc/mounts.
func BenchmarkAgentDiscoveryReal(b *testing.B) {
	h, _, re := realNode(b)
	d, err := discovery.New(h, discovery.Options{DeviceFilter: re})
	if err != nil {
		b.Fatal(err)
	}
	lc, err := core.CompileListConfig(agentListConfig)
	if err != nil {
		b.Fatal(err)
	}
	reportCPU(b, func() { benchTick(b, d, lc) })
}

// BenchmarkAgentLVMReportReal is the LVM part of a real pass alone.
func BenchmarkAgentLVMReportReal(b *testing.B) {
	h, _, _ := realNode(b)
	ctx := context.Background()
	reportCPU(b, func() {
		if _, err := h.LVMReport(ctx); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkAgentBlockDevicesReal is the block-device part of a real pass
// alone: sysfs reads and one wipefs per device the host has.
func BenchmarkAgentBlockDevicesReal(b *testing.B) {
	h, _, _ := realNode(b)
	ctx := context.Background()
	var n int
	reportCPU(b, func() {
		devs, err := h.ListBlockDevices(ctx)
		if err != nil {
			b.Fatal(err)
		}
		n = len(devs)
	})
	b.ReportMetric(float64(n), "devices")
}
