// Package components runs Open-Local's control-plane components (controller,
// agents on simulated hosts) against a real kube-apiserver from e2e/cluster,
// each with its own ServiceAccount and the RBAC manifests from deploy/, so a
// rule missing from deploy/ fails a test here.
package components
