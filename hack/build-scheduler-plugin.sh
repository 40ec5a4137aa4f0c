#!/usr/bin/env bash
# build-scheduler-plugin.sh builds open-local-scheduler (kube-scheduler with
# the Open-Local framework plugin, module cmd/open-local-scheduler) into
#
#   ${OPEN_LOCAL_CACHE:-$HOME/.cache/open-local}/scheduler-<key>/open-local-scheduler
#
# <key> hashes the module's go.mod/go.sum, its Go files, every non-test Go
# file of this repository's packages it links, and the Go version, so an
# unchanged tree is not rebuilt. The binary is written under a temporary
# name and renamed when complete, so an interrupted build is never reused.
# Only the three newest builds are kept.
#
# Usage:
#   hack/build-scheduler-plugin.sh              build if needed; prints the binary's path last
#   hack/build-scheduler-plugin.sh --print-path print that path, build nothing
#
# Environment:
#   OPEN_LOCAL_CACHE   cache root (default $HOME/.cache/open-local)
#   GO                 go command (default go)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD="$ROOT/cmd/open-local-scheduler"
GO=${GO:-go}
CACHE_ROOT=${OPEN_LOCAL_CACHE:-$HOME/.cache/open-local}
export GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly"
# Bump when the build recipe below changes, so older builds stop matching.
RECIPE=2

mode=build
case "${1:-}" in
"") ;;
--print-path) mode=print ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "build-scheduler-plugin.sh: unknown argument $1 (want --print-path or nothing)" >&2
	exit 2
	;;
esac

cache_key() {
	cd "$MOD"
	{
		echo "recipe $RECIPE"
		"$GO" env GOVERSION GOOS GOARCH
		sha256sum go.mod go.sum ./*.go
		# This repository's packages the binary links (through the replace).
		"$GO" list -deps -f '{{if .Module}}{{if eq .Module.Path "github.com/open-local/open-local"}}{{.Dir}}{{end}}{{end}}' . |
			sed '/^$/d' | sort -u | while read -r dir; do
			find "$dir" -maxdepth 1 -name '*.go' ! -name '*_test.go' -print0 | sort -z | xargs -0r sha256sum |
				sed "s|  $ROOT/|  |"
		done
		sha256sum "$ROOT/go.mod" "$ROOT/go.sum" | sed "s|  $ROOT/|  |"
	} | sha256sum | cut -c1-16
}

key=$(cache_key)
out="$CACHE_ROOT/scheduler-$key"
bin="$out/open-local-scheduler"
if [[ $mode == print ]]; then
	echo "$bin"
	exit 0
fi
if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$out"
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# kube-scheduler reports its version (and derives its feature-gate emulation
# version) only through these ldflags; without them it claims v0.0.0-master.
k8s=$(cd "$MOD" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$k8s" | cut -d. -f2)
ldf="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldf+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor"
done
echo "building open-local-scheduler ($k8s) into $out" >&2
(cd "$MOD" && nice -n 10 "$GO" build -trimpath -ldflags "$ldf" -o "$tmp" .)
mv "$tmp" "$bin"
trap - EXIT
# Every source change makes a new key (about 80 MiB each): keep the three
# newest builds, enough to switch between a few branches without rebuilding.
# shellcheck disable=SC2012
ls -1dt "$CACHE_ROOT"/scheduler-*/ 2>/dev/null | tail -n +4 | while read -r old; do
	rm -rf "$old"
done
echo "$bin"
