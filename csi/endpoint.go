package csi

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// Endpoint is where the driver listens: a unix socket (what kubelet and the
// sidecars use) or a TCP port on a loopback address (for local tools). The
// driver never listens on a routable address: whoever reaches the socket can
// create and delete volumes, and CSI has no authentication.
type Endpoint struct {
	Network string // "unix" or "tcp"
	Address string // socket path or host:port
}

func (e Endpoint) String() string {
	if e.Network == "unix" {
		return "unix://" + e.Address
	}
	return "tcp://" + e.Address
}

// ParseEndpoint accepts unix:///path/to/csi.sock, unix:/path, and
// tcp://127.0.0.1:port, tcp://[::1]:port or tcp://localhost:port.
func ParseEndpoint(s string) (Endpoint, error) {
	switch {
	case strings.HasPrefix(s, "unix://"):
		p := strings.TrimPrefix(s, "unix://")
		if !strings.HasPrefix(p, "/") {
			return Endpoint{}, fmt.Errorf("endpoint %q: the socket path must be absolute (unix:///path/to/csi.sock)", s)
		}
		return Endpoint{Network: "unix", Address: p}, nil
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(s, "unix:")
		if !strings.HasPrefix(p, "/") {
			return Endpoint{}, fmt.Errorf("endpoint %q: the socket path must be absolute (unix:///path/to/csi.sock)", s)
		}
		return Endpoint{Network: "unix", Address: p}, nil
	case strings.HasPrefix(s, "tcp://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return Endpoint{}, fmt.Errorf("endpoint %q: want tcp://127.0.0.1:<port>", s)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || port == "" {
			return Endpoint{}, fmt.Errorf("endpoint %q: want tcp://127.0.0.1:<port>", s)
		}
		if host == "localhost" {
			host = "127.0.0.1"
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return Endpoint{}, fmt.Errorf("endpoint %q: only loopback addresses are allowed (the CSI API has no authentication); use a unix socket or tcp://127.0.0.1:<port>", s)
		}
		return Endpoint{Network: "tcp", Address: net.JoinHostPort(ip.String(), port)}, nil
	}
	return Endpoint{}, fmt.Errorf("endpoint %q: want unix:///path/to/csi.sock or tcp://127.0.0.1:<port>", s)
}

// Listen opens the endpoint. A stale socket left by a previous run of the
// plugin is removed first; anything else at that path is an error.
func (e Endpoint) Listen() (net.Listener, error) {
	if e.Network == "unix" {
		// The socket is the plugin's own file in its own mount namespace,
		// not host storage, so it is handled here rather than through the Host.
		if fi, err := os.Lstat(e.Address); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("endpoint %s: %s exists and is not a socket", e, e.Address)
			}
			if err := os.Remove(e.Address); err != nil {
				return nil, fmt.Errorf("endpoint %s: removing the stale socket: %w", e, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("endpoint %s: %w", e, err)
		}
	}
	l, err := net.Listen(e.Network, e.Address)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", e, err)
	}
	return l, nil
}
