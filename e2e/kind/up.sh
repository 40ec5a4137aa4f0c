#!/usr/bin/env bash
# Creates a kind cluster, gives every worker a loop device as /dev/loop-ol
# (the chart's init config makes it a VG), builds and loads the image, and
# installs the chart. Needs Docker, kind, kubectl, helm and root.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER=${CLUSTER:-open-local}
NODES=${NODES:-2}
DISK_SIZE=${DISK_SIZE:-10G}
MODE=${MODE:-capacity}
WORK=${WORK:-/var/tmp/open-local-kind}
command -v docker >/dev/null || { echo "docker is needed (kind runs nodes as containers)" >&2; exit 1; }
mkdir -p "$WORK"

cfg=$WORK/kind.yaml
{
	echo "kind: Cluster"
	echo "apiVersion: kind.x-k8s.io/v1alpha4"
	echo "nodes:"
	echo "  - role: control-plane"
	for i in $(seq 1 "$NODES"); do
		echo "  - role: worker"
		echo "    extraMounts: [{hostPath: /dev, containerPath: /dev}]"
	done
} >"$cfg"
kind create cluster --name "$CLUSTER" --config "$cfg"

# One loop device per worker, exposed under a stable name.
for node in $(kind get nodes --name "$CLUSTER" | grep worker); do
	img=$WORK/$node.img
	truncate -s "$DISK_SIZE" "$img"
	dev=$(losetup --find --show "$img")
	echo "$node: $dev"
	docker exec "$node" ln -sf "$dev" /dev/loop-ol
done

docker build -t openlocal/open-local:kind .
kind load docker-image openlocal/open-local:kind --name "$CLUSTER"
helm upgrade --install open-local deploy/helm/open-local --namespace kube-system \
	--set image.tag=kind --set scheduling.mode="$MODE" \
	--set 'initConfig.globalConfig.resourceToBeInited.vgs[0].name=open-local-pool-0' \
	--set 'initConfig.globalConfig.resourceToBeInited.vgs[0].devices[0]=/dev/loop-ol' \
	--set snapshot.volumeSnapshotClass.create=false
kubectl -n kube-system rollout status daemonset/open-local-node --timeout=300s
