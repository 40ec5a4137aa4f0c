package simhost_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"

	"pgregory.net/rapid"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/simhost"
)

// TestMain runs the property test with 1000 cases unless -rapid.checks or
// RAPID_CHECKS says otherwise (rapid's own default is 100).
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if _, env := os.LookupEnv("RAPID_CHECKS"); !set && !env {
		if err := flag.Set("rapid.checks", "1000"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// The reference model: free extents per VG and each LV's size, stripes and
// origin. It predicts every call's outcome except where LVM's per-PV
// placement decides (a striped allocation that fits the VG in total).
type refLV struct {
	extents int64
	stripes int
	origin  string
}

type refVG struct {
	free int64
	pvs  int
	lvs  map[string]*refLV
}

type refModel struct {
	extent int64
	devVG  map[string]string // device -> VG ("" when blank)
	vgs    map[string]*refVG
}

var (
	propDevices = []string{"/dev/sdb", "/dev/sdc", "/dev/sdd", "/dev/sde"}
	propSizes   = []string{"256Mi", "256Mi", "512Mi", "130Mi"}
	vgNames     = []string{"vg0", "vg1", "vg2"}
	lvNames     = []string{"a", "b", "c", "d", "e", "f"}
)

func wantErr(t *rapid.T, op string, got, want error) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Fatalf("%s: unexpected error %v", op, got)
		}
		return
	}
	if !errors.Is(got, want) {
		t.Fatalf("%s: want %v, got %v", op, want, got)
	}
}

func TestSimulatorAgreesWithModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		extStr := rapid.SampledFrom([]string{"1Mi", "4Mi", "8Mi"}).Draw(t, "extentSize")
		extent, _ := core.ParseSize(extStr)
		cfg := simhost.Config{ExtentSize: extStr}
		sizes := map[string]int64{}
		for i, d := range propDevices {
			cfg.Devices = append(cfg.Devices, simhost.DeviceConfig{Name: d, Size: propSizes[i]})
			sizes[d], _ = core.ParseSize(propSizes[i])
		}
		h, err := simhost.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &refModel{extent: extent, devVG: map[string]string{}, vgs: map[string]*refVG{}}
		ctx := context.Background()
		size := rapid.OneOf(rapid.Int64Range(0, 600*core.MiB), rapid.SampledFrom([]int64{0, 1, extent, extent + 1, 2 * extent}))

		t.Repeat(map[string]func(*rapid.T){
			"CreateVG": func(t *rapid.T) {
				name := rapid.SampledFrom(vgNames).Draw(t, "vg")
				devs := rapid.SliceOfNDistinct(rapid.SampledFrom(propDevices), 1, 2, rapid.ID[string]).Draw(t, "devices")
				err := h.CreateVG(ctx, name, devs, false)
				var want error
				if _, ok := m.vgs[name]; ok {
					want = hostexec.ErrAlreadyExists
				} else {
					for _, d := range devs {
						if m.devVG[d] != "" {
							want = hostexec.ErrInUse
							break
						}
					}
				}
				wantErr(t, "CreateVG", err, want)
				if want == nil {
					v := &refVG{lvs: map[string]*refLV{}, pvs: len(devs)}
					for _, d := range devs {
						m.devVG[d] = name
						v.free += (sizes[d] - core.MiB) / extent
					}
					m.vgs[name] = v
				}
			},
			"CreateLV": func(t *rapid.T) {
				vg := rapid.SampledFrom(vgNames).Draw(t, "vg")
				name := rapid.SampledFrom(lvNames).Draw(t, "lv")
				req := size.Draw(t, "size")
				stripes := rapid.IntRange(1, 3).Draw(t, "stripes")
				if v, ok := m.vgs[vg]; ok && rapid.IntRange(0, 3).Draw(t, "edge") == 0 {
					// Exactly the free space, or one byte more.
					req = v.free*extent + rapid.Int64Range(0, 1).Draw(t, "plus")
				}
				err := h.CreateLV(ctx, hostexec.LVSpec{VG: vg, Name: name, SizeBytes: req, Stripes: stripes})
				v, ok := m.vgs[vg]
				need := core.LVSize(req, extent, stripes) / extent
				switch {
				case !ok:
					wantErr(t, "CreateLV", err, hostexec.ErrNotFound)
				case v.lvs[name] != nil:
					wantErr(t, "CreateLV", err, hostexec.ErrAlreadyExists)
				case stripes > v.pvs || need > v.free:
					wantErr(t, "CreateLV", err, hostexec.ErrInsufficientSpace)
				case stripes > 1 && err != nil:
					// Fits the VG but maybe not on enough PVs at once.
					wantErr(t, "CreateLV striped", err, hostexec.ErrInsufficientSpace)
				default:
					wantErr(t, "CreateLV", err, nil)
					v.free -= need
					v.lvs[name] = &refLV{extents: need, stripes: stripes}
				}
			},
			"ExtendLV": func(t *rapid.T) {
				vg := rapid.SampledFrom(vgNames).Draw(t, "vg")
				name := rapid.SampledFrom(lvNames).Draw(t, "lv")
				req := size.Draw(t, "size")
				if v, ok := m.vgs[vg]; ok && v.lvs[name] != nil && rapid.IntRange(0, 3).Draw(t, "edge") == 0 {
					req = (v.lvs[name].extents+v.free)*extent + rapid.Int64Range(0, 1).Draw(t, "plus")
				}
				err := h.ExtendLV(ctx, vg, name, req)
				v, ok := m.vgs[vg]
				if !ok || v.lvs[name] == nil {
					wantErr(t, "ExtendLV", err, hostexec.ErrNotFound)
					return
				}
				l := v.lvs[name]
				target := core.LVSize(req, extent, l.stripes) / extent
				switch {
				case target <= l.extents:
					wantErr(t, "ExtendLV no-op", err, nil)
				case target-l.extents > v.free:
					wantErr(t, "ExtendLV", err, hostexec.ErrInsufficientSpace)
				case l.stripes > 1 && err != nil:
					wantErr(t, "ExtendLV striped", err, hostexec.ErrInsufficientSpace)
				default:
					wantErr(t, "ExtendLV", err, nil)
					v.free -= target - l.extents
					l.extents = target
				}
			},
			"CreateSnapshot": func(t *rapid.T) {
				vg := rapid.SampledFrom(vgNames).Draw(t, "vg")
				name := rapid.SampledFrom(lvNames).Draw(t, "snapshot")
				origin := rapid.SampledFrom(lvNames).Draw(t, "origin")
				req := size.Draw(t, "size")
				err := h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vg, Name: name, Origin: origin, SizeBytes: req})
				need := core.LVSize(req, extent, 1) / extent
				v, ok := m.vgs[vg]
				switch {
				case name == origin:
					wantErr(t, "CreateSnapshot", err, hostexec.ErrInvalidArgument)
				case !ok || v.lvs[origin] == nil:
					wantErr(t, "CreateSnapshot", err, hostexec.ErrNotFound)
				case v.lvs[origin].origin != "":
					wantErr(t, "CreateSnapshot", err, hostexec.ErrInvalidArgument)
				case v.lvs[name] != nil:
					wantErr(t, "CreateSnapshot", err, hostexec.ErrAlreadyExists)
				case need > v.free:
					wantErr(t, "CreateSnapshot", err, hostexec.ErrInsufficientSpace)
				default:
					wantErr(t, "CreateSnapshot", err, nil)
					v.free -= need
					v.lvs[name] = &refLV{extents: need, stripes: 1, origin: origin}
				}
			},
			"RemoveLV": func(t *rapid.T) {
				vg := rapid.SampledFrom(vgNames).Draw(t, "vg")
				name := rapid.SampledFrom(lvNames).Draw(t, "lv")
				err := h.RemoveLV(ctx, vg, name)
				v, ok := m.vgs[vg]
				if !ok || v.lvs[name] == nil {
					wantErr(t, "RemoveLV", err, hostexec.ErrNotFound)
					return
				}
				for _, l := range v.lvs {
					if l.origin == name {
						wantErr(t, "RemoveLV origin", err, hostexec.ErrInUse)
						return
					}
				}
				wantErr(t, "RemoveLV", err, nil)
				v.free += v.lvs[name].extents
				delete(v.lvs, name)
			},
			"": func(t *rapid.T) {
				st, err := h.LVMReport(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(st.VGs) != len(m.vgs) {
					t.Fatalf("report has %d VGs, model %d", len(st.VGs), len(m.vgs))
				}
				for _, vg := range st.VGs {
					v, ok := m.vgs[vg.Name]
					if !ok {
						t.Fatalf("VG %s not in the model", vg.Name)
					}
					if vg.FreeBytes != v.free*extent {
						t.Fatalf("VG %s free %d, model %d", vg.Name, vg.FreeBytes, v.free*extent)
					}
					var pvFree, pvSize int64
					for _, pv := range vg.PVs {
						if pv.FreeBytes < 0 || pv.FreeBytes > pv.SizeBytes {
							t.Fatalf("PV %s free %d of %d", pv.Name, pv.FreeBytes, pv.SizeBytes)
						}
						pvFree += pv.FreeBytes
						pvSize += pv.SizeBytes
					}
					if pvFree != vg.FreeBytes || pvSize != vg.TotalBytes {
						t.Fatalf("VG %s: PVs hold %d/%d, VG says %d/%d", vg.Name, pvFree, pvSize, vg.FreeBytes, vg.TotalBytes)
					}
					if len(vg.LVs) != len(v.lvs) {
						t.Fatalf("VG %s has %d LVs, model %d", vg.Name, len(vg.LVs), len(v.lvs))
					}
					var used int64
					for _, lv := range vg.LVs {
						ml, ok := v.lvs[lv.Name]
						if !ok {
							t.Fatalf("LV %s/%s not in the model", vg.Name, lv.Name)
						}
						if lv.SizeBytes != ml.extents*extent || lv.Stripes != ml.stripes || lv.Origin != ml.origin {
							t.Fatalf("LV %s/%s: %d bytes, %d stripes, origin %q; model %d, %d, %q", vg.Name, lv.Name,
								lv.SizeBytes, lv.Stripes, lv.Origin, ml.extents*extent, ml.stripes, ml.origin)
						}
						used += lv.SizeBytes
					}
					if used != vg.TotalBytes-vg.FreeBytes {
						t.Fatalf("VG %s: LVs use %d, VG used %d", vg.Name, used, vg.TotalBytes-vg.FreeBytes)
					}
				}
			},
		})
	})
}
