package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// The state directory holds what LVM tags cannot: Device and MountPoint
// volumes (they have no LV), and per node the stage and publish facts (paths,
// block or filesystem, inline volumes, io.max settings with the pod's cgroup).
// Each record is one small JSON file written atomically through the Host.
//
//	<state-dir>/volumes/<volume-id>.json
//	<state-dir>/stage/<volume-id>@<digest of staging path>.json
//	<state-dir>/publish/<volume-id>@<digest of target path>.json
//
// Keying stage and publish records by volume ID first lets one ListDir find
// every publication of a volume (RWOP checks, restart recovery).
const (
	dirVolumes = "volumes"
	dirStage   = "stage"
	dirPublish = "publish"

	recordVersion = 1
)

// VolumeRecord is a Device or MountPoint volume.
type VolumeRecord struct {
	Version int        `json:"version"`
	ID      string     `json:"id"`
	Type    VolumeType `json:"type"`
	// Device is the device path (Device) or the device behind the mount point.
	Device string `json:"device,omitempty"`
	// MountPath is the MountPoint volume's directory.
	MountPath string         `json:"mountPath,omitempty"`
	SizeBytes int64          `json:"sizeBytes"`
	Media     core.MediaType `json:"media,omitempty"`
	// RequiredBytes is what CreateVolume asked for (idempotency check).
	RequiredBytes int64 `json:"requiredBytes"`
}

// StageRecord is a staged volume.
type StageRecord struct {
	Version     int        `json:"version"`
	VolumeID    string     `json:"volumeID"`
	Type        VolumeType `json:"type"`
	StagingPath string     `json:"stagingPath"`
	Block       bool       `json:"block"`
	// Device is the volume's block device, or a MountPoint volume's directory.
	Device   string `json:"device"`
	FSType   string `json:"fsType,omitempty"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// ThrottleRecord is io.max applied for a published volume.
type ThrottleRecord struct {
	PodUID    string            `json:"podUID"`
	CgroupDir string            `json:"cgroupDir"`
	Device    string            `json:"device"`
	Major     uint32            `json:"major"`
	Minor     uint32            `json:"minor"`
	Limits    hostexec.IOLimits `json:"limits"`
}

// EphemeralRecord is the inline volume behind a publication.
type EphemeralRecord struct {
	VG        string `json:"vg"`
	PodUID    string `json:"podUID,omitempty"`
	SizeBytes int64  `json:"sizeBytes"`
	FSType    string `json:"fsType"`
}

// PublishRecord is a published volume. It is written when the publication is
// complete, so an inline volume without one was never handed to a pod.
type PublishRecord struct {
	Version    int        `json:"version"`
	VolumeID   string     `json:"volumeID"`
	Type       VolumeType `json:"type"`
	TargetPath string     `json:"targetPath"`
	Block      bool       `json:"block"`
	ReadOnly   bool       `json:"readOnly"`
	// Device is the volume's block device, or a MountPoint volume's directory.
	Device    string           `json:"device"`
	Ephemeral *EphemeralRecord `json:"ephemeral,omitempty"`
	Throttle  *ThrottleRecord  `json:"throttle,omitempty"`
	// SingleWriter is set for SINGLE_NODE_SINGLE_WRITER (RWOP) publications.
	SingleWriter bool `json:"singleWriter,omitempty"`
}

// records reads and writes the state directory through the Host.
type records struct {
	host hostexec.Host
	dir  string
}

func pathKey(p string) string {
	sum := sha256.Sum256([]byte(p))
	return hex.EncodeToString(sum[:8])
}

func (r *records) volumePath(id string) string { return path.Join(r.dir, dirVolumes, id+".json") }
func (r *records) stagePath(id, staging string) string {
	return path.Join(r.dir, dirStage, id+"@"+pathKey(staging)+".json")
}
func (r *records) publishPath(id, target string) string {
	return path.Join(r.dir, dirPublish, id+"@"+pathKey(target)+".json")
}

// ensureDirs creates the state directory layout.
func (r *records) ensureDirs(ctx context.Context) error {
	for _, d := range []string{dirVolumes, dirStage, dirPublish} {
		if err := r.host.MakeDir(ctx, path.Join(r.dir, d)); err != nil {
			return fmt.Errorf("creating state directory %s: %w", path.Join(r.dir, d), err)
		}
	}
	return nil
}

func (r *records) write(ctx context.Context, p string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding record %s: %w", p, err)
	}
	if err := r.host.WriteFileAtomic(ctx, p, append(data, '\n')); err != nil {
		return fmt.Errorf("writing record %s: %w", p, err)
	}
	return nil
}

// read decodes a record; found is false when the file does not exist. A
// record that does not decode is an error naming the file: it is never
// silently taken as absent.
func (r *records) read(ctx context.Context, p string, v any) (found bool, err error) {
	data, err := r.host.ReadFile(ctx, p)
	if errors.Is(err, hostexec.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading record %s: %w", p, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("record %s is corrupt: %v", p, err)
	}
	return true, nil
}

func (r *records) remove(ctx context.Context, p string) error {
	if err := r.host.RemovePath(ctx, p); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
		return fmt.Errorf("removing record %s: %w", p, err)
	}
	return nil
}

// list returns the record file names of a directory (missing directory: none).
func (r *records) list(ctx context.Context, dir string) ([]string, error) {
	names, err := r.host.ListDir(ctx, path.Join(r.dir, dir))
	if errors.Is(err, hostexec.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", path.Join(r.dir, dir), err)
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if strings.HasSuffix(n, ".json") {
			out = append(out, n)
		}
	}
	return out, nil
}

func (r *records) readVolume(ctx context.Context, id string) (VolumeRecord, bool, error) {
	var v VolumeRecord
	found, err := r.read(ctx, r.volumePath(id), &v)
	return v, found, err
}

func (r *records) writeVolume(ctx context.Context, v VolumeRecord) error {
	v.Version = recordVersion
	return r.write(ctx, r.volumePath(v.ID), v)
}

// volumes reads every Device and MountPoint volume record.
func (r *records) volumes(ctx context.Context) ([]VolumeRecord, error) {
	names, err := r.list(ctx, dirVolumes)
	if err != nil {
		return nil, err
	}
	out := make([]VolumeRecord, 0, len(names))
	for _, n := range names {
		var v VolumeRecord
		found, err := r.read(ctx, path.Join(r.dir, dirVolumes, n), &v)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, v)
		}
	}
	return out, nil
}

// publications reads the publish records of one volume ("" = every volume).
func (r *records) publications(ctx context.Context, volumeID string) ([]PublishRecord, error) {
	names, err := r.list(ctx, dirPublish)
	if err != nil {
		return nil, err
	}
	var out []PublishRecord
	for _, n := range names {
		if volumeID != "" && !strings.HasPrefix(n, volumeID+"@") {
			continue
		}
		var p PublishRecord
		found, err := r.read(ctx, path.Join(r.dir, dirPublish, n), &p)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, p)
		}
	}
	return out, nil
}
