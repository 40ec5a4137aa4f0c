#!/usr/bin/env bash
# build-k8s.sh builds the binaries of the control-plane test tier (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and the CSI sidecars)
# from the tools modules under tools/ into a cache directory:
#
#   ${OPEN_LOCAL_CACHE:-$HOME/.cache/open-local}/k8s-<key>/bin/
#
# <key> hashes the tools modules' go.mod/go.sum, the Go version and the build
# recipe below, so a machine that already built this exact set skips the build.
# A build counts as done only once k8s-<key>/complete exists; it is written
# after every binary is in place, so an interrupted build is never reused.
# k8s-current (a symlink next to the key directories) points at the last
# complete build.
#
# Usage:
#   hack/build-k8s.sh              build if needed; the last line printed is the bin dir
#   hack/build-k8s.sh --print-dir  print the bin dir for the current sources, build nothing
#   hack/build-k8s.sh --check      exit 0 if that dir holds a complete build, 1 otherwise
#
# Environment:
#   OPEN_LOCAL_CACHE   cache root (default $HOME/.cache/open-local)
#   GO                 go command (default go)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
CACHE_ROOT=${OPEN_LOCAL_CACHE:-$HOME/.cache/open-local}
# Bump when the way binaries are built changes (flags, renames, lists), so
# older cache directories stop matching.
RECIPE=3
# The tools modules, in build order. tools/k8s comes first: it compiles the
# bulk of the shared dependencies.
MODULES=(tools/k8s tools/csi-provisioner)
# Every binary a complete build holds.
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler
	csi-provisioner csi-resizer csi-snapshotter snapshot-controller)

# The tools modules are built on their own, never as part of a workspace.
export GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly"

mode=build
case "${1:-}" in
"") ;;
--print-dir) mode=print ;;
--check) mode=check ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "build-k8s.sh: unknown argument $1 (want --print-dir, --check or nothing)" >&2
	exit 2
	;;
esac

cache_key() {
	local m
	{
		echo "recipe $RECIPE"
		(cd "$ROOT/tools/k8s" && "$GO" env GOVERSION GOOS GOARCH)
		for m in "${MODULES[@]}"; do
			echo "module $m"
			cat "$ROOT/$m/go.mod" "$ROOT/$m/go.sum"
		done
	} | sha256sum | cut -c1-16
}

KEY=$(cache_key)
DIR=$CACHE_ROOT/k8s-$KEY
BIN=$DIR/bin
STAMP=$DIR/complete

case $mode in
print)
	echo "$BIN"
	exit 0
	;;
check)
	[ -f "$STAMP" ] && exit 0
	exit 1
	;;
esac

mkdir -p "$DIR"
# Two concurrent test runs must not build into the same directory.
exec 9>"$DIR/lock"
if ! flock -n 9; then
	echo "build-k8s.sh: another build of $DIR is running; waiting for it"
	flock 9
fi

link_current() {
	ln -sfn "k8s-$KEY" "$CACHE_ROOT/k8s-current.tmp.$$"
	mv -T "$CACHE_ROOT/k8s-current.tmp.$$" "$CACHE_ROOT/k8s-current"
}

if [ -f "$STAMP" ]; then
	echo "control-plane binaries are up to date (k8s-$KEY)"
	link_current
	echo "$BIN"
	exit 0
fi

now() { date +%s; }
modversion() { (cd "$ROOT/$1" && "$GO" list -m -f '{{.Version}}' "$2"); }

# Small static binaries: no cgo, no symbol tables, no local paths.
export CGO_ENABLED=0
gobuild() { # gobuild <module dir> <output dir> <ldflags> <packages...>
	local mod=$1 out=$2 ldf=$3
	shift 3
	(cd "$ROOT/$mod" && nice -n 10 "$GO" build -trimpath -ldflags "-s -w $ldf" -o "$out/" "$@")
}

TMP=$DIR/bin.partial
rm -rf "$TMP" "$BIN"
mkdir -p "$TMP"

t_all=$(now)
steps=()
step() { # step <label> <module dir> <ldflags> <packages...>
	local label=$1 t
	shift
	t=$(now)
	echo "building $label ..."
	gobuild "$1" "$TMP" "$2" "${@:3}"
	steps+=("$label: $(($(now) - t))s")
	echo "built $label in $(($(now) - t))s"
}

# kube-* report the version they were built from only through these ldflags;
# without them they claim v0.0.0-master and clients reject the skew.
K8S=$(modversion tools/k8s k8s.io/kubernetes)
K8S_MINOR=$(echo "$K8S" | cut -d. -f2)
K8S_LDF=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	K8S_LDF+=" -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR"
done
# One go build for all four keeps both cores busy on the shared packages.
step "etcd kube-apiserver kube-controller-manager kube-scheduler ($K8S)" tools/k8s "$K8S_LDF" \
	go.etcd.io/etcd/server/v3 \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler
# The etcd main package is the module root, so go build names it "server".
mv "$TMP/server" "$TMP/etcd"

RESIZER=$(modversion tools/k8s github.com/kubernetes-csi/external-resizer/v2)
step "csi-resizer ($RESIZER)" tools/k8s "-X main.version=$RESIZER" \
	github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer

SNAP=$(modversion tools/k8s github.com/kubernetes-csi/external-snapshotter/v8)
step "csi-snapshotter snapshot-controller ($SNAP)" tools/k8s "-X main.version=$SNAP" \
	github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter \
	github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller

PROV=$(modversion tools/csi-provisioner github.com/kubernetes-csi/external-provisioner/v6)
step "csi-provisioner ($PROV)" tools/csi-provisioner "-X main.version=$PROV" \
	github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner

for b in "${BINARIES[@]}"; do
	if [ ! -x "$TMP/$b" ]; then
		echo "build-k8s.sh: $b missing after the build" >&2
		exit 1
	fi
done

mv "$TMP" "$BIN"
total=$(($(now) - t_all))
{
	echo "key $KEY"
	echo "go $("$GO" env GOVERSION)"
	echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in ${total}s"
	printf '%s\n' "${steps[@]}"
	(cd "$BIN" && ls -l "${BINARIES[@]}" | awk '{printf "%s %d MiB\n", $NF, $5/1048576}')
} >"$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
link_current

echo "built all control-plane binaries in ${total}s:"
sed -n '4,$p' "$STAMP" | sed 's/^/  /'
echo "$BIN"
