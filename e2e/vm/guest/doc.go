//go:build vmguest

// Package guest is the test suite of the VM test tier: it runs as root inside
// the QEMU guest that e2e/vm/run.sh boots, against real device-mapper, LVM,
// ext4/xfs, mounts and cgroup v2 on throwaway virtio disks. Every file carries
// the vmguest build tag, so `go test ./...` on a host never builds it; the
// binary also refuses to run outside the guest (OPEN_LOCAL_VM_GUEST=1, set by
// the guest's /init), because its tests wipe disks.
//
// Adding tests: put a new _test.go file (with the vmguest tag) in this
// package. The tests run one after the other, as root, except TestCSISanity
// and TestCSILifecycle, which run side by side once the others are done (on
// disks of their own, so that both vCPUs work), and can use:
//
//   - RequireDisks finds the VM's disks by their serial: Disks.VG (meant for
//     the VG of resourceToBeInited), Disks.Device (an exclusive Device
//     volume), Disks.Extra (vgextend, striping) and Disks.Sanity
//     (csi-sanity's VG).
//   - ClaimDisk hands a test a disk that must be blank and wipes it again at
//     cleanup (LVs unmounted, VGs and PVs removed, signatures erased), so the
//     next test finds it blank too.
//   - StartOpenLocal starts the real open-local binary (OPEN_LOCAL_BIN) as a
//     subprocess, stops it at cleanup and prints its output when the test
//     failed; RunOpenLocal runs it to completion.
//   - NewHost returns hostexec/realhost as a node uses it, with a context
//     whose klog output goes to the test log.
//   - Process.WaitForSocket waits for a gRPC server (the CSI endpoint) of a
//     started binary to accept connections.
//   - Run/Tool/Exec run a host tool with a timeout (cleanups use these, so
//     they do not depend on the code under test); NewCgroup and RunInCgroup
//     give a process its own cgroup v2 group, e.g. a pod's
//     kubepods.slice/... directory; Eventually polls.
//   - Main (from TestMain) prints a result summary of every test.
//
// Run one test with OPEN_LOCAL_VM_RUN='TestLVM/cow_snapshot' bash e2e/vm/run.sh.
package guest
