package status

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"

	"github.com/open-local/open-local/core"
)

// Output formats of Write.
const (
	OutputTable = "table"
	OutputJSON  = "json"
)

// Outputs are the accepted output formats.
var Outputs = []string{OutputTable, OutputJSON}

// Write prints the report as a table or as JSON.
func (r *Report) Write(w io.Writer, output string) error {
	switch output {
	case OutputTable, "":
		return r.WriteTable(w)
	case OutputJSON:
		return r.WriteJSON(w)
	}
	return &core.InvalidValueError{Field: "output", Value: output, Accepted: Outputs}
}

// WriteJSON prints the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable prints one line per resource (one per node without any), then
// the messages of the nodes and resources that are not Ready.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tNAME\tMEDIA\tALLOCATABLE\tREQUESTED\tFREE\tHEALTH")
	var notes []string
	for _, n := range r.Nodes {
		if n.Message != "" {
			notes = append(notes, n.Name+": "+n.Message)
		}
		if len(n.Resources) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t%s\n", n.Name, n.Health)
			continue
		}
		for _, res := range n.Resources {
			media := res.Media
			if media == "" {
				media = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, res.Kind, res.Name, media,
				FormatBytes(res.AllocatableBytes), FormatBytes(res.RequestedBytes), FormatBytes(res.FreeBytes), res.Health)
			if res.Message != "" {
				notes = append(notes, fmt.Sprintf("%s %s %s: %s", n.Name, res.Kind, res.Name, res.Message))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, s := range notes {
			fmt.Fprintln(w, s)
		}
	}
	return nil
}

// FormatBytes prints a size in binary units as Kubernetes quantities do
// ("100Gi"); a size that is not a whole number of its unit gets one decimal
// rounded down ("99.9Gi") rather than the exact but unreadable "104753152Ki".
func FormatBytes(b int64) string {
	if b == 0 {
		return "0"
	}
	sign := ""
	if b < 0 {
		sign, b = "-", -b
	}
	units := [...]struct {
		suffix string
		size   int64
	}{{"Ei", 1 << 60}, {"Pi", 1 << 50}, {"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if b < u.size {
			continue
		}
		if b%u.size == 0 {
			return sign + strconv.FormatInt(b/u.size, 10) + u.suffix
		}
		// Rounded down: a free size is never shown larger than it is.
		tenths := b * 10 / u.size
		if b > math.MaxInt64/10 {
			tenths = b / u.size * 10
		}
		return sign + strconv.FormatInt(tenths/10, 10) + "." + strconv.FormatInt(tenths%10, 10) + u.suffix
	}
	return sign + strconv.FormatInt(b, 10)
}
