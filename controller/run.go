package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
	olinformers "github.com/open-local/open-local/pkg/generated/informers/externalversions"
)

// ErrLostLeadership is returned by Run when another replica took the lease;
// the process should exit so that it restarts as a candidate.
var ErrLostLeadership = errors.New("lost leadership")

// Scheme knows the Kubernetes types and Open-Local's, so that events can
// refer to NodeLocalStorages and NodeLocalStorageInitConfigs.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// Run runs the controller until ctx ends: informers, event recording and,
// when enabled, leader election (only the leader watches and writes).
func Run(ctx context.Context, opts Options, kubeClient kubernetes.Interface, openLocalClient versioned.Interface) error {
	if err := opts.complete(); err != nil {
		return fmt.Errorf("controller options: %w", err)
	}
	logger := klog.FromContext(ctx).WithName("controller")
	ctx = klog.NewContext(ctx, logger)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(4)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kubeClient.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(Scheme(), corev1.EventSource{Component: eventComponentSource})

	run := func(ctx context.Context) error {
		kubeInformers := informers.NewSharedInformerFactory(kubeClient, opts.ResyncPeriod)
		olInformers := olinformers.NewSharedInformerFactory(openLocalClient, opts.ResyncPeriod)
		c, err := NewController(opts, openLocalClient, kubeInformers, olInformers, recorder)
		if err != nil {
			return err
		}
		c.metrics.leader.Set(1)
		defer c.metrics.leader.Set(0)
		kubeInformers.Start(ctx.Done())
		olInformers.Start(ctx.Done())
		defer kubeInformers.Shutdown()
		defer olInformers.Shutdown()
		return c.Run(ctx)
	}
	if !opts.LeaderElection.Enabled {
		return run(ctx)
	}

	le := opts.LeaderElection
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.LeaseName},
		Client:     kubeClient.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity, EventRecorder: recorder},
	}
	electionCtx, stopElection := context.WithCancel(ctx)
	defer stopElection()
	// The elector calls OnStartedLeading in a goroutine of its own; handing
	// the leading context over keeps the work, and its error, on this one.
	leading := make(chan context.Context, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            le.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { leading <- ctx },
			OnStoppedLeading: func() { logger.Info("Stopped leading", "identity", le.Identity) },
			OnNewLeader: func(identity string) {
				if identity != le.Identity {
					logger.Info("Another replica leads", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	electionDone := make(chan struct{})
	go func() {
		defer close(electionDone)
		elector.Run(electionCtx)
	}()

	select {
	case leaderCtx := <-leading:
		logger.Info("Started leading", "lease", le.Namespace+"/"+le.LeaseName, "identity", le.Identity)
		// leaderCtx ends when the lease is lost or ctx ends.
		err := run(leaderCtx)
		stopElection() // releases the lease
		<-electionDone
		if err != nil {
			return err
		}
	case <-electionDone:
		// The election ended without this replica working: ctx ended while
		// it waited, or it lost the lease at once.
	}
	if ctx.Err() != nil {
		return nil
	}
	return ErrLostLeadership
}
