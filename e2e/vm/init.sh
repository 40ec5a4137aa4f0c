#!/bin/sh
# /init of the VM test tier's initramfs (PID 1 inside the guest; /bin/sh is
# bash there). It prepares the guest the way a node looks to Open-Local
# (device-mapper, cgroup v2 with the io controller, virtio disks), runs the
# guest test binary and prints one machine-readable verdict line on the serial
# console, then powers off. Whatever happens, the VM ends: a watchdog powers
# it off at the deadline, and a hung task or an oops panics the kernel, which
# QEMU (-no-reboot, panic=-1) turns into an exit.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp

# Settings written by run.sh: OL_VM_MODULES, OL_VM_DISK_COUNT, OL_VM_DEADLINE,
# OL_VM_TEST_TIMEOUT, OL_VM_RUN.
. /etc/open-local-vm.env

say() { echo "open-local-vm: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

power_off() {
	sync
	poweroff -f
	# Not reached unless the reboot syscall failed; exiting PID 1 panics the
	# kernel, which also ends QEMU.
	exit 1
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup

# Watchdog: a test stuck in the kernel (D state) ignores every signal, so
# only powering off ends the run. No sync here: it could block on the same
# frozen device.
(
	sleep "$OL_VM_DEADLINE"
	echo "OPEN-LOCAL-VM-VERDICT: FAIL n=0 pass=0 fail=1 skip=0 rc=124 reason=guest-watchdog-after-${OL_VM_DEADLINE}s"
	echo o >/proc/sysrq-trigger
	sleep 5
	poweroff -n -f
) &

echo 1 >/proc/sys/kernel/hung_task_panic
echo 60 >/proc/sys/kernel/hung_task_timeout_secs
hostname "$(cat /etc/hostname)"
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

setup_failed=""
for m in $OL_VM_MODULES; do
	modprobe "$m" || setup_failed="$setup_failed modprobe:$m"
done
# The io controller must be enabled for children of the root cgroup before
# io.max exists there.
echo +io >/sys/fs/cgroup/cgroup.subtree_control || setup_failed="$setup_failed cgroup-io"

# virtio-blk probes asynchronously.
i=0
while [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt "$OL_VM_DISK_COUNT" ] && [ $i -lt 200 ]; do
	sleep 0.05
	i=$((i + 1))
done
[ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -ge "$OL_VM_DISK_COUNT" ] || setup_failed="$setup_failed disks"
say "guest ready at uptime $(uptime_s)s, kernel $(uname -r), disks: $(cd /sys/block && echo vd*)"
[ -z "$setup_failed" ] || say "setup problems:$setup_failed (the tests will say what is missing)"

export OPEN_LOCAL_VM_GUEST=1
export OPEN_LOCAL_BIN=/usr/bin/open-local
export NODE_NAME
NODE_NAME=$(hostname)

set -- -test.v -test.timeout "$OL_VM_TEST_TIMEOUT"
[ -n "$OL_VM_RUN" ] && set -- "$@" -test.run "$OL_VM_RUN"
say "running guest.test $* at uptime $(uptime_s)s"
mkdir -p /var/lib/open-local-vm
cd /var/lib/open-local-vm || exit 1
{
	/opt/open-local-vm/guest.test "$@" 2>&1
	echo $? >/run/guest-test.rc
} | tee /run/guest-test.log
rc=$(cat /run/guest-test.rc 2>/dev/null || echo 255)

# Count every test and subtest outcome of `go test -v`, wherever it is in a
# line: parallel tests share the output, and one that writes a partial line
# (csi-sanity's progress dots) leaves the next outcome in mid-line.
outcomes() { grep -o -E -- "--- $1: [^ ]+ \([0-9.]+s\)" /run/guest-test.log | wc -l; }
pass=$(outcomes PASS)
fail=$(outcomes FAIL)
skip=$(outcomes SKIP)
verdict=FAIL
[ "$rc" = 0 ] && [ "$fail" = 0 ] && [ "$pass" -gt 0 ] && verdict=PASS
say "guest.test exited $rc at uptime $(uptime_s)s"
echo "OPEN-LOCAL-VM-VERDICT: $verdict n=$((pass + fail + skip)) pass=$pass fail=$fail skip=$skip rc=$rc"
power_off
