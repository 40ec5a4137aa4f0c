#!/usr/bin/env bash
# VM test tier: runs the guest test suite (e2e/vm/guest) as root inside a QEMU
# virtual machine with real device-mapper, LVM, filesystems, mounts and cgroup
# v2, on virtio disks that are thrown away afterwards. Software emulation (TCG)
# is used, so no /dev/kvm is needed.
#
# Steps: apt packages -> guest kernel (Debian cloud kernel, extracted from its
# .deb and cached, never installed) -> Go binaries (open-local and the guest
# test binary, static) -> initramfs (cached tool/module layer + per-run payload)
# -> QEMU -> verdict from the serial console.
#
# Exit status 0 only when the guest printed a PASS verdict with no failure.
#
# Environment:
#   OPEN_LOCAL_VM_TIMEOUT  seconds the VM may run, boot to power-off (default 1200)
#   OPEN_LOCAL_VM_TAGS     extra guest build tags (default vmcsi: the CSI suite;
#                          empty: LVM, device, agent and binary checks only)
#   OPEN_LOCAL_VM_RUN      -test.run regexp for the guest test binary
#   OPEN_LOCAL_VM_KEEP     1: keep disk images, image trees and initramfs in e2e/vm/work
#   OPEN_LOCAL_VM_EXTRA    space-separated host files (static binaries) copied to
#                          /usr/local/bin in the guest
#   OPEN_LOCAL_CACHE       cache root (default $HOME/.cache/open-local)
#
# Artefacts: e2e/vm/work/console.log (serial console), e2e/vm/work/qemu.cmd.
set -euo pipefail

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$VM_DIR/../.." && pwd)
WORK=$VM_DIR/work
CACHE=${OPEN_LOCAL_CACHE:-${HOME:-/root}/.cache/open-local}
VM_TIMEOUT=${OPEN_LOCAL_VM_TIMEOUT:-1200}
VM_RUN=${OPEN_LOCAL_VM_RUN:-}
VM_KEEP=${OPEN_LOCAL_VM_KEEP:-}
VM_EXTRA=${OPEN_LOCAL_VM_EXTRA:-}

# Packages the host needs; every tool copied into the guest comes from them.
PACKAGES="qemu-system-x86 busybox-static lvm2 dmsetup xfsprogs e2fsprogs util-linux mount
  coreutils bash kmod cpio gzip"
# Kernel modules the guest loads (modprobe resolves their dependencies, e.g.
# dm_bufio for dm_snapshot). Names that are built into the kernel are fine.
GUEST_MODULES="virtio_pci virtio_blk dm_mod dm_snapshot dm_mirror xfs ext4 crc32c_generic loop"
# Host tools copied into the guest with their shared libraries (ELF) or as they
# are (scripts). Real tools take precedence over busybox applets.
GUEST_TOOLS="lvm dmsetup fsadm
  mke2fs mkfs.ext4 mkfs.ext3 resize2fs e2fsck fsck.ext4 tune2fs dumpe2fs
  mkfs.xfs xfs_growfs xfs_repair xfs_db xfs_io xfs_spaceman xfs_info xfs_admin fsck.xfs
  mount umount blkid blockdev losetup fsfreeze wipefs findmnt lsblk fsck nsenter
  bash stat readlink date dd kmod"
# Disks: serial (the guest finds each disk by it) and size. Sparse files.
GUEST_DISKS="ol-vg:24G ol-device:1G ol-extra:1G ol-sanity:24G"

T0=$SECONDS
say() { printf '[vm-tier %4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { say "error: $*"; exit 1; }

export PATH="$PATH:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive
SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
  SUDO=sudo
fi

case $VM_TIMEOUT in '' | *[!0-9]*) die "OPEN_LOCAL_VM_TIMEOUT must be a number of seconds, got '$VM_TIMEOUT'" ;; esac
[ "$VM_TIMEOUT" -ge 120 ] || die "OPEN_LOCAL_VM_TIMEOUT must be at least 120 seconds, got $VM_TIMEOUT"
# The guest powers itself off before the host gives up; the Go test timeout
# fires before the guest watchdog, so a stuck test still prints its goroutines.
GUEST_DEADLINE=$((VM_TIMEOUT - 45))
GUEST_TEST_TIMEOUT=$((GUEST_DEADLINE - 25))

mkdir -p "$WORK" "$CACHE"

apt_quiet() { $SUDO apt-get -o DPkg::Lock::Timeout=300 -q "$@" >>"$WORK/apt.log" 2>&1; }

# ---------------------------------------------------------------- packages
install_packages() {
  command -v dpkg-query >/dev/null || die "this script needs a Debian-based host (dpkg/apt)"
  local missing="" p
  for p in $PACKAGES; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  say "installing:$missing"
  apt_quiet update || die "apt-get update failed (see $WORK/apt.log)"
  # shellcheck disable=SC2086
  apt_quiet install -y --no-install-recommends $missing || die "apt-get install failed (see $WORK/apt.log)"
}

# ------------------------------------------------------------------ kernel
# The ABI name (6.1.0-NN-cloud-amd64) moves with every Debian kernel update:
# ask the metapackage which image it points at.
kernel_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# Sets KVER and KDIR (cache directory holding vmlinuz and lib/modules/$KVER).
prepare_kernel() {
  local pkg
  pkg=$(kernel_package)
  if [ -z "$pkg" ]; then
    apt_quiet update || true
    pkg=$(kernel_package)
  fi
  if [ -z "$pkg" ]; then
    # Offline with a stale apt list: any kernel cached earlier still works.
    KDIR=$(ls -d "$CACHE"/vm-kernel-*/ 2>/dev/null | sort -V | tail -n1)
    [ -n "$KDIR" ] && [ -f "$KDIR/.complete" ] || die "cannot resolve linux-image-cloud-amd64 and no kernel is cached in $CACHE"
    KDIR=${KDIR%/}
    KVER=${KDIR##*/vm-kernel-}
    say "kernel: $KVER (cached; apt could not resolve the metapackage)"
    return 0
  fi
  KVER=${pkg#linux-image-}
  KDIR=$CACHE/vm-kernel-$KVER
  if [ -f "$KDIR/.complete" ]; then
    say "kernel: $KVER (cached)"
    return 0
  fi
  say "kernel: downloading $pkg"
  local tmp
  tmp=$(mktemp -d "$CACHE/.vm-kernel-XXXXXX")
  chmod 755 "$tmp" # apt's _apt user downloads into it
  if ! (cd "$tmp" && apt_quiet download "$pkg"); then
    apt_quiet update || true
    (cd "$tmp" && apt_quiet download "$pkg") || { rm -rf "$tmp"; die "apt-get download $pkg failed (see $WORK/apt.log)"; }
  fi
  # Extract only: installing would run initramfs-tools and write to /boot.
  dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/deb"
  mkdir -p "$tmp/kernel/lib/modules"
  mv "$tmp/deb/boot/vmlinuz-$KVER" "$tmp/kernel/vmlinuz"
  if [ -d "$tmp/deb/lib/modules/$KVER" ]; then
    mv "$tmp/deb/lib/modules/$KVER" "$tmp/kernel/lib/modules/"
  else
    mv "$tmp/deb/usr/lib/modules/$KVER" "$tmp/kernel/lib/modules/"
  fi
  depmod -b "$tmp/kernel" "$KVER" # the .deb ships no modules.dep
  touch "$tmp/kernel/.complete"
  # A concurrent run may have won the race; its copy is as good as ours.
  mv -T "$tmp/kernel" "$KDIR" 2>/dev/null || true
  rm -rf "$tmp"
  [ -f "$KDIR/.complete" ] || die "kernel cache $KDIR is incomplete"
  say "kernel: $KVER cached in $KDIR"
}

# --------------------------------------------------------------- Go builds
build_binaries() {
  mkdir -p "$WORK/bin"
  say "go build ./cmd/open-local"
  # -s -w: no symbol table or DWARF (tracebacks keep names and lines); a
  # smaller initramfs boots faster under emulation.
  (cd "$REPO" && CGO_ENABLED=0 go build -ldflags='-s -w' -o "$WORK/bin/open-local" ./cmd/open-local)
  # OPEN_LOCAL_VM_TAGS are extra build tags, "vmcsi" by default: the CSI
  # suite (csi-sanity, lifecycle, restart, latency on real LVM). Set it empty
  # for the LVM, device, agent and binary checks alone (about 1 minute).
  local extra=${OPEN_LOCAL_VM_TAGS-vmcsi}
  tags="vmguest${extra:+,$extra}"
  say "go test -c -tags $tags ./e2e/vm/guest"
  (cd "$REPO" && CGO_ENABLED=0 go test -c -tags "$tags" -ldflags='-s -w' -o "$WORK/bin/guest.test" ./e2e/vm/guest)
}

# -------------------------------------------------------------- initramfs
# copy_into ROOT FILE: copies FILE to the same path under ROOT; for an ELF
# binary also every shared library ldd names.
copy_into() {
  local root=$1 file=$2 lib
  mkdir -p "$root$(dirname "$file")"
  cp -L "$file" "$root$file"
  if [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    for lib in $(ldd "$file" 2>/dev/null | grep -oE '/[^ ]+'); do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  fi
}

tool_path() {
  command -v "$1" 2>/dev/null || die "host tool '$1' not found (is its package installed?)"
}

# The layer that changes only with the host's packages and the kernel: busybox,
# LVM and filesystem tools with their libraries, kernel modules, lvm.conf.
build_base_layer() {
  local root=$1 t p d m ko rel
  rm -rf "$root"
  mkdir -p "$root"/{dev,proc,sys,run,tmp,mnt,etc/lvm,var/lib,root,usr/bin,usr/sbin,usr/local/bin}
  # Mirror the host's merged-/usr layout so library paths from ldd resolve.
  for d in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$d" ]; then
      t=$(readlink "/$d")
      case $t in /*) mkdir -p "$root$t" ;; *) mkdir -p "$root/$t" ;; esac
      ln -s "$t" "$root/$d"
    elif [ -d "/$d" ]; then
      mkdir -p "$root/$d"
    fi
  done
  for t in $GUEST_TOOLS; do
    copy_into "$root" "$(tool_path "$t")"
  done
  # lvm's command names (pvcreate, lvextend, ...) are symlinks to it.
  p=$(tool_path lvm)
  for t in $(find "$(dirname "$p")" -maxdepth 1 -lname lvm -printf '%f\n'); do
    ln -sf lvm "$root$(dirname "$p")/$t"
  done
  # kmod's applets; the kernel's request_module() and lvm exec /sbin/modprobe.
  p=$(tool_path kmod)
  for t in modprobe insmod rmmod lsmod modinfo depmod; do ln -sf "$p" "$root/usr/sbin/$t"; done
  # busybox fills in everything else (sh builtins, grep, tee, poweroff, ...).
  copy_into "$root" /bin/busybox
  for t in $(/bin/busybox --list-full); do
    [ -e "$root/$t" ] || [ -L "$root/$t" ] || ln -s /bin/busybox "$root/$t"
  done
  # Debian's static busybox sh runs its own applets before $PATH (its
  # fsfreeze, stat, mount...), and fsadm needs bash: make sh bash.
  ln -sf bash "$root/bin/sh"
  ln -s /proc/self/mounts "$root/etc/mtab"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  echo open-local-vm >"$root/etc/hostname"
  # No udev in the guest: libdevmapper creates the /dev nodes itself.
  cat >"$root/etc/lvm/lvm.conf" <<'EOF'
global { use_lvmpolld = 0 use_lvmlockd = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
devices { obtain_device_list_from_udev = 0 }
EOF
  # Kernel modules with their dependencies.
  for m in $GUEST_MODULES; do
    modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" 2>/dev/null || die "kernel $KVER has no module or built-in '$m'"
  done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r ko; do
    rel=${ko#"$KDIR"}
    mkdir -p "$root$(dirname "$rel")"
    cp "$ko" "$root$rel"
  done
  for p in modules.builtin modules.builtin.modinfo modules.order; do
    [ -f "$KDIR/lib/modules/$KVER/$p" ] && cp "$KDIR/lib/modules/$KVER/$p" "$root/lib/modules/$KVER/"
  done
  depmod -b "$root" "$KVER"
}

# The per-run layer: /init, its settings and the binaries under test. Later
# cpio archives in one initramfs overlay earlier ones.
build_payload_layer() {
  local root=$1 f
  rm -rf "$root"
  mkdir -p "$root/etc" "$root/usr/bin" "$root/usr/local/bin" "$root/opt/open-local-vm"
  install -m 0755 "$VM_DIR/init.sh" "$root/init"
  install -m 0755 "$WORK/bin/open-local" "$root/usr/bin/open-local"
  install -m 0755 "$WORK/bin/guest.test" "$root/opt/open-local-vm/guest.test"
  for f in $VM_EXTRA; do
    [ -f "$f" ] || die "OPEN_LOCAL_VM_EXTRA: no such file: $f"
    install -m 0755 "$f" "$root/usr/local/bin/$(basename "$f")"
  done
  {
    printf 'OL_VM_MODULES=%q\n' "$GUEST_MODULES"
    printf 'OL_VM_DISK_COUNT=%q\n' "$(echo "$GUEST_DISKS" | wc -w)"
    printf 'OL_VM_DEADLINE=%q\n' "$GUEST_DEADLINE"
    printf 'OL_VM_TEST_TIMEOUT=%q\n' "${GUEST_TEST_TIMEOUT}s"
    printf 'OL_VM_RUN=%q\n' "$VM_RUN"
  } >"$root/etc/open-local-vm.env"
}

cpio_of() { (cd "$1" && find . -print0 | cpio --null -o -H newc -R +0:+0 --quiet); }

build_initramfs() {
  # The base layer is rebuilt only when its inputs change: kernel, lists,
  # host package versions, this script.
  local fp
  # shellcheck disable=SC2086
  fp=$({
    echo "$KVER" "$GUEST_MODULES" "$GUEST_TOOLS"
    dpkg-query -W $PACKAGES libc6 2>/dev/null
    cat "${BASH_SOURCE[0]}"
  } | sha256sum | cut -c1-16)
  if [ ! -f "$WORK/base-$fp.cpio.gz" ]; then
    say "initramfs: building the tool and module layer"
    rm -f "$WORK"/base-*.cpio.gz
    build_base_layer "$WORK/image-base"
    cpio_of "$WORK/image-base" | gzip -1 >"$WORK/base-$fp.cpio.gz.tmp"
    # The kernel takes an uncompressed archive only at a 4-byte boundary;
    # zero padding between archives is skipped.
    truncate -s %4 "$WORK/base-$fp.cpio.gz.tmp"
    mv "$WORK/base-$fp.cpio.gz.tmp" "$WORK/base-$fp.cpio.gz"
  else
    say "initramfs: tool and module layer cached"
  fi
  build_payload_layer "$WORK/image-payload"
  # The payload stays uncompressed: the Go binaries barely shrink with gzip -1,
  # and inflating them in an emulated CPU costs more than loading them.
  cpio_of "$WORK/image-payload" >"$WORK/payload.cpio"
  cat "$WORK/base-$fp.cpio.gz" "$WORK/payload.cpio" >"$WORK/initrd.img"
  say "initramfs: $(du -m "$WORK/initrd.img" | cut -f1) MiB"
}

# -------------------------------------------------------------------- VM
QEMU_PID=
cleanup() {
  local rc=$?
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then kill "$QEMU_PID" 2>/dev/null || true; fi
  if [ -z "$VM_KEEP" ]; then
    rm -rf "$WORK/disks" "$WORK/image-base" "$WORK/image-payload" "$WORK/payload.cpio" "$WORK/initrd.img"
  fi
  exit "$rc"
}

boot_vm() {
  local spec serial size n=0
  local -a args
  rm -rf "$WORK/disks"
  mkdir -p "$WORK/disks"
  args=(-machine q35 -accel tcg -cpu max -m 2048 -smp 2
    -nographic -nodefaults -no-reboot -monitor none
    -serial "file:$WORK/console.log"
    -kernel "$KDIR/vmlinuz" -initrd "$WORK/initrd.img"
    -append "console=ttyS0 loglevel=4 edd=off panic=-1 hung_task_panic=1 oops=panic")
  for spec in $GUEST_DISKS; do
    serial=${spec%%:*}
    size=${spec#*:}
    truncate -s "$size" "$WORK/disks/$serial.img"
    args+=(-drive "if=none,id=disk$n,file=$WORK/disks/$serial.img,format=raw,cache=unsafe"
      -device "virtio-blk-pci,drive=disk$n,serial=$serial")
    n=$((n + 1))
  done
  printf '%q ' qemu-system-x86_64 "${args[@]}" >"$WORK/qemu.cmd"
  echo >>"$WORK/qemu.cmd"
  : >"$WORK/console.log"
  say "booting the VM (TCG, timeout ${VM_TIMEOUT}s); console: $WORK/console.log"
  timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 "${args[@]}" </dev/null >"$WORK/qemu.log" 2>&1 &
  QEMU_PID=$!
  set +e
  wait "$QEMU_PID"
  QEMU_RC=$?
  set -e
  QEMU_PID=
}

# ---------------------------------------------------------------- verdict
report() {
  local line verdict pass fail skip
  line=$(tr -d '\r' <"$WORK/console.log" | grep -a -o 'OPEN-LOCAL-VM-VERDICT: .*' | tail -n1 || true)
  verdict=$(echo "$line" | awk '{ print $2 }')
  pass=$(echo "$line" | grep -o 'pass=[0-9]*' | cut -d= -f2)
  fail=$(echo "$line" | grep -o 'fail=[0-9]*' | cut -d= -f2)
  skip=$(echo "$line" | grep -o 'skip=[0-9]*' | cut -d= -f2)
  if [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
    say "qemu did not power off within ${VM_TIMEOUT}s and was killed"
  elif [ "$QEMU_RC" != 0 ]; then
    say "qemu exited with status $QEMU_RC: $(tail -n 5 "$WORK/qemu.log" | tr '\n' ' ')"
  fi
  if [ "$verdict" = PASS ] && [ "${fail:-1}" = 0 ] && [ "${pass:-0}" -gt 0 ] && [ "$QEMU_RC" = 0 ]; then
    # The guest's own summary block and test outcomes.
    tr -d '\r' <"$WORK/console.log" | sed -n '/^open-local-vm summary:/,/^open-local-vm end of summary/p' >&2
    say "PASS in $((SECONDS - T0))s: $line"
    echo "vm-tier: $pass passed, 0 failed, ${skip:-0} skipped"
    return 0
  fi
  echo "----- last 200 lines of $WORK/console.log -----" >&2
  tr -d '\r' <"$WORK/console.log" | tail -n 200 >&2
  echo "----- end of console -----" >&2
  say "FAIL in $((SECONDS - T0))s: ${line:-no verdict on the console (guest crashed, hung or was killed)}"
  # A failed run never reports "0 failed", even when no single test failed
  # (no test matched, the guest died, the host timed out).
  [ "${fail:-0}" -gt 0 ] || fail=1
  echo "vm-tier: ${pass:-0} passed, $fail failed, ${skip:-0} skipped"
  return 1
}

main() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  install_packages
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing after install"
  prepare_kernel
  build_binaries
  build_initramfs
  boot_vm
  report
}

main "$@"
