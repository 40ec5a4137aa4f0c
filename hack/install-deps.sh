#!/usr/bin/env bash
# Installs what the test tiers need on a Debian machine: lvm2 and filesystem
# tools for the real-LVM tier, QEMU and friends for the VM tier (e2e/vm/run.sh
# installs its own as well), and staticcheck. Idempotent: a warm machine skips
# what it has.
set -euo pipefail

need=()
for pair in lvm:lvm2 mkfs.xfs:xfsprogs mkfs.ext4:e2fsprogs losetup:mount wipefs:util-linux \
	qemu-system-x86_64:qemu-system-x86 cpio:cpio depmod:kmod busybox:busybox-static; do
	bin=${pair%%:*} pkg=${pair#*:}
	command -v "$bin" >/dev/null 2>&1 || [ -x "/sbin/$bin" ] || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing ${need[*]} and not root; the tiers that need them will skip" >&2
	else
		echo "install-deps: apt-get install ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
fi

# staticcheck, cached by version under the Go bin dir.
STATICCHECK_VERSION=v0.8.2
gobin=$(go env GOPATH)/bin
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
	echo "install-deps: staticcheck $STATICCHECK_VERSION"
	go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
