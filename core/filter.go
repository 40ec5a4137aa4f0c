package core

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
)

// Filter is one include/exclude pair of open-local's listConfig. The values are
// Go regexps that must match a whole name (open-local tests FindString(x)==x).
type Filter struct {
	Include []string
	Exclude []string
}

// ListConfig says which VGs, mount points and devices of a node Open-Local may allocate.
type ListConfig struct {
	VGs         Filter
	MountPoints Filter
	Devices     Filter
}

// PatternError is an invalid regexp in a listConfig: it names the field, the
// pattern and the parse error so that it can become a status condition.
type PatternError struct {
	Field   string // e.g. "listConfig.vgs.include[1]"
	Pattern string
	Err     error
}

func (e *PatternError) Error() string {
	return fmt.Sprintf("%s: invalid regular expression %q: %v", e.Field, e.Pattern, e.Err)
}

// Unwrap lets errors.Is find ErrInvalid; the parser's error is in Err.
func (e *PatternError) Unwrap() error { return ErrInvalid }

// CompiledFilter is a Filter whose patterns parsed.
type CompiledFilter struct {
	include []wholeMatcher
	exclude []wholeMatcher
}

// wholeMatcher matches a pattern against a whole name.
type wholeMatcher struct {
	// re is the pattern anchored at both ends, or, when anchored is false,
	// the pattern itself in leftmost-longest mode.
	re       *regexp.Regexp
	anchored bool
}

func (m wholeMatcher) match(name string) bool {
	if m.anchored {
		return m.re.MatchString(name)
	}
	loc := m.re.FindStringIndex(name)
	return loc != nil && loc[0] == 0 && loc[1] == len(name)
}

// compileWhole compiles p so that it matches whole names only. Gluing "^(?:"
// and ")$" around the text is not enough: "a)|(b" would compile into a
// different pattern and "\Qa" would quote the closing parenthesis. So p is
// checked alone, and the anchors are added to its parsed form.
func compileWhole(p string) (wholeMatcher, error) {
	re, err := regexp.Compile(p)
	if err != nil {
		return wholeMatcher{}, err
	}
	if tree, perr := syntax.Parse(p, syntax.Perl); perr == nil {
		whole := &syntax.Regexp{Op: syntax.OpConcat, Sub: []*syntax.Regexp{{Op: syntax.OpBeginText}, tree, {Op: syntax.OpEndText}}}
		if anchored, cerr := regexp.Compile(whole.String()); cerr == nil {
			return wholeMatcher{re: anchored, anchored: true}, nil
		}
	}
	// Fallback, equally exact: with leftmost-longest matching, a match that
	// starts at 0 and ends at len(name) exists exactly when p matches the name.
	re.Longest()
	return wholeMatcher{re: re}, nil
}

// CompileFilter parses f. field prefixes error messages ("listConfig.vgs").
// Every invalid pattern is reported, joined, so a user fixes them in one go.
func CompileFilter(field string, f Filter) (*CompiledFilter, error) {
	c := &CompiledFilter{}
	var errs []error
	compile := func(kind string, pats []string) []wholeMatcher {
		out := make([]wholeMatcher, 0, len(pats))
		for i, p := range pats {
			m, err := compileWhole(p)
			if err != nil {
				errs = append(errs, &PatternError{Field: fmt.Sprintf("%s.%s[%d]", field, kind, i), Pattern: p, Err: err})
				continue
			}
			out = append(out, m)
		}
		return out
	}
	c.include = compile("include", f.Include)
	c.exclude = compile("exclude", f.Exclude)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return c, nil
}

// Match reports whether name is included and not excluded. With no include
// pattern nothing is included: only listed resources are schedulable.
func (c *CompiledFilter) Match(name string) bool {
	if c == nil {
		return false
	}
	in := false
	for _, m := range c.include {
		if m.match(name) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, m := range c.exclude {
		if m.match(name) {
			return false
		}
	}
	return true
}

// CompiledListConfig is a ListConfig whose patterns all parsed.
type CompiledListConfig struct {
	VGs, MountPoints, Devices *CompiledFilter
}

// CompileListConfig parses every pattern of lc; the error lists every bad one.
func CompileListConfig(lc ListConfig) (*CompiledListConfig, error) {
	var errs []error
	vgs, err := CompileFilter("listConfig.vgs", lc.VGs)
	if err != nil {
		errs = append(errs, err)
	}
	mps, err := CompileFilter("listConfig.mountPoints", lc.MountPoints)
	if err != nil {
		errs = append(errs, err)
	}
	devs, err := CompileFilter("listConfig.devices", lc.Devices)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return &CompiledListConfig{VGs: vgs, MountPoints: mps, Devices: devs}, nil
}

// FilteredStorage is what Open-Local may allocate on a node: open-local's
// filteredStorageInfo, names sorted so that equal inputs give equal outputs.
type FilteredStorage struct {
	VGs         []string
	MountPoints []string
	Devices     []string
}

// Apply filters what a node has. Mount points are matched by path and devices
// by path (as open-local does); a device that carries an LVM PV of an included VG
// is still listed if it matches, it is the admin's regexp that decides.
func (c *CompiledListConfig) Apply(ns NodeStorage) FilteredStorage {
	var out FilteredStorage
	for _, vg := range ns.VGs {
		if c.VGs.Match(vg.Name) {
			out.VGs = append(out.VGs, vg.Name)
		}
	}
	for _, mp := range ns.MountPoints {
		if c.MountPoints.Match(mp.Path) {
			out.MountPoints = append(out.MountPoints, mp.Path)
		}
	}
	for _, d := range ns.Devices {
		if c.Devices.Match(d.Name) {
			out.Devices = append(out.Devices, d.Name)
		}
	}
	sort.Strings(out.VGs)
	sort.Strings(out.MountPoints)
	sort.Strings(out.Devices)
	return out
}

// multiError joins errors without depending on errors.Join's formatting
// (one message per line) so messages stay on one line in a status condition.
type multiError []error

func (m multiError) Error() string {
	var b strings.Builder
	for i, e := range m {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (m multiError) Unwrap() []error { return m }

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return multiError(errs)
}
