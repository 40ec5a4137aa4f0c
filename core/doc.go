// Package core is Open-Local's storage model: block devices, volume groups,
// logical volumes and mount points of a node; the listConfig filter that turns
// what a node has into what Open-Local may allocate; a capacity ledger that
// never over-commits; and placement of a pod's volumes on nodes.
//
// Everything here is a pure, deterministic state machine. The package does no
// I/O, reads no clock and starts no goroutine, so every component (agent, CSI
// driver, scheduler extender, framework plugin, simulator) computes the same
// answer from the same state. core/purity_test.go enforces this.
package core
