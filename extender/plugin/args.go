package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/open-local/open-local/core"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Args are the plugin's pluginConfig args in a KubeSchedulerConfiguration.
// Both open-local's historical field names (schedulerStrategy,
// kubeConfigPath) and the short ones (strategy, kubeconfig) are accepted.
type Args struct {
	// Strategy is binpack (default) or spread.
	Strategy          string `json:"strategy,omitempty"`
	SchedulerStrategy string `json:"schedulerStrategy,omitempty"`
	// KubeConfig is a kubeconfig file for the plugin's own clients; empty
	// uses the scheduler's connection.
	KubeConfig     string `json:"kubeconfig,omitempty"`
	KubeConfigPath string `json:"kubeConfigPath,omitempty"`
}

// Config is Args after validation.
type Config struct {
	Strategy   core.Strategy
	KubeConfig string
}

// ParseArgs decodes the plugin args kube-scheduler hands the factory: nil
// (no pluginConfig entry) or *runtime.Unknown holding JSON or YAML.
func ParseArgs(obj runtime.Object) (Config, error) {
	var a Args
	switch v := obj.(type) {
	case nil:
	case *runtime.Unknown:
		raw := bytes.TrimSpace(v.Raw)
		if len(raw) == 0 {
			break
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return Config{}, fmt.Errorf("plugin %s args: %w", Name, err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			return Config{}, fmt.Errorf("plugin %s args: %w", Name, err)
		}
	default:
		return Config{}, fmt.Errorf("plugin %s args: unsupported type %T", Name, obj)
	}
	return a.validate()
}

func (a Args) validate() (Config, error) {
	s, err := pickOne("strategy", a.Strategy, "schedulerStrategy", a.SchedulerStrategy)
	if err != nil {
		return Config{}, err
	}
	kc, err := pickOne("kubeconfig", a.KubeConfig, "kubeConfigPath", a.KubeConfigPath)
	if err != nil {
		return Config{}, err
	}
	c := Config{Strategy: core.Binpack, KubeConfig: kc}
	if s != "" {
		if c.Strategy, err = core.ParseStrategy(s); err != nil {
			return Config{}, fmt.Errorf("plugin %s args: strategy %q: want binpack or spread", Name, s)
		}
	}
	return c, nil
}

// pickOne returns the value set under either name; both set differently is
// an error rather than a silent choice.
func pickOne(n1, v1, n2, v2 string) (string, error) {
	if v1 != "" && v2 != "" && v1 != v2 {
		return "", fmt.Errorf("plugin %s args: %s %q and %s %q disagree; set one", Name, n1, v1, n2, v2)
	}
	if v1 != "" {
		return v1, nil
	}
	return v2, nil
}
