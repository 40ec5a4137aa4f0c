#!/usr/bin/env bash
# Deletes the kind cluster and detaches its loop devices.
set -euo pipefail
CLUSTER=${CLUSTER:-open-local}
WORK=${WORK:-/var/tmp/open-local-kind}
kind delete cluster --name "$CLUSTER" || true
for img in "$WORK"/*.img; do
	[ -e "$img" ] || continue
	for dev in $(losetup -j "$img" | cut -d: -f1); do losetup -d "$dev"; done
	rm -f "$img"
done
