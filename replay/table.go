package replay

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable writes r for people: what was replayed, the totals by status,
// the changes, then per plan, route and customer the first top groups
// whose answers changed (top <= 0: all of them), and how many groups were
// left out.
func (r *Report) WriteTable(w io.Writer, top int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	r.writeSummary(tw)
	r.writeTotals(tw)
	r.writeChanges(tw)
	writeGroups(tw, "PLAN", "plan", r.ByPlan, top, func(c PlanChange) (string, Change) {
		return orNone(c.Plan, "(no key)"), c.Change
	})
	writeGroups(tw, "ROUTE", "route", r.ByRoute, top, func(c RouteChange) (string, Change) {
		return routeLabel(c), c.Change
	})
	writeGroups(tw, "CUSTOMER", "customer", r.ByCustomer, top, func(c CustomerChange) (string, Change) {
		return orNone(c.Customer, "(no key)"), c.Change
	})
	return tw.Flush()
}

// writeSummary writes what was replayed against what.
func (r *Report) writeSummary(w io.Writer) {
	fmt.Fprintf(w, "replayed %d lines of %s", r.Lines, count(len(r.Files), "file"))
	if r.Lines > 0 {
		fmt.Fprintf(w, ", %s to %s", r.From.Format(time.RFC3339Nano), r.To.Format(time.RFC3339Nano))
	}
	fmt.Fprintln(w)
	if r.Skipped > 0 {
		fmt.Fprintf(w, "skipped %s\n", count(int(r.Skipped), "malformed line"))
	}
	if r.Unreplayable > 0 {
		fmt.Fprintf(w, "left out %s logged 503 store:error without a key id (the store was down: which key the request had, if any, is not known)\n",
			count(int(r.Unreplayable), "line"))
	}
	if r.Late > 0 {
		fmt.Fprintf(w, "replayed late %s that came after the reorder window (%s)\n", count(int(r.Late), "line"), Window)
	}
	if r.BaselinePolicy == "" {
		fmt.Fprintln(w, "baseline:  the logged answers")
	} else {
		fmt.Fprintf(w, "baseline:  %s, replayed on fresh state\n", r.BaselinePolicy)
	}
	fmt.Fprintf(w, "candidate: %s, replayed on fresh state\n", r.CandidatePolicy)
	fmt.Fprintf(w, "changed:   %d of %d answers%s\n", r.Changed, r.Lines, percent(r.Changed, r.Lines))
}

// writeTotals writes the lines by status of both sides.
func (r *Report) writeTotals(w io.Writer) {
	fmt.Fprintf(w, "\nSTATUS\tBASELINE\tCANDIDATE\tDIFFERENCE\n")
	for _, s := range statuses(r.Baseline, r.Candidate) {
		b, c := r.Baseline[s], r.Candidate[s]
		diff := "0"
		if c != b {
			diff = fmt.Sprintf("%+d", c-b)
		}
		fmt.Fprintf(w, "%d\t%d\t%d\t%s\n", s, b, c, diff)
	}
}

// writeChanges writes the transitions, most first.
func (r *Report) writeChanges(w io.Writer) {
	if len(r.Changes) == 0 {
		return
	}
	fmt.Fprintf(w, "\nCHANGE\tCANDIDATE REASON\tLINES\n")
	for _, c := range r.Changes {
		fmt.Fprintf(w, "%d → %d\t%s\t%d\n", c.Baseline, c.Candidate, orNone(c.Reason, "-"), c.Lines)
	}
}

// writeGroups writes the first top groups with changes (sorted so, first),
// and a line on the others.
func writeGroups[G any](w io.Writer, title, noun string, groups []G, top int, row func(G) (string, Change)) {
	changed := 0
	for _, g := range groups {
		if _, c := row(g); c.Changed > 0 {
			changed++
		}
	}
	shown := changed
	if top > 0 {
		shown = min(changed, top)
	}
	fmt.Fprintf(w, "\n%s\tLINES\tCHANGED\tBASELINE → CANDIDATE\n", title)
	for _, g := range groups[:shown] {
		name, c := row(g)
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", name, c.Lines, c.Changed, diffCounts(c))
	}
	note := fmt.Sprintf("(%s unchanged", count(len(groups)-changed, noun))
	if shown < changed {
		note += fmt.Sprintf("; %d more changed, not shown: --top", changed-shown)
	}
	fmt.Fprintln(w, note+")")
}

// diffCounts writes the statuses whose count differs: "200: 25 → 5, 429:
// 0 → 20". When none does, but lines changed (as many went one way as the
// other), it writes every status of the group.
func diffCounts(c Change) string {
	var parts, all []string
	for _, s := range statuses(c.Baseline, c.Candidate) {
		b, n := c.Baseline[s], c.Candidate[s]
		part := fmt.Sprintf("%d: %d → %d", s, b, n)
		if b != n {
			parts = append(parts, part)
		}
		all = append(all, part)
	}
	if len(parts) == 0 {
		parts = all
	}
	return strings.Join(parts, ", ")
}

// statuses returns the statuses of a and b, sorted.
func statuses(a, b Counts) []int {
	all := slices.Collect(maps.Keys(a))
	for s := range b {
		if _, ok := a[s]; !ok {
			all = append(all, s)
		}
	}
	slices.Sort(all)
	return all
}

// percent writes part of all as " (n.n%)", or "" when all is 0.
func percent(part, all int64) string {
	if all == 0 {
		return ""
	}
	return fmt.Sprintf(" (%.1f%%)", 100*float64(part)/float64(all))
}

// count writes n and the noun, plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// orNone returns s, or none when s is empty.
func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
