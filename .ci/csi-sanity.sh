#!/usr/bin/env bash
# csi-sanity against Open-Local's CSI driver, twice:
#   1. in process: csi-test's sanity package against the driver on the
#      simulated host over a unix socket (csi/sanity_test.go);
#   2. stand-alone: the csi-sanity binary against the built open-local binary
#      (`open-local csi --host sim`), stopped with SIGTERM (e2e/sanity).
# Both print csi-sanity's summary (passed | failed | pending | skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -v -run '^TestSanity$' ./csi/ | grep -E 'Ran [0-9]+ of|Passed|^(--- |ok|FAIL)'
go test -count=1 -v -run '^TestStandaloneCSISanity$' ./e2e/sanity/ | grep -E 'csi-sanity:|^(--- |ok|FAIL)'
