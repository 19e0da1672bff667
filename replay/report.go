package replay

import (
	"cmp"
	"slices"
	"time"
)

// Counts is a number of lines by HTTP status; in JSON {"200":n,"429":n}.
type Counts map[int]int64

// Report is what a replay found: the answers of the baseline (the logged
// ones, or those of Options.Baseline) and of the candidate, in all and per
// plan, route and customer. Its JSON is SPEC §10's shape (lines, baseline,
// candidate, by_customer) and more.
//
// The groups are those of the baseline's answers: the logged plan, route
// and customer, or with Options.Baseline the ones of its decisions; a
// request that the candidate gives another plan (a key moved) stays in its
// baseline plan's group. Each list is sorted by Changed, most first, then
// by name, and holds every group (WriteTable shows the first few).
type Report struct {
	Lines      int64            `json:"lines"`
	Baseline   Counts           `json:"baseline"`
	Candidate  Counts           `json:"candidate"`
	ByCustomer []CustomerChange `json:"by_customer"`

	// Changed is the number of lines whose status differs.
	Changed int64 `json:"changed"`
	// Changes lists the changed lines by baseline status, candidate
	// status and the candidate's reason, most first.
	Changes []Transition  `json:"changes"`
	ByPlan  []PlanChange  `json:"by_plan"`
	ByRoute []RouteChange `json:"by_route"`

	// From and To are the first and last instants replayed.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Files are the logs read; BaselinePolicy is the baseline's policy
	// file ("": the logged answers), CandidatePolicy the candidate's.
	Files           []string `json:"files"`
	BaselinePolicy  string   `json:"baseline_policy"`
	CandidatePolicy string   `json:"candidate_policy"`
	// Skipped counts the malformed lines skipped; Late the lines that came
	// after the reorder window and were replayed late (Window).
	Skipped int64 `json:"skipped"`
	Late    int64 `json:"late"`
	// Unreplayable counts the lines left out of the comparison (and of
	// Lines): denied 503 store:error without a key id, they do not say
	// which key, if any, the request had.
	Unreplayable int64 `json:"unreplayable"`
}

// Change is the answers of a group of lines.
type Change struct {
	Lines     int64  `json:"lines"`
	Changed   int64  `json:"changed"`
	Baseline  Counts `json:"baseline"`
	Candidate Counts `json:"candidate"`
}

// CustomerChange is the answers of one customer's lines ("": no key).
type CustomerChange struct {
	Customer string `json:"customer"`
	Change
}

// PlanChange is the answers of one plan's lines ("": no key).
type PlanChange struct {
	Plan string `json:"plan"`
	Change
}

// RouteChange is the answers of one route's lines: its stage and match
// string ("" when the request matched none).
type RouteChange struct {
	API   string `json:"api"`
	Stage string `json:"stage"`
	Route string `json:"route"`
	Change
}

// Transition counts the lines whose answer went from Baseline to Candidate,
// the candidate answering for Reason ("" when it allows).
type Transition struct {
	Baseline  int    `json:"baseline"`
	Candidate int    `json:"candidate"`
	Reason    string `json:"reason"`
	Lines     int64  `json:"lines"`
}

// group names the baseline's identity of a line.
type group struct {
	api, stage, route, plan, customer string
}

// routeKey is a route's group.
type routeKey struct{ api, stage, route string }

// transitionKey is a Transition's group.
type transitionKey struct {
	from, to int
	reason   string
}

// tally accumulates the report while the lines are replayed.
type tally struct {
	total       Change
	customers   map[string]*Change
	plans       map[string]*Change
	routes      map[routeKey]*Change
	transitions map[transitionKey]int64
	from, to    int64
	// unreplayable counts the lines left out (Report.Unreplayable).
	unreplayable int64
}

// newTally returns an empty tally.
func newTally() *tally {
	return &tally{total: newChange(), customers: map[string]*Change{}, plans: map[string]*Change{},
		routes: map[routeKey]*Change{}, transitions: map[transitionKey]int64{}, from: 1<<63 - 1, to: minInstant}
}

// newChange returns an empty Change, its Counts ready.
func newChange() Change { return Change{Baseline: Counts{}, Candidate: Counts{}} }

// add counts a line at nanos of group g, answered base by the baseline and
// cand (for reason) by the candidate.
func (t *tally) add(nanos int64, g *group, base, cand int, reason string) {
	t.from, t.to = min(t.from, nanos), max(t.to, nanos)
	t.total.add(base, cand)
	get(t.customers, g.customer).add(base, cand)
	get(t.plans, g.plan).add(base, cand)
	get(t.routes, routeKey{g.api, g.stage, g.route}).add(base, cand)
	if base != cand {
		t.transitions[transitionKey{base, cand, reason}]++
	}
}

// get returns m's Change for k, adding it.
func get[K comparable](m map[K]*Change, k K) *Change {
	c := m[k]
	if c == nil {
		n := newChange()
		c = &n
		m[k] = c
	}
	return c
}

// add counts one line answered base and cand.
func (c *Change) add(base, cand int) {
	c.Lines++
	c.Baseline[base]++
	c.Candidate[cand]++
	if base != cand {
		c.Changed++
	}
}

// report returns the Report of t.
func (t *tally) report() *Report {
	r := &Report{Lines: t.total.Lines, Baseline: t.total.Baseline, Candidate: t.total.Candidate,
		Changed: t.total.Changed, Changes: []Transition{}, Unreplayable: t.unreplayable}
	if t.total.Lines > 0 {
		r.From, r.To = time.Unix(0, t.from).UTC(), time.Unix(0, t.to).UTC()
	}
	for c, ch := range t.customers {
		r.ByCustomer = append(r.ByCustomer, CustomerChange{c, *ch})
	}
	for p, ch := range t.plans {
		r.ByPlan = append(r.ByPlan, PlanChange{p, *ch})
	}
	for k, ch := range t.routes {
		r.ByRoute = append(r.ByRoute, RouteChange{k.api, k.stage, k.route, *ch})
	}
	for k, n := range t.transitions {
		r.Changes = append(r.Changes, Transition{k.from, k.to, k.reason, n})
	}
	sortGroups(r.ByCustomer, func(c CustomerChange) (int64, string) { return c.Changed, c.Customer })
	sortGroups(r.ByPlan, func(c PlanChange) (int64, string) { return c.Changed, c.Plan })
	sortGroups(r.ByRoute, func(c RouteChange) (int64, string) { return c.Changed, routeLabel(c) })
	slices.SortFunc(r.Changes, func(a, b Transition) int {
		return cmp.Or(cmp.Compare(b.Lines, a.Lines), cmp.Compare(a.Baseline, b.Baseline),
			cmp.Compare(a.Candidate, b.Candidate), cmp.Compare(a.Reason, b.Reason))
	})
	if r.ByCustomer == nil {
		r.ByCustomer, r.ByPlan, r.ByRoute = []CustomerChange{}, []PlanChange{}, []RouteChange{}
	}
	return r
}

// sortGroups sorts groups by changed lines, most first, then by name.
func sortGroups[G any](groups []G, key func(G) (changed int64, name string)) {
	slices.SortFunc(groups, func(a, b G) int {
		ca, na := key(a)
		cb, nb := key(b)
		return cmp.Or(cmp.Compare(cb, ca), cmp.Compare(na, nb))
	})
}

// routeLabel names a route group: "api/stage METHOD /path", "(no route)"
// for a request of the stage that matched none, "(no stage)".
func routeLabel(c RouteChange) string {
	stage := c.API + "/" + c.Stage
	if c.API == "" && c.Stage == "" {
		stage = "(no stage)"
	}
	if c.Route == "" {
		if stage == "(no stage)" {
			return stage
		}
		return stage + " (no route)"
	}
	return stage + " " + c.Route
}
