// Package vm is the VM test tier: run.sh boots a QEMU guest (software
// emulation, no KVM needed) with a Debian cloud kernel and an initramfs that
// carries LVM, e2fsprogs, xfsprogs, util-linux, the open-local binary and the
// guest test suite (package guest, build tag vmguest), and reports the
// suite's verdict. The suite runs as root against real device-mapper, LVM,
// filesystems, mounts and cgroup v2 io.max on throwaway virtio disks.
//
// The tier normally runs as `bash e2e/vm/run.sh`; TestVM runs the same script
// from `go test` when OPEN_LOCAL_VM=1.
//
// The default run includes the CSI suite on real LVM (csi-sanity, the volume
// lifecycle, restart safety and the provisioning-latency comparison; files
// csi_*_test.go, build tag vmcsi) and the agent on the VM's disks
// (agent_test.go). csi-sanity and the lifecycle test run side by side, each
// on a disk of its own, so that both vCPUs work. The whole run takes under 7
// minutes under software emulation on a 2-core machine (403 s in CI with an
// empty Go build cache; the binaries build from what the lint tier compiled).
// For the LVM, device, agent and binary checks alone (about 1 minute of
// guest time):
//
//	OPEN_LOCAL_VM_TAGS= bash e2e/vm/run.sh
package vm
