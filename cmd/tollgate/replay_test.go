package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// lowerFree writes the payments example with its free plan lowered to one
// request in 1,000 s (burst 5) and returns the file.
func lowerFree(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	const free = "  free:\n    throttle: {rate: 10, burst: 20}\n"
	if !strings.Contains(string(raw), free) {
		t.Fatalf("%s has no %q", example, free)
	}
	cand := filepath.Join(t.TempDir(), "candidate.yaml")
	lowered := strings.Replace(string(raw), free, "  free:\n    throttle: {rate: 0.001, burst: 5}\n", 1)
	if err := os.WriteFile(cand, []byte(lowered), 0o644); err != nil {
		t.Fatal(err)
	}
	return cand
}

// TestReplayServedLog serves the payments example with a decision log (the
// real binary), sends it requests of the free key, without a key, on the
// public route and from a blocked network, stops it, and replays the log
// against a candidate that lowers the free plan to a burst of 5: the
// baseline is what the clients got, the candidate allows exactly 5 of the
// free key's requests and answers the others as before. With the candidate
// as baseline too, nothing changes; --json has SPEC §10's shape.
func TestReplayServedLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	p := startProc(t, example, "memory:", "--decision-log", logFile)
	got := map[int]int{}
	send := func(n int, ip, method, path, key string) {
		for range n {
			status, err := p.decide(checkRequest(ip, method, path, key))
			if err != nil {
				t.Fatal(err)
			}
			got[status]++
		}
	}
	send(25, "198.51.100.7", "POST", "/partners/p-1/transactions", freeKey)
	freeAllowed := got[200]
	send(4, "198.51.100.8", "POST", "/partners/p-1/transactions", "")
	send(6, "198.51.100.9", "POST", "/transactions", "")
	send(3, "203.0.113.9", "POST", "/transactions", "")
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, p.logs.String())
	}
	if freeAllowed < 20 || got[403] != 7 {
		t.Fatalf("the server answered %v (free key: %d allowed), want at least 20 of the free key's allowed, 7×403", got, freeAllowed)
	}

	cand := lowerFree(t)
	out, errOut, status := runArgs(t, "replay", "--policy", cand, logFile)
	if status != 0 {
		t.Fatalf("replay: exit %d: %s", status, errOut)
	}
	wantRows := []string{
		"replayed 38 lines of 1 file, ",
		fmt.Sprintf("changed:   %d of 38 answers", freeAllowed-5),
		fmt.Sprintf("\n200     %-8d  %-9d  -%d\n", got[200], 5+6, freeAllowed-5),
		"\n403     7         7          0\n",
		fmt.Sprintf("\n429     %-8d  20         +%d\n", got[429], freeAllowed-5),
		fmt.Sprintf("\n200 → 429  throttle:plan     %d\n", freeAllowed-5),
		fmt.Sprintf("\nfree  25     %-7d  200: %d → 5, 429: %d → 20\n", freeAllowed-5, freeAllowed, 25-freeAllowed),
		fmt.Sprintf("\npayments/prod POST /partners/{id}/transactions  29     %-7d  200: %d → 5, 429: %d → 20\n",
			freeAllowed-5, freeAllowed, 25-freeAllowed),
		fmt.Sprintf("\ninitech   25     %-7d  200: %d → 5, 429: %d → 20\n(1 customer unchanged)\n",
			freeAllowed-5, freeAllowed, 25-freeAllowed),
	}
	for _, want := range wantRows {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("a short replay printed on stderr: %q", errOut)
	}

	out, errOut, status = runArgs(t, "replay", "--policy", cand, "--baseline", cand, "--json", logFile)
	if status != 0 {
		t.Fatalf("replay --baseline --json: exit %d: %s", status, errOut)
	}
	checkReplayJSON(t, out)
}

// checkReplayJSON checks SPEC §10's shape of the report of the served log
// replayed with the candidate as baseline: nothing changes.
func checkReplayJSON(t *testing.T, out string) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &top); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, field := range []string{"lines", "baseline", "candidate", "by_customer", "changed", "by_plan", "by_route", "skipped", "unreplayable"} {
		if _, ok := top[field]; !ok {
			t.Errorf("the report lacks %q: %s", field, out)
		}
	}
	var r struct {
		Lines      int64
		Changed    int64
		Baseline   map[string]int64
		Candidate  map[string]int64
		ByCustomer []map[string]json.RawMessage `json:"by_customer"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"200": 11, "403": 7, "429": 20}
	if r.Lines != 38 || r.Changed != 0 || fmt.Sprint(r.Baseline) != fmt.Sprint(want) || fmt.Sprint(r.Candidate) != fmt.Sprint(want) {
		t.Errorf("got %d lines, %d changed, baseline %v, candidate %v; want 38, 0, both %v", r.Lines, r.Changed, r.Baseline, r.Candidate, want)
	}
	customers := map[string]string{}
	for _, c := range r.ByCustomer {
		var name string
		var base, cand map[string]int64
		if json.Unmarshal(c["customer"], &name) != nil || json.Unmarshal(c["baseline"], &base) != nil ||
			json.Unmarshal(c["candidate"], &cand) != nil {
			t.Fatalf("by_customer: got %s, want customer, baseline and candidate", c)
		}
		customers[name] = fmt.Sprint(base, cand)
	}
	wantCustomers := map[string]string{"initech": "map[200:5 429:20] map[200:5 429:20]",
		"": "map[200:6 403:7] map[200:6 403:7]"}
	if fmt.Sprint(customers) != fmt.Sprint(wantCustomers) {
		t.Errorf("got by_customer %v, want %v", customers, wantCustomers)
	}
}

// TestReplayErrors: no logs or no policy is a usage error; a bad candidate
// prints the errors tollgate check prints; a missing file names it; a
// malformed line is skipped and named by file and line.
func TestReplayErrors(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "d.log")
	good := `{"ts":"2026-11-20T12:00:00.000000000Z","api":"payments","stage":"prod","route":"GET /status","method":"GET","path":"/status","ip":"198.51.100.7","key_id":"","customer":"","plan":"","status":200,"reason":"","shadow":[]}`
	os.WriteFile(log, []byte(good+"\n{\"ts\": oops\n"+good+"\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 2\nheaders: loud\n"), 0o644)
	checkOut, _, _ := runArgs(t, "check", bad)
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	const rules = "  rules:                       # evaluated in the order written\n"
	if !strings.Contains(string(raw), rules) {
		t.Fatalf("%s has no %q", example, rules)
	}
	perClient := filepath.Join(dir, "per-client.yaml")
	os.WriteFile(perClient, []byte(strings.Replace(string(raw), rules, rules+
		"    - name: per-client\n      rate_based: {limit: 10, window: 1m, key: \"header:x-client\"}\n      action: block\n", 1)), 0o644)

	for _, c := range []struct {
		name   string
		args   []string
		status int
		stderr []string
		stdout []string
	}{
		{"no logs", []string{"--policy", example}, 2, []string{"name a candidate policy and decision logs"}, nil},
		{"no policy", []string{log}, 2, []string{"name a candidate policy and decision logs"}, nil},
		{"flag after the logs", []string{"--policy", example, log, "--json"}, 2, []string{`"--json" after the logs`}, nil},
		{"negative top", []string{"--policy", example, "--top", "-1", log}, 2, []string{"--top -1"}, nil},
		{"bad candidate", []string{"--policy", bad, log}, 1, []string{checkOut}, nil},
		{"bad baseline", []string{"--policy", example, "--baseline", bad, log}, 1, []string{checkOut}, nil},
		{"missing file", []string{"--policy", example, log, filepath.Join(dir, "nope.log")}, 1,
			[]string{filepath.Join(dir, "nope.log"), "no such file"}, nil},
		{"header rate rule", []string{"--policy", perClient, log}, 0,
			[]string{"tollgate replay: " + perClient + `: waf rule "per-client" counts by a request header, which the decision log does not have: it never counts in a replay` + "\n"},
			[]string{"replayed 2 lines of 1 file"}},
		{"malformed line", []string{"--policy", example, log}, 0,
			[]string{"tollgate replay: skipped " + log + ":2: not a decision log line: "},
			[]string{"replayed 2 lines of 1 file", "skipped 1 malformed line\n"}},
	} {
		out, errOut, status := runArgs(t, append([]string{"replay"}, c.args...)...)
		if status != c.status {
			t.Errorf("%s: got exit %d, want %d (%s)", c.name, status, c.status, errOut)
		}
		for _, want := range c.stderr {
			if !strings.Contains(errOut, want) {
				t.Errorf("%s: stderr %q lacks %q", c.name, errOut, want)
			}
		}
		for _, want := range c.stdout {
			if !strings.Contains(out, want) {
				t.Errorf("%s: stdout %q lacks %q", c.name, out, want)
			}
		}
	}
	if !regexp.MustCompile(`bad.yaml: version: .*\n.*bad.yaml: headers: `).MatchString(checkOut) {
		t.Errorf("check printed %q, want both errors", checkOut)
	}
}
