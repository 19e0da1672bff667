package replay

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/decisionlog"
	"github.com/tollgate/tollgate/policy"
)

// bucket is the test's own token bucket, in integers: tokens in
// billionths, refilled by rate billionths a nanosecond (rate tokens a
// second), at most burst tokens, full before its first request.
type bucket struct {
	rate, burst  int64
	tokens, last int64
	used         bool
}

// admit takes a token at the instant at (Unix nanoseconds) if there is one.
func (b *bucket) admit(at int64) bool {
	const token = 1_000_000_000
	if !b.used {
		b.tokens, b.used = b.burst*token, true
	} else if at > b.last {
		b.tokens = min(b.burst*token, b.tokens+(at-b.last)*b.rate)
	}
	b.last = max(b.last, at)
	if b.tokens < token {
		return false
	}
	b.tokens -= token
	return true
}

// irregular returns n instants from start, with the gaps taken in turn from
// gaps, each a few nanoseconds off the millisecond.
func irregular(start time.Time, n int, gaps []time.Duration) []time.Time {
	out := make([]time.Time, n)
	at := start
	for i := range out {
		at = at.Add(gaps[i%len(gaps)] + time.Duration(i%3))
		out[i] = at
	}
	return out
}

// TestThrottleArithmetic: two customers (a policy file key and a run-time
// key) send requests at irregular instants, all allowed in the log; under a
// candidate plan of 2 requests a second, burst 3, replay's 429s are exactly
// those of the test's own bucket arithmetic over the logged instants, in
// all and per customer.
func TestThrottleArithmetic(t *testing.T) {
	cand := shopPolicy(t, "  basic:\n    throttle: {rate: 2, burst: 3}\n    stages: [shop/prod]\n",
		policyKey("k1", "c1", "basic"))
	ms := time.Millisecond
	times := map[string][]time.Time{
		"c1": irregular(t0, 60, []time.Duration{0, 120 * ms, 30 * ms, 700 * ms, 10 * ms, 250 * ms, 1500 * ms, 90 * ms, 400 * ms, 5 * ms}),
		"c2": irregular(t0.Add(77*ms), 45, []time.Duration{50 * ms, 50 * ms, 50 * ms, 900 * ms, 20 * ms, 300 * ms, 2 * time.Second}),
	}
	ids := map[string]string{"c1": "k1", "c2": "rt-2"}
	var recs []decisionlog.Record
	want := map[string]int64{}
	for c, ts := range times {
		b := bucket{rate: 2, burst: 3}
		for _, at := range ts {
			recs = append(recs, keyed(at, ids[c], c, "basic"))
			if !b.admit(at.UnixNano()) {
				want[c]++
			}
		}
	}
	slices.SortStableFunc(recs, func(a, b decisionlog.Record) int { return a.Time.Compare(b.Time) })
	r := run(t, Options{Candidate: cand, Files: []string{writeLog(t, recs)}})

	if r.Lines != 105 || r.Baseline[200] != 105 || len(r.Baseline) != 1 {
		t.Fatalf("got %d lines, baseline %v; want 105 lines, all 200", r.Lines, r.Baseline)
	}
	if want["c1"] == 0 || want["c2"] == 0 || want["c1"] == 60 || want["c2"] == 45 {
		t.Fatalf("the arithmetic predicts %v 429s: the instants test nothing", want)
	}
	if got := r.Candidate[429]; got != want["c1"]+want["c2"] {
		t.Errorf("got %d 429s, want %d (%v)", got, want["c1"]+want["c2"], want)
	}
	for c, n := range want {
		if g := customer(t, r, c); g.Candidate[429] != n || g.Candidate[200] != g.Lines-n || g.Changed != n {
			t.Errorf("customer %s: got %+v, want %d 429s", c, g, n)
		}
	}
	wantChange := []Transition{{Baseline: 200, Candidate: 429, Reason: "throttle:plan", Lines: want["c1"] + want["c2"]}}
	if !slices.Equal(r.Changes, wantChange) {
		t.Errorf("got changes %+v, want %+v", r.Changes, wantChange)
	}
}

// TestQuotaDay: a day quota lowered to 5 in the candidate: the 6th and later
// lines of a customer's UTC day are 429 quota, and the next day starts
// afresh (its 6th line is the next 429); a customer under the limit keeps
// every answer.
func TestQuotaDay(t *testing.T) {
	cand := shopPolicy(t, "  basic:\n    throttle: {rate: 1000, burst: 1000}\n    quota: {limit: 5, period: day}\n    stages: [shop/prod]\n",
		policyKey("k1", "c1", "basic"))
	day2 := t0.Add(24 * time.Hour)
	var recs []decisionlog.Record
	for i := range 8 { // 23:52 to 23:59 on the first day
		recs = append(recs, keyed(day2.Add(-time.Duration(8-i)*time.Minute), "k1", "c1", "basic"))
	}
	for i := range 4 {
		recs = append(recs, keyed(day2.Add(-time.Hour+time.Duration(i)*time.Second), "rt-2", "c2", "basic"))
	}
	for i := range 6 { // from midnight on
		recs = append(recs, keyed(day2.Add(time.Duration(i)*time.Second), "k1", "c1", "basic"))
	}
	slices.SortStableFunc(recs, func(a, b decisionlog.Record) int { return a.Time.Compare(b.Time) })
	r := run(t, Options{Candidate: cand, Files: []string{writeLog(t, recs)}})

	if g := customer(t, r, "c1"); g.Lines != 14 || g.Candidate[429] != 3+1 || g.Candidate[200] != 5+5 {
		t.Errorf("c1: got %+v, want 3 429s on the first day, 1 on the second", g)
	}
	if g := customer(t, r, "c2"); g.Changed != 0 || g.Candidate[200] != 4 {
		t.Errorf("c2: got %+v, want its 4 lines allowed", g)
	}
	want := []Transition{{Baseline: 200, Candidate: 429, Reason: "quota", Lines: 4}}
	if !slices.Equal(r.Changes, want) {
		t.Errorf("got changes %+v, want %+v", r.Changes, want)
	}
}

// keysCandidate has a free plan of one request (refilled in 1,000 s) and a
// roomy pro plan; the key "moved" is on pro.
func keysCandidate(t *testing.T) *policy.Policy {
	return shopPolicy(t, "  free:\n    throttle: {rate: 0.001, burst: 1}\n    stages: [shop/prod]\n"+
		"  pro:\n    throttle: {rate: 1000, burst: 1000}\n    stages: [shop/prod]\n",
		policyKey("moved", "mc", "pro"))
}

// TestKeys: a key id the candidate does not have replays as the log saw it
// (its customer, its plan), or key:no-plan when the candidate lacks the
// plan; a key the candidate moved to another plan uses that plan; the
// lines denied for their key stay denied, with the same reason.
func TestKeys(t *testing.T) {
	cand := keysCandidate(t)
	ms := time.Millisecond
	var recs []decisionlog.Record
	for i := range 5 {
		at := t0.Add(time.Duration(i) * 10 * ms)
		moved := keyed(at.Add(ms), "moved", "mc", "free") // the live policy had it on free
		if i > 0 {
			moved.Status, moved.Reason = 429, string(policy.ReasonThrottlePlan)
		}
		recs = append(recs, keyed(at, "rt", "rc", "free"), moved, keyed(at.Add(2*ms), "gold-key", "gc", "gold"))
	}
	reasons := []policy.Reason{policy.ReasonKeyMissing, policy.ReasonKeyUnknown, policy.ReasonKeyDisabled,
		policy.ReasonKeyExpired, policy.ReasonKeyNoPlan}
	for i, reason := range reasons {
		recs = append(recs, denied(t0.Add(time.Second+time.Duration(i)*ms), 403, reason))
	}
	r := run(t, Options{Candidate: cand, Files: []string{writeLog(t, recs)}})

	want := []Transition{
		{Baseline: 200, Candidate: 403, Reason: "key:no-plan", Lines: 5},
		{Baseline: 200, Candidate: 429, Reason: "throttle:plan", Lines: 4},
		{Baseline: 429, Candidate: 200, Reason: "", Lines: 4},
	}
	if !slices.Equal(r.Changes, want) {
		t.Errorf("got changes %+v, want %+v", r.Changes, want)
	}
	if g := customer(t, r, ""); g.Lines != 5 || g.Changed != 0 || g.Candidate[403] != 5 {
		t.Errorf("lines denied for their key: got %+v, want 5 lines, all still 403", g)
	}
	// Grouped by the logged plans: the moved key's lines are free's.
	var plans []string
	for _, g := range r.ByPlan {
		plans = append(plans, g.Plan)
	}
	if want := []string{"free", "gold", ""}; !slices.Equal(plans, want) {
		t.Errorf("got plan groups %q, want %q", plans, want)
	}
	// Each line's decision, as the candidate makes it.
	ids := newIdents()
	s := newSide(cand, nil, ids)
	for _, c := range []struct {
		rec                           decisionlog.Record
		status                        int
		reason, keyID, customer, plan string
	}{
		{keyed(t0, "rt", "rc", "free"), 200, "", "rt", "rc", "free"},
		{keyed(t0, "moved", "mc", "free"), 200, "", "moved", "mc", "pro"},
		{keyed(t0, "gold-key", "gc", "gold"), 403, "key:no-plan", "", "", ""},
		{denied(t0, 403, policy.ReasonKeyMissing), 403, "key:missing", "", "", ""},
		{denied(t0, 403, policy.ReasonKeyUnknown), 403, "key:unknown", "", "", ""},
		{denied(t0, 403, policy.ReasonKeyDisabled), 403, "key:disabled", "", "", ""},
		{denied(t0, 403, policy.ReasonKeyExpired), 403, "key:expired", "", "", ""},
		{denied(t0, 403, policy.ReasonKeyNoPlan), 403, "key:no-plan", "", "", ""},
	} {
		e := entryOf(t, c.rec)
		d, err := s.decide(e, ids.value(e))
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != c.status || string(d.Reason) != c.reason || d.KeyID != c.keyID || d.Customer != c.customer || d.Plan != c.plan {
			t.Errorf("%s %q: got %d %q key %q customer %q plan %q, want %d %q key %q customer %q plan %q",
				c.rec.KeyID, c.rec.Reason, d.Status, d.Reason, d.KeyID, d.Customer, d.Plan,
				c.status, c.reason, c.keyID, c.customer, c.plan)
		}
	}
}

// TestKeyRemovedByCandidate: with a baseline, a key id that the baseline's
// policy file has and the candidate's lacks was removed by the candidate:
// its requests are key:unknown under the candidate. Without a baseline the
// log cannot tell it from a run-time key, and it replays as one.
func TestKeyRemovedByCandidate(t *testing.T) {
	plans := "  basic:\n    throttle: {rate: 100, burst: 100}\n    stages: [shop/prod]\n"
	base := shopPolicy(t, plans, policyKey("k1", "c1", "basic")+policyKey("k2", "c2", "basic"))
	cand := shopPolicy(t, plans, policyKey("k2", "c2", "basic")) // k1 removed
	var recs []decisionlog.Record
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		recs = append(recs, keyed(at, "k1", "c1", "basic"), keyed(at, "k2", "c2", "basic"), keyed(at, "rt", "c3", "basic"))
	}
	log := writeLog(t, recs)

	r := run(t, Options{Candidate: cand, Baseline: base, Files: []string{log}})
	want := []Transition{{Baseline: 200, Candidate: 403, Reason: "key:unknown", Lines: 3}}
	if !slices.Equal(r.Changes, want) {
		t.Errorf("with the baseline: got changes %+v, want %+v", r.Changes, want)
	}
	if g := customer(t, r, "c1"); g.Changed != 3 || g.Candidate[403] != 3 {
		t.Errorf("with the baseline: customer c1 got %+v, want its 3 lines 403", g)
	}
	if r := run(t, Options{Candidate: cand, Files: []string{log}}); r.Changed != 0 {
		t.Errorf("without a baseline: got changes %+v, want none (k1 replays as a run-time key)", r.Changes)
	}
}

// TestStoreErrorWithoutKey: a line logged 503 store:error without a key id
// (the key store could not be reached, so the key was never resolved) is
// left out and counted, not replayed without a key: that would read as the
// candidate denying key:missing. A store:error line with a key id is
// replayed.
func TestStoreErrorWithoutKey(t *testing.T) {
	cand := shopPolicy(t, "  basic:\n    throttle: {rate: 100, burst: 100}\n    stages: [shop/prod]\n", policyKey("k1", "c1", "basic"))
	keyedDown := keyed(t0.Add(2*time.Millisecond), "k1", "c1", "basic")
	keyedDown.Status, keyedDown.Reason = 503, string(policy.ReasonStore)
	recs := []decisionlog.Record{keyed(t0, "k1", "c1", "basic"), denied(t0.Add(time.Millisecond), 503, policy.ReasonStore),
		keyedDown, denied(t0.Add(3*time.Millisecond), 503, policy.ReasonStore)}
	r := run(t, Options{Candidate: cand, Files: []string{writeLog(t, recs)}})
	want := []Transition{{Baseline: 503, Candidate: 200, Reason: "", Lines: 1}}
	if r.Lines != 2 || r.Unreplayable != 2 || !slices.Equal(r.Changes, want) {
		t.Errorf("got %d lines, %d unreplayable, changes %+v; want 2 lines, 2 unreplayable, changes %+v",
			r.Lines, r.Unreplayable, r.Changes, want)
	}
	var out strings.Builder
	if err := r.WriteTable(&out, 0); err != nil {
		t.Fatal(err)
	}
	if line := "\nleft out 2 lines logged 503 store:error without a key id ("; !strings.Contains(out.String(), line) {
		t.Errorf("the table lacks %q:\n%s", line, out.String())
	}
}

// perKeyWAF is a WAF rule that blocks an API key's requests past 3 a
// minute with a 429.
const perKeyWAF = "waf:\n  rules:\n    - name: per-key\n      rate_based: {limit: 3, window: 1m, key: api_key}\n" +
	"      action: block\n      response: {status: 429}\n"

// TestBadKeysCountedPerLine: the lines denied for their key name no key,
// so each is replayed with a key value of its own: a WAF rate rule keyed by
// api_key counts ten such lines (ten clients, ten bad keys) once each, not
// as one client's ten requests. The requests of one key id still share its
// counter. The values of the lines are not kept.
func TestBadKeysCountedPerLine(t *testing.T) {
	cand := shopPolicyWAF(t, perKeyWAF, policyKey("k1", "c1", "basic"))
	var recs []decisionlog.Record
	for i := range 10 {
		for j, reason := range []policy.Reason{policy.ReasonKeyUnknown, policy.ReasonKeyDisabled,
			policy.ReasonKeyExpired, policy.ReasonKeyNoPlan} {
			rec := denied(t0.Add(time.Duration(i)*time.Second+time.Duration(j)*time.Millisecond), 403, reason)
			rec.IP = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
			recs = append(recs, rec)
		}
		recs = append(recs, keyed(t0.Add(time.Duration(i)*time.Second+5*time.Millisecond), "k1", "c1", "basic"))
	}
	r := run(t, Options{Candidate: cand, Files: []string{writeLog(t, recs)}})
	want := []Transition{{Baseline: 200, Candidate: 429, Reason: "waf:per-key", Lines: 7}}
	if !slices.Equal(r.Changes, want) {
		t.Errorf("got changes %+v, want %+v (k1's 4th to 10th requests, and no line denied for its key)", r.Changes, want)
	}

	ids := newIdents()
	s := newSide(cand, nil, ids)
	e := entryOf(t, denied(t0, 403, policy.ReasonKeyDisabled))
	for i := range 1000 {
		e.at = t0.Add(time.Duration(i) * time.Second)
		if d, err := s.decide(e, ids.value(e)); err != nil || d.Reason != policy.ReasonKeyDisabled {
			t.Fatalf("line %d: got %s, %v; want key:disabled", i, d.Reason, err)
		}
	}
	if len(ids.values) != 0 || len(ids.byHash) != 0 || len(s.keys.found) != 0 {
		t.Errorf("after 1000 lines denied key:disabled: %d values, %d hashes, %d keys kept; want none",
			len(ids.values), len(ids.byHash), len(s.keys.found))
	}
}

// TestHeaderRateRuleWarned: a WAF rate rule keyed by a header never counts
// in a replay (the log has no headers): a rule that would block the 2nd
// request of a minute blocks none, and Run says so, naming the rule and the
// policy, of the candidate and of the baseline.
func TestHeaderRateRuleWarned(t *testing.T) {
	cand := shopPolicyWAF(t, "waf:\n  rules:\n    - name: per-client\n      rate_based: {limit: 1, window: 1m, key: \"header:x-client\"}\n"+
		"      action: block\n      response: {status: 429}\n", "")
	var recs []decisionlog.Record
	for i := range 10 {
		rec := denied(t0.Add(time.Duration(i)*time.Second), 200, policy.ReasonNone)
		rec.Route, rec.Path = "GET /status", "/status"
		recs = append(recs, rec)
	}
	var warnings []string
	r := run(t, Options{Candidate: cand, CandidateFile: "cand.yaml", Baseline: cand, Files: []string{writeLog(t, recs)},
		Warn: func(m string) { warnings = append(warnings, m) }})
	if r.Changed != 0 || r.Candidate[200] != 10 {
		t.Errorf("got candidate %v, %d changed; want 10 200s", r.Candidate, r.Changed)
	}
	want := []string{
		`cand.yaml: waf rule "per-client" counts by a request header, which the decision log does not have: it never counts in a replay`,
		`the baseline policy: waf rule "per-client" counts by a request header, which the decision log does not have: it never counts in a replay`,
	}
	if !slices.Equal(warnings, want) {
		t.Errorf("got warnings %q, want %q", warnings, want)
	}
}

// entryOf returns the entry replay reads from rec's line.
func entryOf(t *testing.T, rec decisionlog.Record) *entry {
	t.Helper()
	raw := encode(t, []decisionlog.Record{rec})
	e := new(entry)
	if err := e.parse(raw[:len(raw)-1]); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestBaselineSame: with the candidate as its baseline, no answer changes,
// whatever the log says; the groups are then the baseline decisions'
// (the moved key is in the pro group, where the log has it on free).
func TestBaselineSame(t *testing.T) {
	cand := keysCandidate(t)
	var recs []decisionlog.Record
	for i := range 20 {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		recs = append(recs, keyed(at, "rt", "rc", "free"), keyed(at, "moved", "mc", "free"),
			denied(at, 403, policy.ReasonKeyMissing))
	}
	r := run(t, Options{Candidate: cand, Baseline: cand, Files: []string{writeLog(t, recs)}})
	if r.Changed != 0 || len(r.Changes) != 0 || !maps.Equal(r.Baseline, r.Candidate) {
		t.Fatalf("got %d changed (%+v), baseline %v, candidate %v; want none", r.Changed, r.Changes, r.Baseline, r.Candidate)
	}
	if want := (Counts{200: 21, 429: 19, 403: 20}); !maps.Equal(r.Candidate, want) {
		t.Errorf("got %v, want %v", r.Candidate, want)
	}
	var plans []string
	for _, g := range r.ByPlan {
		plans = append(plans, g.Plan)
	}
	if want := []string{"", "free", "pro"}; !slices.Equal(plans, want) {
		t.Errorf("got plan groups %q, want %q", plans, want)
	}
}
