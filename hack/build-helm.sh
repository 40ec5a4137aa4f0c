#!/usr/bin/env bash
# Builds helm from the version pinned in tools/helm/go.mod, once: the binary
# is cached in $OPEN_LOCAL_CACHE/helm-<version>/helm (default cache root
# $HOME/.cache/open-local) and the build is skipped when it is there. Prints
# the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${OPEN_LOCAL_CACHE:-${HOME:-/root}/.cache/open-local}
VERSION=$(grep -oE 'helm.sh/helm/v4 v[0-9][0-9.]*' tools/helm/go.mod | cut -d' ' -f2)
[ -n "$VERSION" ] || { echo "tools/helm/go.mod pins no helm.sh/helm/v4" >&2; exit 1; }
OUT=$CACHE/helm-$VERSION/helm
if [ ! -x "$OUT" ]; then
	echo "building helm $VERSION (once; cached in $(dirname "$OUT"))" >&2
	mkdir -p "$(dirname "$OUT")"
	(cd tools/helm && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
		-ldflags "-X helm.sh/helm/v4/internal/version.version=$VERSION" \
		-o "$OUT.tmp" helm.sh/helm/v4/cmd/helm)
	mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
