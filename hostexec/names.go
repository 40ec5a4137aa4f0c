package hostexec

import (
	"fmt"
	"path"
	"strings"
)

// Validation shared by every Host implementation, so that the real host and
// the simulator reject exactly the same inputs with ErrInvalidArgument. Names
// and paths end up in an argv or in a path walk: rejecting what LVM or the
// kernel would reject (or misread as an option) keeps a bad value from ever
// reaching a tool.

// InvalidArgumentError names the argument, the value and why it is refused.
// errors.Is(err, ErrInvalidArgument) holds for it.
type InvalidArgumentError struct {
	Field  string
	Value  string
	Reason string
}

func (e *InvalidArgumentError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Reason)
}

func (e *InvalidArgumentError) Unwrap() error { return ErrInvalidArgument }

// Invalid returns an InvalidArgumentError.
func Invalid(field, value, reason string) error {
	return &InvalidArgumentError{Field: field, Value: value, Reason: reason}
}

const (
	// MaxNameLen is the longest VG or LV name LVM accepts.
	MaxNameLen = 127
	// MaxVGLVNameLen bounds len(vg)+len(lv): lvm2 2.03 refuses longer pairs
	// ("LV name ... length N is not supported").
	MaxVGLVNameLen = 124
	// MaxTagLen is the longest LVM tag.
	MaxTagLen = 1024
	// MaxPathLen is the longest path accepted (PATH_MAX).
	MaxPathLen = 4096
)

// FSTypes are the filesystems Open-Local formats and mounts.
var FSTypes = []string{"ext4", "ext3", "xfs"}

// lvReservedPrefixes and lvReservedSubstrings are names LVM keeps for its own
// internal volumes (lvm(8), VALID NAMES).
var (
	lvReservedPrefixes   = []string{"snapshot", "pvmove"}
	lvReservedSubstrings = []string{
		"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_imeta", "_iorig",
		"_mimage", "_mlog", "_pmspare", "_rimage", "_rmeta", "_tdata",
		"_tmeta", "_vdata", "_vorigin", "_wcorig",
	}
)

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '+' || c == '_' || c == '.' || c == '-'
}

func validateLVMName(field, name string) error {
	switch {
	case name == "":
		return Invalid(field, name, "must not be empty")
	case len(name) > MaxNameLen:
		return Invalid(field, name, fmt.Sprintf("longer than %d characters", MaxNameLen))
	case name == "." || name == "..":
		return Invalid(field, name, "reserved name")
	case name[0] == '-':
		return Invalid(field, name, "must not start with '-'")
	}
	for i := 0; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return Invalid(field, name, fmt.Sprintf("character %q not allowed (allowed: a-z A-Z 0-9 + _ . -)", name[i]))
		}
	}
	return nil
}

// ValidateVGName checks a VG name against LVM's rules.
func ValidateVGName(name string) error {
	return validateLVMName("VG name", name)
}

// ValidateLVName checks an LV name against LVM's rules, including the names
// LVM reserves and the combined length of VG and LV names.
func ValidateLVName(vg, name string) error {
	if err := ValidateVGName(vg); err != nil {
		return err
	}
	if err := validateLVMName("LV name", name); err != nil {
		return err
	}
	for _, p := range lvReservedPrefixes {
		if strings.HasPrefix(name, p) {
			return Invalid("LV name", name, fmt.Sprintf("names starting with %q are reserved by LVM", p))
		}
	}
	for _, s := range lvReservedSubstrings {
		if strings.Contains(name, s) {
			return Invalid("LV name", name, fmt.Sprintf("names containing %q are reserved by LVM", s))
		}
	}
	if len(vg)+len(name) > MaxVGLVNameLen {
		return Invalid("LV name", name, fmt.Sprintf("VG and LV names together are longer than %d characters", MaxVGLVNameLen))
	}
	return nil
}

func isTagChar(c byte) bool {
	if isNameChar(c) {
		return true
	}
	switch c {
	case '/', '=', '!', ':', '&', '#':
		return true
	}
	return false
}

// ValidateTag checks an LVM tag: 1 to 1024 characters of
// a-z A-Z 0-9 + _ . - / = ! : & #, not starting with '-'.
func ValidateTag(tag string) error {
	switch {
	case tag == "":
		return Invalid("LV tag", tag, "must not be empty")
	case len(tag) > MaxTagLen:
		return Invalid("LV tag", tag, fmt.Sprintf("longer than %d characters", MaxTagLen))
	case tag[0] == '-':
		return Invalid("LV tag", tag, "must not start with '-'")
	}
	for i := 0; i < len(tag); i++ {
		if !isTagChar(tag[i]) {
			return Invalid("LV tag", tag, fmt.Sprintf("character %q not allowed (allowed: a-z A-Z 0-9 + _ . - / = ! : & #)", tag[i]))
		}
	}
	return nil
}

// ValidateTags checks every tag.
func ValidateTags(tags []string) error {
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return err
		}
	}
	return nil
}

func validateCleanAbs(field, p string) error {
	switch {
	case p == "":
		return Invalid(field, p, "must not be empty")
	case len(p) > MaxPathLen:
		return Invalid(field, p, fmt.Sprintf("longer than %d characters", MaxPathLen))
	case !strings.HasPrefix(p, "/"):
		return Invalid(field, p, "must be an absolute path")
	case path.Clean(p) != p:
		return Invalid(field, p, fmt.Sprintf("must be a clean path (%q)", path.Clean(p)))
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return Invalid(field, p, "contains a control character")
		}
	}
	return nil
}

// ValidatePath checks a filesystem path: absolute, clean (no "..", no "//",
// no trailing slash), no control characters.
func ValidatePath(p string) error {
	return validateCleanAbs("path", p)
}

// ValidateDevicePath checks a device path: a clean absolute path under /dev.
func ValidateDevicePath(p string) error {
	return ValidateDevicePathUnder("/dev", p)
}

// ValidateDevicePathUnder checks a device path under devRoot (a test host may
// keep its device nodes elsewhere).
func ValidateDevicePathUnder(devRoot, p string) error {
	if err := validateCleanAbs("device path", p); err != nil {
		return err
	}
	if !strings.HasPrefix(p, devRoot+"/") {
		return Invalid("device path", p, fmt.Sprintf("must be under %s", devRoot))
	}
	if strings.ContainsAny(p, " \t") {
		return Invalid("device path", p, "contains whitespace")
	}
	return nil
}

// ValidateFSType accepts ext4, ext3 and xfs.
func ValidateFSType(fsType string) error {
	for _, t := range FSTypes {
		if fsType == t {
			return nil
		}
	}
	return Invalid("filesystem type", fsType, "accepted: "+strings.Join(FSTypes, ", "))
}

// ValidateMountOptions checks mount options: each one non-empty, without
// commas (they are joined with commas into one -o argument, so a comma would
// smuggle in another option) and without whitespace or control characters.
func ValidateMountOptions(options []string) error {
	for _, o := range options {
		if o == "" {
			return Invalid("mount option", o, "must not be empty")
		}
		for i := 0; i < len(o); i++ {
			if o[i] == ',' || o[i] <= ' ' || o[i] == 0x7f {
				return Invalid("mount option", o, "must not contain commas, whitespace or control characters")
			}
		}
	}
	return nil
}

// ValidateToolOptions checks extra argv elements passed to a tool such as
// mkfs: non-empty, no control characters.
func ValidateToolOptions(field string, options []string) error {
	for _, o := range options {
		if o == "" {
			return Invalid(field, o, "must not be empty")
		}
		for i := 0; i < len(o); i++ {
			if o[i] < 0x20 || o[i] == 0x7f {
				return Invalid(field, o, "contains a control character")
			}
		}
	}
	return nil
}

// ValidatePodUID checks a pod UID before it becomes part of a cgroup path:
// hexadecimal digits and dashes (or underscores, the systemd spelling) only.
func ValidatePodUID(uid string) error {
	if uid == "" || len(uid) > 64 {
		return Invalid("pod UID", uid, "must be 1 to 64 characters")
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-' || c == '_') {
			return Invalid("pod UID", uid, "only hexadecimal digits and dashes are allowed")
		}
	}
	return nil
}

// ValidateLVSpec checks every field of an LVSpec.
func ValidateLVSpec(spec LVSpec) error {
	if err := ValidateLVName(spec.VG, spec.Name); err != nil {
		return err
	}
	if spec.SizeBytes < 0 {
		return Invalid("LV size", fmt.Sprint(spec.SizeBytes), "must not be negative")
	}
	if spec.Stripes < 0 {
		return Invalid("stripes", fmt.Sprint(spec.Stripes), "must not be negative")
	}
	if spec.StripeSizeBytes != 0 {
		s := spec.StripeSizeBytes
		if s < 4096 || s&(s-1) != 0 {
			return Invalid("stripe size", fmt.Sprint(s), "must be a power of two of at least 4096 bytes")
		}
	}
	return ValidateTags(spec.Tags)
}

// ValidateSnapshotSpec checks every field of a SnapshotSpec.
func ValidateSnapshotSpec(spec SnapshotSpec) error {
	if err := ValidateLVName(spec.VG, spec.Name); err != nil {
		return err
	}
	if err := ValidateLVName(spec.VG, spec.Origin); err != nil {
		return err
	}
	if spec.Name == spec.Origin {
		return Invalid("snapshot name", spec.Name, "must differ from its origin")
	}
	if spec.SizeBytes < 0 {
		return Invalid("snapshot size", fmt.Sprint(spec.SizeBytes), "must not be negative")
	}
	return ValidateTags(spec.Tags)
}

// ValidateDeviceList checks a non-empty list of distinct device paths.
func ValidateDeviceList(devices []string) error {
	if len(devices) == 0 {
		return Invalid("device list", "", "must name at least one device")
	}
	seen := make(map[string]bool, len(devices))
	for _, d := range devices {
		if err := ValidateDevicePath(d); err != nil {
			return err
		}
		if seen[d] {
			return Invalid("device list", d, "device listed twice")
		}
		seen[d] = true
	}
	return nil
}
