// Package plugin is Open-Local as a kube-scheduler framework plugin named
// "Open-Local": the same placement as the HTTP extender, but decided inside
// the scheduling cycle, so that a node's bytes are reserved for a pod before
// the next pod is placed.
//
// The committed state (NodeLocalStorage capacity, Open-Local PVs, claims
// with a selected node, CSI inline volumes of assigned pods, snapshots) is
// the extender's cache, fed by informers, so a restarted scheduler rebuilds
// it from the API. On top of it the plugin keeps the pods it reserved whose
// volumes the cache does not show yet (the volume binder has not written
// selected-node, or the pod is not bound): every Filter, Score and Reserve
// judges a node against the cache's charges plus those reservations. A
// reservation ends on Unreserve, or once the cache shows all of its claims.
package plugin
