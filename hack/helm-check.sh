#!/usr/bin/env bash
# Checks the Helm chart: its copies of the CRDs and RBAC manifests equal
# deploy/ (one source of truth), helm lint and helm template pass for every
# scheduling mode with the optional parts on, and bad values are refused.
set -euo pipefail
cd "$(dirname "$0")/.."
HELM=${HELM:-$(bash hack/build-helm.sh)}
CHART=deploy/helm/open-local
rc=0

same() {
	if ! cmp -s "$1" "$2"; then
		echo "$2 differs from $1: copy it (cp $1 $2)"
		rc=1
	fi
}
for f in deploy/crds/*.yaml; do same "$f" "$CHART/crds/$(basename "$f")"; done
same deploy/rbac/agent.yaml "$CHART/files/rbac/agent.yaml"
same deploy/rbac/controller.yaml "$CHART/files/rbac/controller.yaml"
same deploy/scheduler/rbac.yaml "$CHART/files/rbac/extender.yaml"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for mode in extender plugin capacity; do
	set -- --set scheduling.mode=$mode --set metrics.podMonitor.enabled=true --set metrics.grafanaDashboard.enabled=true
	"$HELM" lint --strict "$CHART" "$@" >"$out/lint-$mode.log" 2>&1 || { cat "$out/lint-$mode.log"; rc=1; }
	"$HELM" template open-local "$CHART" --namespace kube-system "$@" >"$out/$mode.yaml" 2>"$out/template-$mode.log" ||
		{ cat "$out/template-$mode.log"; rc=1; }
	echo "mode $mode: $(grep -c '^kind:' "$out/$mode.yaml") objects"
done
if "$HELM" template open-local "$CHART" --set scheduling.mode=bogus >/dev/null 2>"$out/bad.log"; then
	echo "scheduling.mode=bogus was accepted"
	rc=1
elif ! grep -q 'accepted: extender, plugin, capacity' "$out/bad.log"; then
	echo "scheduling.mode=bogus: unclear error:"; cat "$out/bad.log"; rc=1
fi
exit $rc
