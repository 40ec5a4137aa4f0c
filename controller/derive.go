package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
)

// ConfigProblem is one thing wrong with an init config, named by its field
// path so that an administrator can find it.
type ConfigProblem struct {
	// Field is the path in the object, e.g. "spec.nodesConfig[2].selector".
	Field string
	// Reason is v1alpha1.ReasonInvalidSelector or v1alpha1.ReasonInvalidRegexp.
	Reason string
	// Message says what is wrong.
	Message string
}

func (p ConfigProblem) String() string { return p.Field + ": " + p.Message }

// compiledConfig is an init config with its selectors parsed. A config with
// an invalid selector cannot be applied at all: which entry is the last to
// match a node depends on every selector.
type compiledConfig struct {
	config    *v1alpha1.NodeLocalStorageInitConfig
	selectors []labels.Selector
	problems  []ConfigProblem
	// specHash identifies the spec the outcomes of this config refer to.
	specHash string
}

// compileConfig parses every selector of cfg and checks every regexp.
func compileConfig(cfg *v1alpha1.NodeLocalStorageInitConfig) *compiledConfig {
	cc := &compiledConfig{config: cfg, specHash: hashOf(cfg.Spec)}
	cc.problems = append(cc.problems, listConfigProblems("spec.globalConfig", cfg.Spec.GlobalConfig.ListConfig)...)
	cc.selectors = make([]labels.Selector, len(cfg.Spec.NodesConfig))
	for i, nc := range cfg.Spec.NodesConfig {
		field := fmt.Sprintf("spec.nodesConfig[%d]", i)
		// A nil selector parses to labels.Nothing(): the entry matches no node.
		sel, err := metav1.LabelSelectorAsSelector(nc.Selector)
		if err != nil {
			cc.problems = append(cc.problems, ConfigProblem{
				Field: field + ".selector", Reason: v1alpha1.ReasonInvalidSelector, Message: err.Error(),
			})
			sel = labels.Nothing()
		}
		cc.selectors[i] = sel
		cc.problems = append(cc.problems, listConfigProblems(field, nc.ListConfig)...)
	}
	return cc
}

// selectorProblems returns the problems that stop the config from being applied.
func (cc *compiledConfig) selectorProblems() []ConfigProblem {
	var out []ConfigProblem
	for _, p := range cc.problems {
		if p.Reason == v1alpha1.ReasonInvalidSelector {
			out = append(out, p)
		}
	}
	return out
}

// errInvalidConfig marks derivation errors caused by the config itself, as
// opposed to API failures.
var errInvalidConfig = errors.New("invalid init config")

// derive returns the spec the config gives node: the global config, or the
// last nodesConfig entry whose selector matches the node's labels, which
// replaces the global config as a whole (open-local's semantics: no merge).
func (cc *compiledConfig) derive(node *corev1.Node) (v1alpha1.NodeLocalStorageSpec, error) {
	if bad := cc.selectorProblems(); len(bad) > 0 {
		return v1alpha1.NodeLocalStorageSpec{}, fmt.Errorf("%w %s: %s", errInvalidConfig, cc.config.Name, joinProblems(bad))
	}
	chosen := &cc.config.Spec.GlobalConfig
	set := labels.Set(node.Labels)
	for i := range cc.config.Spec.NodesConfig {
		if cc.selectors[i].Matches(set) {
			chosen = &cc.config.Spec.NodesConfig[i].StorageConfig
		}
	}
	c := chosen.DeepCopy()
	spec := v1alpha1.NodeLocalStorageSpec{
		NodeName:           node.Name,
		SpdkConfig:         c.SpdkConfig,
		ListConfig:         c.ListConfig,
		ResourceToBeInited: c.ResourceToBeInited,
	}
	// The patterns a node receives must compile, or its agent could not
	// filter; an entry of another node with a bad pattern does not block it.
	if probs := listConfigProblems("spec", spec.ListConfig); len(probs) > 0 {
		return v1alpha1.NodeLocalStorageSpec{}, fmt.Errorf("%w %s: %s", errInvalidConfig, cc.config.Name, joinProblems(probs))
	}
	return spec, nil
}

// DeriveSpec returns the NodeLocalStorage spec that cfg gives node; it fails
// when a selector of cfg is invalid or the patterns the node would get do not
// compile.
func DeriveSpec(cfg *v1alpha1.NodeLocalStorageInitConfig, node *corev1.Node) (v1alpha1.NodeLocalStorageSpec, error) {
	return compileConfig(cfg).derive(node)
}

// ValidateInitConfig lists everything wrong with cfg that the CRD schema
// cannot catch: selectors that do not parse and patterns that are not Go
// regular expressions.
func ValidateInitConfig(cfg *v1alpha1.NodeLocalStorageInitConfig) []ConfigProblem {
	return compileConfig(cfg).problems
}

// listConfigProblems checks the regexps of lc; prefix is the path of the
// object holding it.
func listConfigProblems(prefix string, lc v1alpha1.ListConfig) []ConfigProblem {
	_, err := core.CompileListConfig(toCoreListConfig(lc))
	if err == nil {
		return nil
	}
	var out []ConfigProblem
	for _, e := range flatten(err) {
		if pe, ok := e.(*core.PatternError); ok {
			// core names fields from "listConfig" down.
			out = append(out, ConfigProblem{
				Field: prefix + "." + pe.Field, Reason: v1alpha1.ReasonInvalidRegexp,
				Message: fmt.Sprintf("invalid regular expression %q: %v", pe.Pattern, pe.Err),
			})
			continue
		}
		out = append(out, ConfigProblem{Field: prefix, Reason: v1alpha1.ReasonInvalidRegexp, Message: e.Error()})
	}
	return out
}

// flatten unpacks joined errors down to the pattern errors.
func flatten(err error) []error {
	if _, ok := err.(*core.PatternError); ok {
		return []error{err}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func joinProblems(ps []ConfigProblem) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

func toCoreListConfig(lc v1alpha1.ListConfig) core.ListConfig {
	return core.ListConfig{
		VGs:         core.Filter{Include: lc.VGs.Include, Exclude: lc.VGs.Exclude},
		MountPoints: core.Filter{Include: lc.MountPoints.Include, Exclude: lc.MountPoints.Exclude},
		Devices:     core.Filter{Include: lc.Devices.Include, Exclude: lc.Devices.Exclude},
	}
}

// hashOf fingerprints a value by its JSON encoding with empty lists and
// objects dropped, so that values equal under apiequality.Semantic (which
// does not tell nil from empty) hash equal whatever their history.
func hashOf(v any) string {
	data, err := json.Marshal(v)
	if err == nil {
		var generic any
		if err = json.Unmarshal(data, &generic); err == nil {
			// encoding/json sorts map keys, so the result is canonical.
			data, err = json.Marshal(dropEmpty(generic))
		}
	}
	if err != nil {
		// The API types always encode. Should one not, hash the error: the
		// value then differs from every recorded hash and is re-derived.
		data = []byte(err.Error())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// dropEmpty removes empty lists and objects, recursively; it returns nil for
// a value that is empty once they are gone.
func dropEmpty(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e = dropEmpty(e); e == nil {
				delete(x, k)
			} else {
				x[k] = e
			}
		}
		if len(x) == 0 {
			return nil
		}
	case []any:
		if len(x) == 0 {
			return nil
		}
		for i, e := range x {
			if e = dropEmpty(e); e == nil {
				// Keep the position: an empty element is still an element.
				e = map[string]any{}
			}
			x[i] = e
		}
	}
	return v
}
