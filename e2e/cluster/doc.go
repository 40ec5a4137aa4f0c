// Package cluster runs a real Kubernetes control plane (etcd, kube-apiserver
// and optionally kube-controller-manager and kube-scheduler) as local
// processes for tests. Everything listens on 127.0.0.1 only, on ports chosen
// at random, with state in a temporary directory; there is no kubelet and no
// container runtime, so Nodes are plain API objects (see RegisterNode).
//
// The binaries come from hack/build-k8s.sh, which builds them once per
// machine into a cache directory keyed by the tools modules and Go version.
// A test that needs the control plane calls Start (one control plane per
// test) or Shared (one per test binary, with Main in TestMain):
//
//	func TestMain(m *testing.M) {
//		cluster.Main(m, cluster.Options{ControllerManager: true, Scheduler: true})
//	}
//
//	func TestSomething(t *testing.T) {
//		c := cluster.Shared(t)
//		client := c.Client()
//		...
//	}
//
// When the binaries are missing the test is skipped with the reason
// "control-plane binaries not built; run hack/build-k8s.sh", unless
// OPEN_LOCAL_REQUIRE_CLUSTER=1, where it fails instead. Tests are also skipped
// under -short unless OPEN_LOCAL_REQUIRE_CLUSTER=1.
//
// Environment:
//
//	OPEN_LOCAL_K8S_BIN          directory holding the binaries; skips the cache lookup
//	OPEN_LOCAL_CACHE            cache root used by hack/build-k8s.sh (default $HOME/.cache/open-local)
//	OPEN_LOCAL_REQUIRE_CLUSTER  "1": missing binaries fail the test instead of skipping it
//
// Security: the apiserver runs with the Node and RBAC authorizers and a
// static token file. The admin identity is in system:masters; the scheduler
// and controller-manager use their own bootstrap identities; code under test
// should run as a ServiceAccount (ServiceAccountConfig) so that missing RBAC
// rules show up as test failures.
//
// Nodes without a kubelet: nothing renews a Node's status or Lease, so the
// node lifecycle controller would mark every Node Unknown and taint it
// unreachable after its grace period. The controller-manager therefore runs
// with --node-monitor-grace-period and --node-startup-grace-period of 24h
// (and --node-monitor-period=1s): the controller still removes the not-ready
// taint once a Node reports Ready, as on a real cluster, but never times a
// Node out during a test. A test that wants the controller out of the way
// entirely passes Controllers: []string{"*", "-node-lifecycle-controller"};
// RegisterNode then removes the not-ready taint itself. Without the controller-manager nothing would remove that taint, nor
// create the "default" ServiceAccount that the ServiceAccount admission plugin
// requires of pods, so the apiserver then runs with the TaintNodesByCondition
// and ServiceAccount admission plugins disabled.
package cluster
