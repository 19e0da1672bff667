package replay

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/decisionlog"
	"github.com/tollgate/tollgate/policy"
)

// busyLog returns n sorted lines of three customers (two keys of the policy
// file's and a run-time one) a few milliseconds apart. Under busyCandidate's
// plan (50 a second, burst 1) some are denied, and the order of the lines
// matters: a customer's later line replayed first takes the token that its
// earlier line would have had (a clock that goes back refills nothing).
func busyLog(n int) []decisionlog.Record {
	custs := [][3]string{{"k1", "c1", "basic"}, {"k2", "c2", "basic"}, {"rt", "c3", "basic"}}
	var recs []decisionlog.Record
	at := t0
	for i := range n {
		at = at.Add(time.Duration(1+i*7%23) * time.Millisecond)
		c := custs[i*5%7%3]
		recs = append(recs, keyed(at, c[0], c[1], c[2]))
	}
	return recs
}

func busyCandidate(t *testing.T) *policy.Policy {
	return shopPolicy(t, "  basic:\n    throttle: {rate: 50, burst: 1}\n    stages: [shop/prod]\n",
		policyKey("k1", "c1", "basic")+policyKey("k2", "c2", "basic"))
}

// shuffled returns recs with each run of four lines less than 300 ms
// apart reversed: the order concurrent decisions may queue their lines in.
func shuffled(recs []decisionlog.Record) []decisionlog.Record {
	out := slices.Clone(recs)
	for i := 0; i+4 <= len(out); i += 4 {
		if out[i+3].Time.Sub(out[i].Time) < 300*time.Millisecond {
			slices.Reverse(out[i : i+4])
		}
	}
	return out
}

// TestFilesMerged: the same lines spread over three files (two gzipped, one
// of them under a plain .log name, as a glob may find rotated files), each
// file out of order within the reorder window, replay as one sorted plain
// file does.
func TestFilesMerged(t *testing.T) {
	cand := busyCandidate(t)
	recs := busyLog(600)
	want := run(t, Options{Candidate: cand, Files: []string{writeLog(t, recs)}})
	if want.Candidate[429] == 0 || want.Changed == 0 {
		t.Fatalf("the sorted log has no 429: %+v", want.Candidate)
	}

	dir := t.TempDir()
	var parts [3][]decisionlog.Record
	for i, rec := range recs {
		// The first file's lines are the earliest third (a rotated
		// file), the other two interleave (two replicas' logs).
		f := 0
		if i >= len(recs)/3 {
			f = 1 + i%2
		}
		parts[f] = append(parts[f], rec)
	}
	files := []string{
		writeFile(t, dir, "decisions-2026-11-20T00-00-05.000.log", encode(t, shuffled(parts[0])), true),
		writeFile(t, dir, "b.log", encode(t, shuffled(parts[1])), false),
		writeFile(t, dir, "c.log.gz", encode(t, shuffled(parts[2])), true),
	}
	slices.Reverse(files)
	got := run(t, Options{Candidate: cand, Files: files})
	if got.Late != 0 {
		t.Errorf("got %d late lines, want 0", got.Late)
	}
	got.Files, want.Files = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestLateLine: a line more than the window before one already replayed is
// replayed late and counted.
func TestLateLine(t *testing.T) {
	// The line of t0+1s comes after t0+7s: 6 s, past the window. (After
	// t0+5s it would still be in it: t0+5s waits for a line a second
	// later.)
	recs := []decisionlog.Record{keyed(t0, "k1", "c1", "basic"), keyed(t0.Add(5*time.Second), "k1", "c1", "basic"),
		keyed(t0.Add(7*time.Second), "k1", "c1", "basic"), keyed(t0.Add(time.Second), "k1", "c1", "basic")}
	r := run(t, Options{Candidate: busyCandidate(t), Files: []string{writeLog(t, recs)}})
	if r.Lines != 4 || r.Late != 1 {
		t.Errorf("got %d lines, %d late, want 4 and 1", r.Lines, r.Late)
	}
	if !r.From.Equal(t0) || !r.To.Equal(t0.Add(7*time.Second)) {
		t.Errorf("got from %v to %v, want %v to %v", r.From, r.To, t0, t0.Add(7*time.Second))
	}
}

// TestMalformedLines: malformed lines are skipped, counted and named by
// file and line (a line of another format, one without "ts", a bad
// status, a line longer than the limit, and the last line cut short);
// blank lines are no lines.
func TestMalformedLines(t *testing.T) {
	good := encode(t, busyLog(3))
	lines := strings.SplitAfter(string(good), "\n")
	data := lines[0] + "not json\n" + lines[1] + "\n" + `{"method":"GET","status":200}` + "\n" +
		`{"ts":"2026-11-20T00:00:01Z","status":42}` + "\n" + `{"ts":"` + strings.Repeat("x", maxLine) + "\"}\n" +
		lines[2] + `{"ts":"2026-11-20T00:00:02.000000000Z","api":"sh`
	path := writeFile(t, t.TempDir(), "d.log", []byte(data), false)
	var warnings []string
	r := run(t, Options{Candidate: busyCandidate(t), Files: []string{path}, Warn: func(m string) { warnings = append(warnings, m) }})
	if r.Lines != 3 || r.Skipped != 5 {
		t.Errorf("got %d lines, %d skipped, want 3 and 5", r.Lines, r.Skipped)
	}
	want := []string{path + ":2: ", path + ":5: ", path + ":6: ", path + ":7: ", path + ":9: "}
	for i := range want {
		want[i] = "skipped " + want[i]
	}
	if len(warnings) != len(want) {
		t.Fatalf("got warnings %q, want %d", warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(warnings[i], w) || !strings.Contains(warnings[i], "not a decision log line") {
			t.Errorf("warning %d: got %.200q, want it to start %q", i, warnings[i], w)
		}
	}
	if !strings.Contains(warnings[2], "status 42") || !strings.Contains(warnings[1], `no "ts"`) {
		t.Errorf("got warnings %.300q, want the reasons named", warnings)
	}
}

// TestFileErrors: a missing file and a file with no decision in it are
// errors naming the file; an empty file is no lines.
func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, data, want string
	}{
		{"missing.log", "", "no such file"},
		{"policy.yaml", "version: 1\napis: {}\n", "no decision log line in the file (" + filepath.Join(dir, "policy.yaml") + ":1: not a decision log line"},
	} {
		path := filepath.Join(dir, c.name)
		if c.data != "" {
			writeFile(t, dir, c.name, []byte(c.data), false)
		}
		_, err := Run(context.Background(), Options{Candidate: busyCandidate(t), Files: []string{path}})
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one naming the file and %q", c.name, err, c.want)
		}
	}
	empty := writeFile(t, dir, "empty.log", nil, false)
	if r := run(t, Options{Candidate: busyCandidate(t), Files: []string{empty}}); r.Lines != 0 {
		t.Errorf("empty file: got %d lines", r.Lines)
	}
}

// TestPathsReplayAsLogged: the logged path (as routes matched it, escapes
// decoded but those of "%", "?", "#" and ";") is the path the replayed
// policy matches.
func TestPathsReplayAsLogged(t *testing.T) {
	s := newSide(busyCandidate(t), nil, newIdents())
	for _, path := range []string{"/items/1", "/items/a%25b", "/items/a%3Fb", "/items/a%23b", "/items/a%3Bb",
		"/items/é", "/items/.x", "/items/a b", "/items/%2541"} {
		rec := keyed(t0, "", "", "")
		rec.Path = path
		e := entryOf(t, rec)
		d, err := s.decide(e, "")
		if err != nil {
			t.Fatal(err)
		}
		if d.Path != path || d.Route != "GET /items/{id}" {
			t.Errorf("%q: got path %q route %q, want the same path and route GET /items/{id}", path, d.Path, d.Route)
		}
	}
}

// TestUnreadableAndUnknownStage: a line logged 400 (no path, or no client
// address) replays 400; a route:unknown line without a stage (Envoy named a
// stage the policy had not) replays route:unknown, not on the default
// stage.
func TestUnreadableAndUnknownStage(t *testing.T) {
	s := newSide(busyCandidate(t), nil, newIdents())
	noPath := decisionlog.Record{Time: t0, Method: "GET", IP: netip.MustParseAddr("198.51.100.7"), Status: 400, Reason: "request:invalid"}
	noIP := keyed(t0, "", "", "")
	noIP.IP, noIP.Status, noIP.Reason = netip.Addr{}, 400, "request:invalid"
	unknown := decisionlog.Record{Time: t0, Method: "GET", Path: "/status", IP: netip.MustParseAddr("198.51.100.7"),
		Status: 403, Reason: "route:unknown"}
	for _, rec := range []decisionlog.Record{noPath, noIP, unknown} {
		e := entryOf(t, rec)
		d, err := s.decide(e, "")
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != rec.Status || string(d.Reason) != rec.Reason {
			t.Errorf("%+v: got %d %s, want %d %s", rec, d.Status, d.Reason, rec.Status, rec.Reason)
		}
	}
}

// tenAtTenASecond returns a log of ten lines of one key 100 ms apart, and
// a candidate that allows ten a second (burst 1): every line is allowed,
// unless a line is replayed twice.
func tenAtTenASecond(t *testing.T) (*policy.Policy, []byte) {
	var recs []decisionlog.Record
	for i := range 10 {
		recs = append(recs, keyed(t0.Add(time.Duration(i)*100*time.Millisecond), "k1", "c1", "basic"))
	}
	cand := shopPolicy(t, "  basic:\n    throttle: {rate: 10, burst: 1}\n    stages: [shop/prod]\n", policyKey("k1", "c1", "basic"))
	return cand, encode(t, recs)
}

// TestSameFileTwice: a log named twice, by its name or through a symlink,
// is refused, naming it: replayed twice, its lines would double the rate
// every limit sees.
func TestSameFileTwice(t *testing.T) {
	cand, data := tenAtTenASecond(t)
	dir := t.TempDir()
	log := writeFile(t, dir, "decisions.log", data, false)
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(log, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{log, log}, log + " is named twice"},
		{[]string{log, link}, log + " and " + link + " are the same file"},
		{[]string{link, filepath.Join(dir, ".", "decisions.log")}, " are the same file"},
	} {
		r, err := Run(context.Background(), Options{Candidate: cand, Files: c.files})
		if err == nil {
			t.Errorf("%q: got %d lines, %d changed; want an error", c.files, r.Lines, r.Changed)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got error %q, want %q", c.files, err, c.want)
		}
	}
}

// TestRotatedLogBeingCompressed: lumberjack compresses a rotated log X.log
// by writing X.log.gz, then removing X.log. A glob that finds both, while
// X.log.gz is half-written or after it is complete, replays X.log once and
// skips X.log.gz, naming it; X.log.gz alone replays.
func TestRotatedLogBeingCompressed(t *testing.T) {
	cand, data := tenAtTenASecond(t)
	dir := t.TempDir()
	log := writeFile(t, dir, "decisions-2026-11-20T00-00-00.000.log", data, false)
	gz := writeFile(t, dir, "decisions-2026-11-20T00-00-00.000.log.gz", data, true)
	whole, err := os.ReadFile(gz)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{len(whole) / 2, len(whole)} {
		if err := os.WriteFile(gz, whole[:size], 0o644); err != nil {
			t.Fatal(err)
		}
		for _, files := range [][]string{{log, gz}, {gz, log}} {
			var warnings []string
			r, err := Run(context.Background(), Options{Candidate: cand, Files: files,
				Warn: func(m string) { warnings = append(warnings, m) }})
			if err != nil {
				t.Errorf("%d of %d bytes, %q: %v", size, len(whole), files, err)
				continue
			}
			if r.Lines != 10 || r.Changed != 0 || r.Skipped != 0 {
				t.Errorf("%d of %d bytes, %q: got %d lines, %d changed, %d skipped; want 10 lines, none changed or skipped",
					size, len(whole), files, r.Lines, r.Changed, r.Skipped)
			}
			want := "skipped " + gz + ": " + log + " is named too"
			if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
				t.Errorf("%d of %d bytes, %q: got warnings %q, want one starting %q", size, len(whole), files, warnings, want)
			}
		}
	}
	if r := run(t, Options{Candidate: cand, Files: []string{gz}}); r.Lines != 10 || r.Skipped != 0 {
		t.Errorf("%s alone: got %d lines, %d skipped; want 10 and 0", gz, r.Lines, r.Skipped)
	}
}

// TestGzipCutShort: a gzip stream that ends before its end (a file still
// being compressed, or a copy cut short) is a log whose last line is cut
// short: the lines before the cut replay, and the cut is skipped, counted
// and named by file and line, even in the gzip header.
func TestGzipCutShort(t *testing.T) {
	dir := t.TempDir()
	gz := writeFile(t, dir, "cut.log.gz", encode(t, busyLog(2000)), true)
	whole, err := os.ReadFile(gz)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{len(whole) / 2, 5} {
		if err := os.WriteFile(gz, whole[:size], 0o644); err != nil {
			t.Fatal(err)
		}
		var warnings []string
		r := run(t, Options{Candidate: busyCandidate(t), Files: []string{gz}, Warn: func(m string) { warnings = append(warnings, m) }})
		if r.Skipped != 1 || r.Lines >= 2000 || size > 5 && r.Lines < 100 {
			t.Errorf("%d bytes: got %d lines, %d skipped; want some of the 2000 lines, 1 skipped", size, r.Lines, r.Skipped)
		}
		want := fmt.Sprintf("skipped %s:%d: the gzip stream is cut short (unexpected EOF)", gz, r.Lines+1)
		if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
			t.Errorf("%d bytes: got warnings %q, want one starting %q", size, warnings, want)
		}
	}
}
