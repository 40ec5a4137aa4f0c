package csi

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/open-local/open-local/hostexec"
)

// recover runs at start, before any RPC, to undo what a crash or a reboot
// left behind:
//
//   - an inline LV without a publish record was never handed to a pod (the
//     record is written last): it is unmounted wherever it is mounted and
//     removed;
//   - a publish record of an inline volume whose LV is gone is dropped;
//   - io.max is written again for every throttled publication whose pod
//     still has a cgroup (a reboot or a cgroup recreated by the runtime
//     loses it), with the device numbers looked up again (they may change).
//
// A step that fails is logged and retried at the next start; only a host
// that cannot be read at all stops the driver.
func (d *Driver) recover(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return fmt.Errorf("reading the LVM report: %w", err)
	}
	pubs, err := d.rec.publications(ctx, "")
	if err != nil {
		return err
	}
	published := map[string]bool{}
	for _, p := range pubs {
		published[p.VolumeID] = true
	}
	var mounts []hostexec.MountInfo
	for i := range state.VGs {
		vg := &state.VGs[i]
		for j := range vg.LVs {
			lv := vg.LVs[j]
			if !isOwned(lv) || !hasTag(lv.Tags, tagKindEphemeral) || published[lv.Name] {
				continue
			}
			if mounts == nil {
				if mounts, err = d.host.ListMounts(ctx); err != nil {
					return fmt.Errorf("listing mounts: %w", err)
				}
			}
			v := d.volumeFromLV(vg, &lv)
			ok := true
			for _, m := range mounts {
				if v.sameSource(m.Source) {
					if err := d.host.Unmount(ctx, m.Target); err != nil {
						logger.Info("Recovery: cannot unmount an orphaned inline volume", "volume", lv.Name, "target", m.Target, "err", err)
						ok = false
					}
				}
			}
			if !ok {
				continue
			}
			if err := d.removeEphemeral(ctx, vg.Name, lv.Name); err != nil {
				logger.Info("Recovery: cannot remove an orphaned inline volume", "volume", lv.Name, "err", err)
				continue
			}
			logger.Info("Recovery: removed an inline volume that was never published", "volume", lv.Name, "vg", vg.Name)
		}
	}
	for _, p := range pubs {
		if p.Ephemeral != nil {
			if _, lv := findLV(state, p.VolumeID); lv == nil {
				if err := d.unmount(ctx, p.TargetPath); err != nil {
					logger.Info("Recovery: cannot unmount the target of a vanished inline volume", "volume", p.VolumeID, "target", p.TargetPath, "err", err)
					continue
				}
				if err := d.rec.remove(ctx, d.rec.publishPath(p.VolumeID, p.TargetPath)); err != nil {
					logger.Info("Recovery: cannot drop a stale publish record", "volume", p.VolumeID, "err", err)
				}
				continue
			}
		}
		if p.Throttle != nil {
			if err := d.reapplyThrottle(ctx, p); err != nil {
				logger.Info("Recovery: cannot re-apply io limits", "volume", p.VolumeID, "pod", p.Throttle.PodUID, "err", err)
			}
		}
	}
	return nil
}

func (d *Driver) reapplyThrottle(ctx context.Context, p PublishRecord) error {
	t := *p.Throttle
	cg, err := d.host.PodCgroupDir(ctx, t.PodUID)
	if errors.Is(err, hostexec.ErrNotFound) {
		// The pod is gone; kubelet unpublishes the volume.
		return nil
	}
	if err != nil {
		return err
	}
	major, minor, err := d.host.DeviceNumber(ctx, t.Device)
	if err != nil {
		return err
	}
	if err := d.host.SetIOLimits(ctx, cg, major, minor, t.Limits); err != nil {
		return err
	}
	if cg == t.CgroupDir && major == t.Major && minor == t.Minor {
		return nil
	}
	t.CgroupDir, t.Major, t.Minor = cg, major, minor
	p.Throttle = &t
	if err := d.rec.write(ctx, d.rec.publishPath(p.VolumeID, p.TargetPath), p); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Recovery: re-applied io limits", "volume", p.VolumeID, "cgroup", cg, "device", fmt.Sprintf("%d:%d", major, minor))
	return nil
}
