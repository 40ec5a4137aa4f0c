// Package csi is Open-Local's CSI driver. Every node runs it for itself:
// Identity, Controller and Node services over a unix socket, beside
// external-provisioner and csi-snapshotter in node-deployment mode. The
// controller never asks another node to act, so there is no network endpoint
// and no polling: CreateVolume runs lvcreate on this node while the RPC waits.
//
// The driver keeps a capacity ledger (core.Ledger) of this node, reserves
// before it creates and releases on failure, and records what LVM tags cannot
// hold in small JSON files in its state directory. Every host action goes
// through hostexec.Host. See docs/design/provisioning.md.
package csi
