// Command open-local is Open-Local's single binary: each component is a
// subcommand (agent, controller, scheduler, csi) next to the tools for admins
// (sim, demo, status). Each subcommand lives in its own file and adds itself to
// the root command with register.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

var subcommands []func() *cobra.Command

// register adds a subcommand constructor; called from init in each file.
func register(f func() *cobra.Command) { subcommands = append(subcommands, f) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "open-local",
		Short:         "Kubernetes local-disk management: LVM, whole devices and mount points as easy as central storage",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	// klog's flags (-v, --logtostderr, ...) on every subcommand.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	root.PersistentFlags().AddGoFlagSet(klogFlags)
	for _, f := range subcommands {
		root.AddCommand(f())
	}
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	if isKubectlPlugin(os.Args[0]) {
		root = newKubectlPluginRoot()
	}
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "open-local:", err)
		stop()
		os.Exit(1)
	}
}
