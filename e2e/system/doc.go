// Package system runs the whole of Open-Local on a real control plane
// (e2e/cluster): etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler (with the extender, or open-local-scheduler with the
// framework plugin), the CSI sidecars (external-provisioner, csi-snapshotter,
// external-resizer, snapshot-controller), the Open-Local controller and
// extender, and one "open-local simnode" (agent and CSI driver on one
// simulated host) per Node object. docs/design/e2e.md describes the layout,
// what stands in for kubelet, and each scenario.
//
// The tests are skipped when the control-plane binaries (hack/build-k8s.sh)
// or open-local-scheduler (hack/build-scheduler-plugin.sh) are missing,
// unless OPEN_LOCAL_REQUIRE_CLUSTER=1, and in -short mode. The open-local
// binary is built once per test run. Every process's log is kept under the
// test's temporary directory; a failed scenario prints the tails of the logs
// written while it ran. OPEN_LOCAL_E2E_ARTEFACTS=<dir> copies the logs and
// configuration of every run there, to keep them after the test.
//
//	go test ./e2e/system/ -count=1 -v -timeout 30m
package system
