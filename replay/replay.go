package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

// Options configures Run.
type Options struct {
	// Candidate is the policy replayed; CandidateFile names it in the
	// report.
	Candidate     *policy.Policy
	CandidateFile string
	// Baseline, when set, is replayed too, on its own fresh state, and its
	// answers are the baseline; nil: the logged answers are.
	Baseline     *policy.Policy
	BaselineFile string
	// Files are the decision logs, plain or gzip, in any order.
	Files []string
	// Progress, when set, is called about every ProgressEvery (default
	// 2 s) while the replay runs; a replay shorter than that never calls
	// it.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// Warn, when set, receives a message on each line or file skipped
	// ("skipped file:line: ...", "skipped file: ...") and each WAF rule
	// that cannot count in a replay.
	Warn func(string)
}

// Progress is how far a replay has come.
type Progress struct {
	// Lines have been replayed in Elapsed; the last one's instant is At.
	Lines   int64
	Elapsed time.Duration
	At      time.Time
}

// DefaultProgressEvery is Options.ProgressEvery's default.
const DefaultProgressEvery = 2 * time.Second

// Run replays the lines of the files in time order, each under the
// candidate (and the baseline) at its logged instant, and reports the
// answers; the lines it cannot replay faithfully (503 store:error without
// a key id) are left out and counted (Report.Unreplayable). It reads the
// files as it goes: memory holds the reorder windows and the report's
// groups, never the files. An error is a file that cannot be read (or holds
// no decision at all, or is named twice), or ctx's; malformed lines are
// skipped and counted.
func Run(ctx context.Context, o Options) (*Report, error) {
	switch {
	case o.Candidate == nil:
		return nil, errors.New("replay: no candidate policy")
	case len(o.Files) == 0:
		return nil, errors.New("replay: no decision log named")
	}
	warnInert(o)
	m, err := openMerge(o.Files, o.Warn)
	if err != nil {
		return nil, err
	}
	defer m.close()
	ids := newIdents()
	cand := newSide(o.Candidate, o.Baseline, ids)
	var base *side
	if o.Baseline != nil {
		base = newSide(o.Baseline, nil, ids)
	}
	t := newTally()
	p := newProgress(o)
	for {
		e, err := m.next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		if e.unreplayable() {
			t.unreplayable++
			m.release(e)
			continue
		}
		if err := replayLine(e, ids, cand, base, t); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", o.Files[e.file], e.no, err)
		}
		m.release(e)
		if t.total.Lines%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			p.tick(t.total.Lines, t.to)
		}
	}
	r := t.report()
	r.Files, r.CandidatePolicy, r.BaselinePolicy = o.Files, o.CandidateFile, o.BaselineFile
	r.Skipped, r.Late = m.counts()
	return r, nil
}

// warnInert names to o.Warn the WAF rules of the candidate and the baseline
// that never count in a replay: rate-based rules keyed by a header (the log
// has no headers).
func warnInert(o Options) {
	if o.Warn == nil {
		return
	}
	for _, side := range []struct {
		p           *policy.Policy
		file, which string
	}{{o.Candidate, o.CandidateFile, "candidate"}, {o.Baseline, o.BaselineFile, "baseline"}} {
		if side.p == nil {
			continue
		}
		name := side.file
		if name == "" {
			name = "the " + side.which + " policy"
		}
		for _, rule := range side.p.HeaderRateRules() {
			o.Warn(fmt.Sprintf("%s: waf rule %q counts by a request header, which the decision log does not have: it never counts in a replay",
				name, rule))
		}
	}
}

// replayLine decides e under the candidate (and the baseline) and counts
// the answers in the groups of the baseline's identity.
func replayLine(e *entry, ids *idents, cand, base *side, t *tally) error {
	key := ids.value(e)
	cd, err := cand.decide(e, key)
	if err != nil {
		return fmt.Errorf("candidate: %w", err)
	}
	status := e.Status
	g := group{api: e.API, stage: e.Stage, route: e.Route, plan: e.Plan, customer: e.Customer}
	if base != nil {
		bd, err := base.decide(e, key)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		status = bd.Status
		g = group{api: bd.API, stage: bd.Stage, route: bd.Route, plan: bd.Plan, customer: bd.Customer}
	}
	t.add(e.nanos, &g, status, cd.Status, string(cd.Reason))
	return nil
}

// side is one policy replayed: its fresh state and its view of the keys.
type side struct {
	p      *policy.Policy
	st     *memory.Store
	keys   *keys
	header string
	req    policy.Request
}

// newSide returns p on fresh state, its keys found through ids; prev is
// the policy p follows (newKeys), or nil.
func newSide(p, prev *policy.Policy, ids *idents) *side {
	return &side{p: p, st: memory.New(), keys: newKeys(p, prev, ids), header: p.KeyHeader(),
		req: policy.Request{Headers: map[string]string{}}}
}

// decide evaluates e's request, with the key value key ("": none), at e's
// instant. No Lease: concurrency caps are not replayed (the log has no
// request ends).
func (s *side) decide(e *entry, key string) (policy.Decision, error) {
	e.request(&s.req, s.header, key)
	return s.p.Evaluate(e.at, &s.req, s.st, s.keys)
}

// progress calls Options.Progress about every ProgressEvery.
type progress struct {
	f            func(Progress)
	every        time.Duration
	start, after time.Time
}

// newProgress starts the clock of o's progress reports.
func newProgress(o Options) *progress {
	every := o.ProgressEvery
	if every <= 0 {
		every = DefaultProgressEvery
	}
	start := time.Now()
	return &progress{f: o.Progress, every: every, start: start, after: start.Add(every)}
}

// tick reports lines replayed up to the instant at (Unix nanoseconds), when
// the time has come.
func (p *progress) tick(lines, at int64) {
	if p.f == nil {
		return
	}
	now := time.Now()
	if now.Before(p.after) {
		return
	}
	p.after = now.Add(p.every)
	p.f(Progress{Lines: lines, Elapsed: now.Sub(p.start), At: time.Unix(0, at).UTC()})
}
