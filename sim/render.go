package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/open-local/open-local/core"
)

// maxPodsShown bounds the pods listed in one table cell.
const maxPodsShown = 4

// WriteJSON writes the result as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the per-node table, the unschedulable pods, the
// over-committed resources and a summary line.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRESOURCE\tALLOCATABLE\tREQUESTED\tFREE\tPODS")
	for _, rr := range r.Resources {
		if rr.Kind == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t(no Open-Local storage)\n", rr.Node)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", rr.Node, resourceName(rr), humanBytes(rr.AllocatableBytes), humanBytes(rr.RequestedBytes), humanBytes(rr.FreeBytes), podsCell(rr))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Unschedulable) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "UNSCHEDULABLE POD\tREASON")
		for _, u := range r.Unschedulable {
			fmt.Fprintf(tw, "%s\t%s\n", u.Pod, u.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Overcommits) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "OVER-COMMITTED\tRESOURCE\tEXCESS\tCLAIMS")
		for _, o := range r.Overcommits {
			claims := make([]string, len(o.Claims))
			for i, c := range o.Claims {
				claims[i] = string(c)
			}
			fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\n", o.Node, kindWord(o.Kind), o.Resource, humanBytes(o.ExcessBytes), strings.Join(claims, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\n%d nodes, %d pods: %d placed, %d unschedulable; %d over-committed resources; strategy %s, sample %d; %s\n",
		r.Nodes, r.Pods, len(r.Placements), len(r.Unschedulable), r.Overcommitted, r.Strategy, r.Sample, elapsed(r.ElapsedSeconds))
	if r.Mode != "" && r.Mode != ModeCore {
		fmt.Fprintf(w, "mode %s: %.0f placements/s, %d reschedules, %d over-commit attempts caught at reservation, %s over-committed\n",
			r.Mode, r.PlacementsPerSecond, r.Reschedules, r.OvercommitAttemptsCaught, humanBytes(r.OvercommittedBytes))
	}
	return nil
}

func resourceName(rr ResourceReport) string {
	switch rr.Kind {
	case core.KindLVM:
		return "vg " + rr.Name
	case core.KindDevice, core.KindMountPoint:
		word := "device"
		if rr.Kind == core.KindMountPoint {
			word = "mountpoint"
		}
		if rr.Media != "" {
			return fmt.Sprintf("%s %s (%s)", word, rr.Name, rr.Media)
		}
		return word + " " + rr.Name
	}
	return rr.Name
}

func podsCell(rr ResourceReport) string {
	parts := rr.Pods
	var extra []string
	if len(parts) > maxPodsShown {
		extra = append(extra, fmt.Sprintf("+%d more", len(parts)-maxPodsShown))
		parts = parts[:maxPodsShown]
	}
	if rr.ExistingVolumes > 0 {
		extra = append(extra, fmt.Sprintf("%d existing volume%s", rr.ExistingVolumes, plural(rr.ExistingVolumes)))
	}
	cell := strings.Join(parts, ", ")
	if len(extra) > 0 {
		if cell != "" {
			cell += " "
		}
		cell += "(" + strings.Join(extra, ", ") + ")"
	}
	if cell == "" {
		return "-"
	}
	return cell
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func elapsed(s float64) string {
	if s < 1 {
		return "placement took " + strconv.FormatFloat(s*1000, 'f', 1, 64) + "ms"
	}
	return "placement took " + strconv.FormatFloat(s, 'f', 2, 64) + "s"
}

// humanBytes prints a size in the largest binary unit, exactly when it divides
// evenly ("100Gi") and to one decimal otherwise ("12.5Gi").
func humanBytes(b int64) string {
	if b == 0 {
		return "0"
	}
	units := []struct {
		suffix string
		size   int64
	}{{"Ei", 1 << 60}, {"Pi", 1 << 50}, {"Ti", 1 << 40}, {"Gi", core.GiB}, {"Mi", core.MiB}, {"Ki", core.KiB}}
	neg := ""
	if b < 0 {
		neg, b = "-", -b
	}
	for _, u := range units {
		if b >= u.size {
			if b%u.size == 0 {
				return neg + strconv.FormatInt(b/u.size, 10) + u.suffix
			}
			return neg + strconv.FormatFloat(float64(b)/float64(u.size), 'f', 1, 64) + u.suffix
		}
	}
	return neg + strconv.FormatInt(b, 10)
}
