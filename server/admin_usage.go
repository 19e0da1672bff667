package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// maxUsageDays bounds the days of one usage report (a leap year).
const maxUsageDays = 366

// maxUsageCells bounds the [used, remaining] pairs, each a counter read or
// two, of one page of a usage report: a page holds at most
// maxUsageCells/days customers (at least one), whatever its limit, and says
// where the next page starts. A page of a year-long report then reads
// about as much as one of 20 days for a thousand customers, and answers
// within a client's timeout also from Redis.
const maxUsageCells = 20_000

// maxGrant bounds one grant.
const maxGrant = 1_000_000_000_000

// day is one UTC day.
const day = 24 * time.Hour

// usageAnswer is the body of GET /v1/usage, in the shape of AWS API
// Gateway's GetUsage: for each customer, one [used, remaining] pair per UTC
// day from start to end. remaining is null for a plan without a quota.
type usageAnswer struct {
	Plan  string              `json:"plan"`
	Start string              `json:"start"`
	End   string              `json:"end"`
	Items map[string][][2]any `json:"items"`
	// Next is the after of the next page of customers; absent on the last
	// page and when the report names its customer.
	Next string `json:"next,omitempty"`
}

// queryParams returns the query's single values, checking that every
// parameter is one of allowed and given once.
func queryParams(q url.Values, allowed ...string) (map[string]string, error) {
	out := make(map[string]string, len(q))
	for name, vs := range q {
		if !slices.Contains(allowed, name) {
			return nil, errorf(http.StatusBadRequest, "query: unknown parameter %q (want %v)", name, allowed)
		}
		if len(vs) != 1 {
			return nil, errorf(http.StatusBadRequest, "query: %s: given %d times", name, len(vs))
		}
		out[name] = vs[0]
	}
	return out, nil
}

// usage answers GET /v1/usage?plan=P&customer=C&start=YYYY-MM-DD&end=YYYY-MM-DD.
//
// used is the customer's requests admitted on the plan during the UTC day,
// from the usage-history counters (kept for a retention period, 31 days in
// the memory store). remaining is the plan's quota, plus the requests
// granted in the period, left at the end of the day (now, for today) in the
// quota period that holds it, with the plan's current limit. A day's usage
// counts towards the quota period that holds the end of that UTC day, so
// remaining is exact for periods that start at UTC midnight (timezone UTC,
// the default) and for the current period from today on, and counts whole
// UTC days otherwise. Grants are known while the store keeps the period's
// counter (the current period; past ones in a store that keeps them).
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	q, err := queryParams(r.URL.Query(), "plan", "customer", "start", "end", "limit", "after")
	if err != nil {
		s.failWith(w, err)
		return
	}
	p, now := s.policy.Load(), s.now()
	var bad problems
	pg, err := pageParams(q)
	if err != nil {
		bad.add("%s", err)
	}
	_, hasLimit := q["limit"]
	if _, hasAfter := q["after"]; q["customer"] != "" && (hasLimit || hasAfter) {
		bad.add("query: limit and after page the customers of a report without customer")
	}
	pl := p.Plan(q["plan"])
	if q["plan"] == "" {
		bad.add("query: plan: required")
	} else if pl == nil {
		bad.add("query: plan: %q is not a usage plan (plans: %v)", q["plan"], p.PlanNames())
	}
	if c, ok := q["customer"]; ok && !policy.ValidKeyID(c) {
		bad.add("query: customer: %q is not valid (%s)", c, policy.KeyIDRule)
	}
	parseDay := func(name string) time.Time {
		v, ok := q[name]
		if !ok {
			bad.add("query: %s: required (a UTC date such as 2026-11-01)", name)
			return time.Time{}
		}
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			bad.add("query: %s: %q is not a date such as 2026-11-01", name, v)
		}
		return t
	}
	start, end := parseDay("start"), parseDay("end")
	days := 0
	if len(bad) == 0 {
		days = int(end.Sub(start)/day) + 1
		switch {
		case end.Before(start):
			bad.add("query: end %s is before start %s", q["end"], q["start"])
		case days > maxUsageDays:
			bad.add("query: %s to %s is %d days; a report covers at most %d", q["start"], q["end"], days, maxUsageDays)
		}
	}
	if err := bad.err(); err != nil {
		s.failWith(w, err)
		return
	}

	ctx := r.Context()
	var customers []string
	var next string
	if c, ok := q["customer"]; ok {
		customers = []string{c}
	} else {
		pg.limit = min(pg.limit, max(1, maxUsageCells/days))
		if customers, next, err = s.customersPage(ctx, p, pl.Name, pg); err != nil {
			s.failWith(w, err)
			return
		}
	}
	ans := usageAnswer{Plan: pl.Name, Start: q["start"], End: q["end"], Items: make(map[string][][2]any, len(customers)), Next: next}
	for _, c := range customers {
		series, err := s.usageSeries(ctx, pl, c, start, days, now)
		if err != nil {
			s.failWith(w, err)
			return
		}
		ans.Items[c] = series
	}
	writeJSON(w, http.StatusOK, ans)
}

// usageSeries returns customer's [used, remaining] pairs on plan pl for the
// days UTC days from start (see usage).
// It stops when ctx is done (the client left, the server stops).
func (s *Server) usageSeries(ctx context.Context, pl *policy.Plan, customer string, start time.Time, days int, now time.Time) ([][2]any, error) {
	used := func(d time.Time) (int64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, _, err := s.store.Counter(pl.UsageKey(customer, d))
		return n, err
	}
	out := make([][2]any, 0, days)
	q, hasQuota := pl.Quota()
	today := now.UTC().Truncate(day)
	var current policy.Key // the current quota period's counter
	if hasQuota {
		current, _, _ = pl.QuotaKey(customer, now)
	}
	// endOf returns the instant whose quota period a day's usage counts
	// towards: the day's end, or now for today.
	endOf := func(d time.Time) time.Time {
		if d.Equal(today) {
			return now
		}
		return d.Add(day - time.Nanosecond)
	}
	var period policy.Key
	var periodUsed, granted, running int64
	for i := range days {
		d := start.AddDate(0, 0, i)
		n, err := used(d)
		if err != nil {
			return nil, err
		}
		if !hasQuota {
			out = append(out, [2]any{n, nil})
			continue
		}
		k, _, _ := pl.QuotaKey(customer, endOf(d))
		if i == 0 || k != period {
			period, running = k, 0
			if periodUsed, granted, err = s.store.Counter(k); err != nil {
				return nil, err
			}
			if i == 0 {
				// The days of the period before the report starts.
				// A period is at most a month long.
				for back := d.AddDate(0, 0, -1); !back.Before(d.AddDate(0, 0, -32)); back = back.AddDate(0, 0, -1) {
					if bk, _, _ := pl.QuotaKey(customer, endOf(back)); bk != k {
						break
					}
					m, err := used(back)
					if err != nil {
						return nil, err
					}
					running += m
				}
			}
		}
		running += n
		consumed := running
		if k == current && !d.Before(today) {
			// The quota counter itself: exact in any zone.
			consumed = periodUsed
		}
		out = append(out, [2]any{n, max(q.Limit+granted-consumed, 0)})
	}
	return out, nil
}

// grantBody is the body of POST /v1/usage/{customer}/grant.
type grantBody struct {
	Plan     string `json:"plan"`
	Requests int64  `json:"requests"`
}

// QuotaView is a customer's quota in the current period.
type QuotaView struct {
	Customer    string    `json:"customer,omitempty"`
	Plan        string    `json:"plan,omitempty"`
	Limit       int64     `json:"limit"`
	Period      string    `json:"period"`
	Timezone    string    `json:"timezone"`
	PeriodStart time.Time `json:"period_start"`
	Reset       time.Time `json:"reset"` // the period's end
	Granted     int64     `json:"granted"`
	Used        int64     `json:"used"`
	Remaining   int64     `json:"remaining"`
}

// currentQuota returns customer's quota on pl in the period that holds now;
// ok is false when pl has no quota.
func (s *Server) currentQuota(pl *policy.Plan, customer string, now time.Time) (v QuotaView, k policy.Key, ok bool, err error) {
	q, ok := pl.Quota()
	if !ok {
		return v, k, false, nil
	}
	k, end, _ := pl.QuotaKey(customer, now)
	used, granted, err := s.store.Counter(k)
	if err != nil {
		return v, k, true, err
	}
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	v = QuotaView{Limit: q.Limit, Period: q.Period.String(), Timezone: loc.String(),
		PeriodStart: time.Unix(k.Period, 0).UTC(), Reset: end.UTC(),
		Granted: granted, Used: used, Remaining: max(q.Limit+granted-used, 0)}
	return v, k, true, nil
}

// grant answers POST /v1/usage/{customer}/grant: the customer's quota on the
// plan grows by the requests for the current period only.
func (s *Server) grant(w http.ResponseWriter, r *http.Request) {
	var body grantBody
	if err := decodeBody(w, r, &body, false); err != nil {
		s.failWith(w, err)
		return
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	p, now := s.policy.Load(), s.now()
	customer := r.PathValue("customer")
	var bad problems
	if !policy.ValidKeyID(customer) {
		bad.add("path: customer: %q is not valid (%s)", customer, policy.KeyIDRule)
	}
	pl := p.Plan(body.Plan)
	switch {
	case body.Plan == "":
		bad.add("body: plan: required")
	case pl == nil:
		bad.add("body: plan: %q is not a usage plan (plans: %v)", body.Plan, p.PlanNames())
	default:
		if _, ok := pl.Quota(); !ok {
			bad.add("body: plan: %q has no quota to raise", body.Plan)
		}
	}
	if body.Requests <= 0 || body.Requests > maxGrant {
		bad.add("body: requests: %d is not between 1 and %d", body.Requests, int64(maxGrant))
	}
	if err := bad.err(); err != nil {
		s.failWith(w, err)
		return
	}
	has, err := s.customerHasPlan(r.Context(), p, customer, pl.Name)
	if err != nil {
		s.failWith(w, err)
		return
	}
	if !has {
		s.failWith(w, errorf(http.StatusNotFound, "customer %q holds no key on plan %q", customer, pl.Name))
		return
	}
	k, end, _ := pl.QuotaKey(customer, now)
	if err := s.store.Grant(k, body.Requests, end); err != nil {
		s.failWith(w, err)
		return
	}
	v, _, _, err := s.currentQuota(pl, customer, now)
	if err != nil {
		s.failWith(w, err)
		return
	}
	v.Customer, v.Plan = customer, pl.Name
	s.log.Info("admin: quota granted", "customer", customer, "plan", pl.Name, "requests", body.Requests,
		"period_start", v.PeriodStart, "granted", v.Granted)
	writeJSON(w, http.StatusOK, v)
}

// meAnswer is the body of GET /v1/me.
type meAnswer struct {
	KeyID    string     `json:"key_id"`
	Customer string     `json:"customer"`
	Name     string     `json:"name"`
	Expires  *time.Time `json:"expires"`
	Plans    []mePlan   `json:"plans"`
}

// mePlan is one of the caller's plans: its limits and, with a quota, the
// current period's use.
type mePlan struct {
	Plan     string        `json:"plan"`
	Stages   []string      `json:"stages"`
	Throttle *throttleView `json:"throttle"` // null: no plan throttle
	Quota    *QuotaView    `json:"quota"`    // null: unlimited
}

type throttleView struct {
	Rate  float64 `json:"rate"`
	Burst int64   `json:"burst"`
}

// me answers GET /v1/me for the API key in the policy's key header: the
// caller's key, plans, limits and quota use. It needs no admin token. A
// missing key is 401; an unknown, disabled or expired key 403, with the
// reason only when the policy sets explain.
func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	p, now := s.policy.Load(), s.now()
	value := r.Header.Get(p.KeyHeader())
	if value == "" {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`ApiKey realm="tollgate", header=%q`, p.KeyHeader()))
		fail(w, http.StatusUnauthorized, "missing API key (header %s)", p.KeyHeader())
		return
	}
	hash := sha256.Sum256([]byte(value))
	var k *policy.APIKey
	for _, id := range p.KeyIDs() {
		if pk := p.KeyByID(id); pk.Hash == hash {
			k = pk
			break
		}
	}
	if k == nil {
		var err error
		if k, err = s.keys.LookupKey(hash); err != nil {
			s.failWith(w, err)
			return
		}
	}
	reason := ""
	switch {
	case k == nil:
		reason = "unknown key"
	case !k.Enabled:
		reason = "key disabled"
	case !k.Expires.IsZero() && !now.Before(k.Expires):
		reason = "key expired"
	}
	if reason != "" {
		if !p.Explain {
			reason = "forbidden"
		}
		fail(w, http.StatusForbidden, "%s", reason)
		return
	}
	ans := meAnswer{KeyID: k.ID, Customer: k.Customer, Name: k.Name, Plans: []mePlan{}}
	if !k.Expires.IsZero() {
		t := k.Expires.UTC()
		ans.Expires = &t
	}
	for _, name := range k.Plans {
		pl := p.Plan(name)
		if pl == nil {
			continue // the plan left the policy; the key no longer has it
		}
		mp := mePlan{Plan: name, Stages: pl.StageNames()}
		if t, ok := pl.Throttle(); ok {
			mp.Throttle = &throttleView{Rate: t.Rate(), Burst: t.Burst}
		}
		v, _, ok, err := s.currentQuota(pl, k.Customer, now)
		if err != nil {
			s.failWith(w, err)
			return
		}
		if ok {
			mp.Quota = &v
		}
		ans.Plans = append(ans.Plans, mp)
	}
	writeJSON(w, http.StatusOK, ans)
}
