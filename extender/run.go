package extender

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// DefaultListen is open-local's extender port on every interface; binding
// to the pod IP (--listen=$(POD_IP):23000) is preferable.
const DefaultListen = ":23000"

// Options configure Run.
type Options struct {
	// Kubeconfig is a kubeconfig path; "" uses the in-cluster config.
	Kubeconfig string
	// Listen is the HTTP address (host:port).
	Listen   string
	Strategy core.Strategy
	// StuckPodDelay: see Unsticker (0 = DefaultStuckPodDelay).
	StuckPodDelay   time.Duration
	MaxRequestBytes int64
	Version         string
}

// Run serves the extender until ctx ends. The HTTP server starts before the
// informers have synced, answering /healthz at once and /readyz, filter and
// prioritize with 503 until the cache is complete.
func Run(ctx context.Context, opt Options) error {
	logger := klog.FromContext(ctx)
	cfg, err := clientcmd.BuildConfigFromFlags("", opt.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the Kubernetes client configuration: %w", err)
	}
	cfg.UserAgent = "open-local-scheduler/" + opt.Version
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	local, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "open-local-scheduler"})

	unstick := NewUnsticker(kube, recorder, opt.StuckPodDelay, nil)
	c := cache.New(cache.Options{Strategy: opt.Strategy, OnUnplaced: unstick.Enqueue})
	unstick.SetCache(c)
	srv := NewServer(c, NewMetrics(c), Config{MaxRequestBytes: opt.MaxRequestBytes, Version: opt.Version})

	listen := opt.Listen
	if listen == "" {
		listen = DefaultListen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	logger.Info("Scheduler extender listening", "address", ln.Addr().String(), "strategy", opt.Strategy.String(), "version", opt.Version)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := c.Run(runCtx, cache.Clients{Kube: kube, Local: local, Dynamic: dyn}); err != nil {
		_ = hs.Close()
		if ctx.Err() != nil {
			return nil // asked to stop while syncing
		}
		return err
	}
	go unstick.Run(runCtx)

	select {
	case err := <-serveErr:
		return fmt.Errorf("HTTP server: %w", err)
	case <-ctx.Done():
	}
	shutdown, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := hs.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
