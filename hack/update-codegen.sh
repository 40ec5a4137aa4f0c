#!/usr/bin/env bash
# Regenerates everything derived from apis/: deepcopy functions and CRD
# manifests (controller-gen), and the typed clientset, listers and informers
# (k8s.io/code-generator). The generator versions are pinned in
# tools/codegen/go.mod so the project's own go.mod does not carry them.
#
# Usage: hack/update-codegen.sh
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=github.com/open-local/open-local
API_PKG=${MODULE}/apis/storage/v1alpha1
GEN_PKG=${MODULE}/pkg/generated
HEADER=${ROOT}/hack/boilerplate.go.txt

BIN=$(mktemp -d)
trap 'rm -rf "${BIN}"' EXIT

# Build the generators from the tools module; the Go build cache makes this
# quick after the first run.
(cd "${ROOT}/tools/codegen" && go build -o "${BIN}/" \
	sigs.k8s.io/controller-tools/cmd/controller-gen \
	k8s.io/code-generator/cmd/client-gen \
	k8s.io/code-generator/cmd/lister-gen \
	k8s.io/code-generator/cmd/informer-gen)

cd "${ROOT}"

echo "deepcopy (controller-gen)"
"${BIN}/controller-gen" object:headerFile="${HEADER}" paths=./apis/...

echo "CRDs (controller-gen) -> deploy/crds"
rm -f deploy/crds/csi.aliyun.com_*.yaml
"${BIN}/controller-gen" crd:crdVersions=v1 paths=./apis/... output:crd:artifacts:config=deploy/crds

echo "clientset, listers, informers (code-generator) -> pkg/generated"
rm -rf pkg/generated/clientset pkg/generated/listers pkg/generated/informers
"${BIN}/client-gen" \
	--go-header-file "${HEADER}" \
	--clientset-name versioned \
	--input-base "${MODULE}/apis" \
	--input storage/v1alpha1 \
	--output-dir pkg/generated/clientset \
	--output-pkg "${GEN_PKG}/clientset"
"${BIN}/lister-gen" \
	--go-header-file "${HEADER}" \
	--output-dir pkg/generated/listers \
	--output-pkg "${GEN_PKG}/listers" \
	"${API_PKG}"
"${BIN}/informer-gen" \
	--go-header-file "${HEADER}" \
	--versioned-clientset-package "${GEN_PKG}/clientset/versioned" \
	--listers-package "${GEN_PKG}/listers" \
	--output-dir pkg/generated/informers \
	--output-pkg "${GEN_PKG}/informers" \
	"${API_PKG}"

gofmt -l -w apis pkg/generated >/dev/null
