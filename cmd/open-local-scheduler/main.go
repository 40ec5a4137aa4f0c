// Command open-local-scheduler is kube-scheduler with the Open-Local
// framework plugin compiled in. It takes kube-scheduler's flags; enable the
// plugin with a KubeSchedulerConfiguration profile such as
// deploy/scheduler/kube-scheduler-config-plugin.yaml.
package main

import (
	"os"

	"github.com/open-local/open-local/extender/plugin"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	cmd := app.NewSchedulerCommand(app.WithPlugin(plugin.Name, plugin.New))
	os.Exit(cli.Run(cmd))
}
