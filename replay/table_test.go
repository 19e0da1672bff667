package replay

import (
	"bytes"
	"strings"
	"testing"
)

// TestWriteTable: the table shows the totals, the changes and the groups
// that changed, the first top of them, and counts the others.
func TestWriteTable(t *testing.T) {
	r := run(t, Options{Candidate: busyCandidate(t), CandidateFile: "cand.yaml", Files: []string{writeLog(t, busyLog(600))}})
	var out bytes.Buffer
	if err := r.WriteTable(&out, 1); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"replayed 600 lines of 1 file, 2026-11-20T00:00:00.001Z to ",
		"baseline:  the logged answers\ncandidate: cand.yaml, replayed on fresh state\n",
		"STATUS  BASELINE  CANDIDATE  DIFFERENCE\n200     600       ",
		"200 → 429  throttle:plan     ",
		"PLAN   LINES  CHANGED  BASELINE → CANDIDATE\nbasic  600    ",
		"(0 plans unchanged)",
		"ROUTE                      LINES  CHANGED  BASELINE → CANDIDATE\nshop/prod GET /items/{id}  600  ",
		"(0 customers unchanged; 2 more changed, not shown: --top)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the table lacks %q:\n%s", want, got)
		}
	}
	t.Logf("\n%s", got)
}

// TestDiffCounts: a group's statuses whose counts differ, or all of them
// when lines changed both ways and the counts are the same.
func TestDiffCounts(t *testing.T) {
	for _, c := range []struct {
		change Change
		want   string
	}{
		{Change{Changed: 3, Baseline: Counts{200: 5, 403: 1}, Candidate: Counts{200: 2, 403: 1, 429: 3}}, "200: 5 → 2, 429: 0 → 3"},
		{Change{Changed: 2, Baseline: Counts{200: 5, 429: 1}, Candidate: Counts{200: 5, 429: 1}}, "200: 5 → 5, 429: 1 → 1"},
		{Change{Baseline: Counts{200: 5}, Candidate: Counts{200: 5}}, "200: 5 → 5"},
	} {
		if got := diffCounts(c.change); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.change, got, c.want)
		}
	}
}
