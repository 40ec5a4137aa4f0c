#!/usr/bin/env bash
# Fails when the committed generated code or CRDs differ from what
# hack/update-codegen.sh produces. It regenerates in a temporary copy of the
# tree, so the work tree is never touched.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GENERATED=(apis pkg/generated deploy/crds)

TMP=$(mktemp -d)
trap 'rm -rf "${TMP}"' EXIT

tar -C "${ROOT}" --exclude=./.git -cf - . | tar -C "${TMP}" -xf -
"${TMP}/hack/update-codegen.sh" >/dev/null

status=0
for d in "${GENERATED[@]}"; do
	if ! diff -ruN "${ROOT}/${d}" "${TMP}/${d}"; then
		status=1
	fi
done
if [[ ${status} -ne 0 ]]; then
	echo "generated files are out of date: run hack/update-codegen.sh" >&2
	exit 1
fi
echo "generated files are up to date"
