package admin

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// maxUsageDays bounds the days of one usage report (a leap year).
const maxUsageDays = 366

// MaxUsageCells bounds the [used, remaining] pairs, each a counter read or
// two, of one page of a usage report: a page holds at most
// MaxUsageCells/days customers (at least one), whatever its limit, and says
// where the next page starts. A page of a year-long report then reads
// about as much as one of 20 days for a thousand customers, and answers
// within a client's timeout also from Redis.
const MaxUsageCells = 20_000

// maxGrant bounds one grant.
const maxGrant = 1_000_000_000_000

// usageQuery is a usage report's query, checked.
type usageQuery struct {
	plan       *policy.Plan
	customer   string // "": a page of the customers with a key on the plan
	start, end string // as given
	first      time.Time
	days       int
	pg         page
	forecast   bool // ?forecast=true
}

// parseUsageQuery checks the query of GET /v1/usage against p.
func parseUsageQuery(p *policy.Policy, q map[string]string) (usageQuery, error) {
	var uq usageQuery
	var bad problems
	pg, err := pageParams(q)
	if err != nil {
		bad.add("%s", err)
	}
	uq.pg = pg
	_, hasLimit := q["limit"]
	if _, hasAfter := q["after"]; q["customer"] != "" && (hasLimit || hasAfter) {
		bad.add("query: limit and after page the customers of a report without customer")
	}
	uq.plan = p.Plan(q["plan"])
	if q["plan"] == "" {
		bad.add("query: plan: required")
	} else if uq.plan == nil {
		bad.add("query: plan: %q is not a usage plan (plans: %v)", q["plan"], p.PlanNames())
	}
	switch q["forecast"] {
	case "", "false":
	case "true":
		uq.forecast = true
	default:
		bad.add("query: forecast: %q: want true or false", q["forecast"])
	}
	if c, ok := q["customer"]; ok {
		bad.checkID("query: customer", "valid", c)
		uq.customer = c
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
	first, last := parseDay("start"), parseDay("end")
	uq.first, uq.start, uq.end = first, q["start"], q["end"]
	if len(bad) == 0 {
		uq.days = int(last.Sub(first)/day) + 1
		switch {
		case last.Before(first):
			bad.add("query: end %s is before start %s", q["end"], q["start"])
		case uq.days > maxUsageDays:
			bad.add("query: %s to %s is %d days; a report covers at most %d", q["start"], q["end"], uq.days, maxUsageDays)
		}
	}
	return uq, bad.err()
}

// usageReport returns the report that uq names, at now: used is the
// customer's requests admitted on the plan during the UTC day, from the
// usage-history counters (kept for a retention period, 31 days in the
// memory store); remaining is the plan's quota, plus the requests granted in
// the period, left at the end of the day (now, for today) in the quota
// period that holds it, with the plan's current limit (readSeries). Grants
// are known while the store keeps the period's counter (the current period;
// past ones in a store that keeps them).
func (a *API) usageReport(ctx context.Context, p *policy.Policy, uq usageQuery, now time.Time) (UsageAnswer, error) {
	var customers []string
	var next string
	if uq.customer != "" {
		customers = []string{uq.customer}
	} else {
		pg := uq.pg
		pg.limit = min(pg.limit, max(1, MaxUsageCells/uq.days))
		var err error
		if customers, next, err = customersPage(ctx, allKeys{a.cfg.Keys, p}, uq.plan.Name, pg); err != nil {
			return UsageAnswer{}, err
		}
	}
	ans := UsageAnswer{Plan: uq.plan.Name, Start: uq.start, End: uq.end, Items: make(map[string][]UsagePair, len(customers)), Next: next}
	for _, c := range customers {
		series, err := usageSeries(ctx, a.cfg.Counters, uq.plan, c, uq.first, uq.days, now)
		if err != nil {
			return UsageAnswer{}, err
		}
		ans.Items[c] = series
	}
	return ans, nil
}

// currentQuota returns customer's quota on pl in the period that holds now;
// ok is false when pl has no quota.
func currentQuota(c Counters, pl *policy.Plan, customer string, now time.Time) (v QuotaView, ok bool, err error) {
	q, ok := pl.Quota()
	if !ok {
		return v, false, nil
	}
	k, end, _ := pl.QuotaKey(customer, now)
	used, granted, err := c.Counter(k)
	if err != nil {
		return v, true, err
	}
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	v = QuotaView{Limit: q.Limit, Period: q.Period.String(), Timezone: loc.String(),
		PeriodStart: time.Unix(k.Period, 0).UTC(), Reset: end.UTC(),
		Granted: granted, Used: used, Remaining: max(q.Limit+granted-used, 0)}
	if q.Shadow {
		v.Mode = "shadow"
	}
	return v, true, nil
}

// Grant raises the customer's quota on the plan by the body's requests, for
// the current period only, and returns the quota that results.
func (a *API) Grant(ctx context.Context, customer string, body GrantBody) (QuotaView, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, now := a.cfg.Policy(), a.cfg.Now()
	var bad problems
	bad.checkID("path: customer", "valid", customer)
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
		return QuotaView{}, err
	}
	has, err := customerHasPlan(ctx, allKeys{a.cfg.Keys, p}, customer, pl.Name)
	if err != nil {
		return QuotaView{}, err
	}
	if !has {
		return QuotaView{}, errorf(ErrNotFound, "customer %q holds no key on plan %q", customer, pl.Name)
	}
	k, end, _ := pl.QuotaKey(customer, now)
	if err := a.cfg.Counters.Grant(k, body.Requests, end); err != nil {
		return QuotaView{}, err
	}
	v, _, err := currentQuota(a.cfg.Counters, pl, customer, now)
	if err != nil {
		return QuotaView{}, err
	}
	v.Customer, v.Plan = customer, pl.Name
	a.log.Info("admin: quota granted", "customer", customer, "plan", pl.Name, "requests", body.Requests,
		"period_start", v.PeriodStart, "granted", v.Granted)
	return v, nil
}

// Me returns the API key in the policy's key header of h, its plans,
// limits and quota use. A missing key is ErrUnauthenticated; an unknown,
// disabled or expired key errForbidden, with the reason only when the
// policy sets explain.
func (a *API) Me(h http.Header) (MeAnswer, error) {
	p, now := a.cfg.Policy(), a.cfg.Now()
	value := h.Get(p.KeyHeader())
	if value == "" {
		return MeAnswer{}, &Error{Kind: ErrUnauthenticated, Msg: fmt.Sprintf("missing API key (header %s)", p.KeyHeader()),
			Challenge: fmt.Sprintf(`ApiKey realm="tollgate", header=%q`, p.KeyHeader())}
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
		if k, err = a.cfg.Lookup.LookupKey(hash); err != nil {
			return MeAnswer{}, err
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
		return MeAnswer{}, errorf(errForbidden, "%s", reason)
	}
	ans := MeAnswer{KeyID: k.ID, Customer: k.Customer, Name: k.Name, Plans: []MePlan{}}
	if !k.Expires.IsZero() {
		t := k.Expires.UTC()
		ans.Expires = &t
	}
	for _, name := range k.Plans {
		pl := p.Plan(name)
		if pl == nil {
			continue // the plan left the policy; the key no longer has it
		}
		// The limits the customer has: a shadow one (SPEC §10) is the
		// operator's trial, not yet the customer's contract.
		mp := MePlan{Plan: name, Stages: pl.StageNames()}
		if t, ok := pl.Throttle(); ok && !t.Shadow {
			mp.Throttle = &ThrottleView{Rate: t.Rate(), Burst: t.Burst}
		}
		v, ok, err := currentQuota(a.cfg.Counters, pl, k.Customer, now)
		if err != nil {
			return MeAnswer{}, err
		}
		if ok && v.Mode == "" {
			mp.Quota = &v
			f, _, err := a.forecastOf(pl, k.Customer, now)
			if err != nil {
				return MeAnswer{}, err
			}
			mp.Forecast = &f
		}
		ans.Plans = append(ans.Plans, mp)
	}
	return ans, nil
}
