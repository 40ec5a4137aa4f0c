package cluster

// WaitGone is exported to the external tests of this package.
var WaitGone = waitGone
