package core

import (
	"fmt"
	"regexp"
	"sort"
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

func (e *PatternError) Unwrap() error { return ErrInvalid }

// CompiledFilter is a Filter whose patterns parsed.
type CompiledFilter struct {
	include []*regexp.Regexp
	exclude []*regexp.Regexp
}

// CompileFilter parses f. field prefixes error messages ("listConfig.vgs").
// Every invalid pattern is reported, joined, so a user fixes them in one go.
func CompileFilter(field string, f Filter) (*CompiledFilter, error) {
	c := &CompiledFilter{}
	var errs []error
	compile := func(kind string, pats []string) []*regexp.Regexp {
		out := make([]*regexp.Regexp, 0, len(pats))
		for i, p := range pats {
			// Anchor the whole pattern so "match the whole name" holds for
			// alternations too ("a|b" must not match "ab").
			re, err := regexp.Compile(`^(?:` + p + `)$`)
			if err != nil {
				errs = append(errs, &PatternError{Field: fmt.Sprintf("%s.%s[%d]", field, kind, i), Pattern: p, Err: unwrapRegexpError(err)})
				continue
			}
			out = append(out, re)
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

// unwrapRegexpError strips the anchoring we added from syntax errors so the
// message shows what the user wrote.
func unwrapRegexpError(err error) error {
	if se, ok := err.(interface{ Unwrap() error }); ok && se.Unwrap() != nil {
		return se.Unwrap()
	}
	return err
}

// Match reports whether name is included and not excluded. With no include
// pattern nothing is included: only listed resources are schedulable.
func (c *CompiledFilter) Match(name string) bool {
	if c == nil {
		return false
	}
	in := false
	for _, re := range c.include {
		if re.MatchString(name) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, re := range c.exclude {
		if re.MatchString(name) {
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
	s := ""
	for i, e := range m {
		if i > 0 {
			s += "; "
		}
		s += e.Error()
	}
	return s
}

func (m multiError) Unwrap() []error { return m }

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return multiError(errs)
}
