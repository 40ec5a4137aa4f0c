#!/usr/bin/env bash
# Runs every test tier of Open-Local, in this order:
#   lint (gofmt, go vet, staticcheck) · generated code is current · fuzz targets
#   (short runs) · VM tier (real LVM, mounts, io.max in QEMU) · control-plane
#   binaries (built once, cached) · the Helm chart (lint, template) · go test ./... (unit, property, csi-sanity,
#   real LVM on loop devices, control-plane tier) · benchmarks as a smoke run.
# Every tier runs even when an earlier one failed; the exit status is non-zero
# if any failed. The go test run comes last so its summary closes the output.
#
# Knobs: FUZZTIME (default 5s per target), SKIP_VM=1, SKIP_K8S=1, RAPID_CHECKS (1000).
set -uo pipefail
cd "$(dirname "$0")/.."

# One build configuration for every tier. The release binaries, the VM
# guest's binaries and the e2e tiers' builds are static (no cgo); with the
# tests and linters built the same way, the packages lint compiles serve all
# the later tiers. Otherwise a fresh machine compiled the whole dependency
# tree twice, once more inside the VM tier's budget (over three minutes on two
# cores).
export CGO_ENABLED=${CGO_ENABLED:-0}

FUZZTIME=${FUZZTIME:-5s}
RAPID_CHECKS=${RAPID_CHECKS:-1000}
failed=()

tier() {
	local name=$1
	shift
	local start=$SECONDS
	echo "=== tier: $name"
	if "$@"; then
		echo "=== tier: $name ok ($((SECONDS - start)) s)"
	else
		echo "=== tier: $name FAILED ($((SECONDS - start)) s)"
		failed+=("$name")
	fi
}

lint() {
	local bad
	bad=$(gofmt -l $(git ls-files '*.go' | grep -v '^pkg/generated/') 2>&1)
	if [ -n "$bad" ]; then
		echo "gofmt needed:"
		echo "$bad"
		return 1
	fi
	go vet ./... || return 1
	# The VM guest's tests build only with their tags.
	go vet -tags vmguest,vmcsi ./e2e/vm/guest/ || return 1
	"$(go env GOPATH)/bin/staticcheck" $(go list ./... | grep -v /pkg/generated/) || return 1
	"$(go env GOPATH)/bin/staticcheck" -tags vmguest,vmcsi ./e2e/vm/guest/ || return 1
}

codegen() {
	if [ -x hack/verify-codegen.sh ]; then
		hack/verify-codegen.sh
	else
		echo "no generated code yet"
	fi
}

# fuzz runs each Fuzz target of every package for FUZZTIME.
fuzz() {
	local rc=0 pkg target
	while read -r pkg; do
		for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
			echo "--- fuzz $pkg $target"
			go test "$pkg" -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" >/tmp/open-local-fuzz.log 2>&1 ||
				{ cat /tmp/open-local-fuzz.log; rc=1; }
		done
	done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u | sed 's|^\./|./|')
	return $rc
}

vm() {
	if [ "${SKIP_VM:-0}" = 1 ]; then echo "skipped: SKIP_VM=1"; return 0; fi
	if [ ! -x e2e/vm/run.sh ]; then echo "no VM tier"; return 0; fi
	e2e/vm/run.sh
}

k8s() {
	if [ "${SKIP_K8S:-0}" = 1 ]; then echo "skipped: SKIP_K8S=1"; return 0; fi
	if [ ! -x hack/build-k8s.sh ]; then echo "no control-plane tier"; return 0; fi
	hack/build-k8s.sh || return 1
	# open-local-scheduler (kube-scheduler with the plugin) for e2e/system's
	# plugin mode; cached by the hash of its sources.
	bash hack/build-scheduler-plugin.sh
}

# helm builds helm once (cached) and lints and renders the chart; e2e/helm
# then dry-runs the rendered objects against the control plane.
helm_chart() {
	HELM=$(bash hack/build-helm.sh) || return 1
	HELM=$HELM bash hack/helm-check.sh
}

bench_smoke() {
	[ -d bench ] || return 0
	go test ./bench/... -run='^$' -bench=. -benchtime=1x
}

rapid_packages() {
	go list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... |
		awk '/pgregory.net\/rapid/ {print $1}'
}

unit() {
	export OPEN_LOCAL_REQUIRE_LVM=${OPEN_LOCAL_REQUIRE_LVM:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}
	[ "${SKIP_K8S:-0}" = 1 ] || export OPEN_LOCAL_REQUIRE_CLUSTER=${OPEN_LOCAL_REQUIRE_CLUSTER:-1}
	export OPEN_LOCAL_VERIFY_CODEGEN=0 # verified by its own tier
	local rp others rc=0
	# Packages with rapid property tests run with RAPID_CHECKS cases per
	# property; the rest as they are. Together they are every package once.
	rp=$(rapid_packages)
	others=$(go list ./... | grep -vxF -f <(printf '%s\n' $rp))
	echo "--- go test: packages without property tests"
	go test -count=1 -timeout 30m $others || rc=1
	if [ -n "$rp" ]; then
		echo "--- go test: packages with property tests, $RAPID_CHECKS cases per property"
		go test -count=1 -timeout 30m $rp -rapid.checks="$RAPID_CHECKS" || rc=1
	fi
	return $rc
}

tier lint lint
tier codegen codegen
tier fuzz fuzz
tier bench bench_smoke
tier vm vm
tier k8s-binaries k8s
tier helm helm_chart
tier go-test unit

if [ ${#failed[@]} -gt 0 ]; then
	echo "FAILED tiers: ${failed[*]}"
	exit 1
fi
echo "all tiers passed"
