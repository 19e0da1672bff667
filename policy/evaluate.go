package policy

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Evaluate decides one request at now, in the order of the package doc's "The decision": WAF, route,
// API key, token buckets, quota. st holds the limits' state; keys finds
// run-time API keys and may be nil.
//
// A rejected request consumes nothing but WAF rate counts: the buckets and
// the quota are checked and taken in one st.Apply call. An error means st or
// keys could not be reached, wrapped in ErrKeys or ErrState. With ErrKeys
// the decision is DenyUnavailable's (a key that could not be checked is
// never a key that passed, whatever the caller's mode). With ErrState it is
// the one made without the state: a denial found before it (a bad key), or
// an allow without limits; the caller alone chooses to fail open or closed
// on it.
func (p *Policy) Evaluate(now time.Time, r *Request, st State, keys Keys) (Decision, error) {
	d := Decision{Verdict: Allow, Status: 200, KeyHeader: p.keyHeader, Headers: p.Headers, Explain: p.Explain}
	e := evaluations.Get().(*evaluation)
	defer evaluations.Put(e)
	e.reset(p, now, r)
	if !e.read(&d, r) {
		return d, nil
	}
	e.waf(&d, r)
	e.checkRoute()
	if err := e.checkKey(&d, keys); err != nil {
		// A key that could not be checked is never a key that passed:
		// the one answer to this failure, whatever the caller's mode.
		d.DenyUnavailable()
		return d, err
	}
	e.limits(r)
	if err := e.apply(&d, r, st); err != nil {
		return d, err
	}
	e.verdict(&d, r)
	return d, nil
}

// evaluations recycles the scratch of a request, its state batch included,
// so that an evaluation does not allocate it.
var evaluations = sync.Pool{New: func() any { return new(evaluation) }}

// evaluation is the scratch of one Evaluate: the batch handed to the state
// and what each step leaves for the next ones.
type evaluation struct {
	scratch
	b Batch
}

// scratch is what the steps of Evaluate pass on; reset zeroes it.
type scratch struct {
	p   *Policy
	now time.Time

	path  string     // as routes match it
	ip    netip.Addr // the client's, by the policy's ip source
	stage *Stage     // nil when the request has none
	known bool       // false when Envoy named a stage the policy does not have
	route *Route     // nil when no route matched

	keyValue   string // the API key header's value
	keyPresent bool   // the header is there and not empty
	keyHash    [sha256.Size]byte
	hashed     bool // keyHash is set

	// rules[i] is the rate-based rule of b.Hits[i].
	rules [maxHits]*wafRule
	// denied is a denial decided locally, before the state: a WAF block,
	// an unknown route, a bad key. The state is still called, so that the
	// WAF hits are counted, and the denial stands unless a hit blocks
	// first.
	denied denial

	plan     *Plan  // the key's plan that covers the stage
	customer string // the key's customer
	period   time.Duration

	// shadow lists, comma-separated, the reasons of the shadow limits
	// that would have denied the request (Decision.Shadow).
	shadow []byte
}

// denial is a denial decided before the state: by a WAF block rule, or else
// a 403 with reason and body; the zero denial is none.
type denial struct {
	waf    *wafRule
	reason Reason
	body   string
}

// set reports whether n is a denial.
func (n *denial) set() bool { return n.waf != nil || n.reason != ReasonNone }

// decide turns d into the denial n.
func (n *denial) decide(d *Decision) {
	if n.waf != nil {
		d.denyWAF(n.waf)
		return
	}
	d.deny(403, n.reason, n.body)
}

// reset readies e for a request of p at now.
func (e *evaluation) reset(p *Policy, now time.Time, r *Request) {
	e.scratch = scratch{p: p, now: now, shadow: e.shadow[:0]}
	e.b.Reset()
	e.b.Deadline = r.Deadline
}

// read reads the request into e and d: its path as routes match it and its
// client's address, the stage and route it belongs to, and its API key
// header. A request whose method, path or client address cannot be read is
// denied here (400, request:invalid) and read returns false.
func (e *evaluation) read(d *Decision, r *Request) bool {
	path, fault := normalizeTarget(r.Path)
	if r.Method == "" || fault != pathOK {
		d.deny(400, ReasonInvalid, BodyBadRequest)
		d.Invalid = invalidTarget(r.Method, r.Path, fault)
		return false
	}
	d.Path = path
	ip, raw, ok := e.p.clientIP(r)
	if !ok {
		d.deny(400, ReasonInvalid, BodyBadRequest)
		d.Invalid = invalidAddr(raw)
		return false
	}
	d.ClientIP = ip
	e.path, e.ip = path, ip
	e.stage, e.known = e.p.stageFor(r)
	if e.stage != nil {
		d.API, d.Stage, d.StageBucket = e.stage.API, e.stage.Stage, e.stage.bucket
		e.route = e.stage.routes.match(r.Method, path)
		if e.route != nil {
			d.Route, d.RouteBucket = e.route.Match, e.route.bucket
			d.Concurrency = e.route.Concurrency
		}
	}
	e.keyValue, e.keyPresent = r.Headers[e.p.keyHeader]
	e.keyPresent = e.keyPresent && e.keyValue != ""
	return true
}

// hashKey sets e.keyHash, the SHA-256 of the key header's value, once.
func (e *evaluation) hashKey() {
	if !e.hashed {
		e.keyHash = sha256.Sum256([]byte(e.keyValue))
		e.hashed = true
	}
}

// waf is step 1: the WAF, unless the route skips it. Rate-based rules
// become hits that the state counts; the first ip_set rule that ends
// evaluation is decided here: an allow ends it, a block is the request's
// denial unless a hit blocks first, a count names d.Counted.
func (e *evaluation) waf(d *Decision, r *Request) {
	if e.route != nil && e.route.wafSkip {
		return
	}
	ended := false
	for i := range e.p.waf.rules {
		w := &e.p.waf.rules[i]
		if w.rate != nil {
			e.addHit(w, r)
			continue
		}
		if !w.set.Contains(e.ip) {
			continue
		}
		switch {
		case w.shadow:
			e.addShadow(w.reason) // would block; goes on as if it had not matched
		case w.action == wafAllow:
			ended = true
		case w.action == wafBlock:
			e.denied.waf, ended = w, true
		case w.action == wafCount:
			if d.Counted == "" {
				d.Counted = w.reason
			}
		}
		if ended {
			break
		}
	}
	if !ended && e.p.waf.defaultAction == wafBlock {
		e.denied.waf = &defaultBlock
	}
}

// addHit adds the hit of the rate-based rule w to the batch, unless the
// batch is full, the request is out of w's scope, or it lacks what w counts
// by (a header, an API key).
func (e *evaluation) addHit(w *wafRule, r *Request) {
	if len(e.b.Hits) == maxHits {
		return
	}
	if w.scope != nil && w.scope.match(r.Method, e.path) == nil {
		return
	}
	h := Hit{Key: Key{Limit: w.rate.id}, Limit: w.rate.limit, Window: w.rate.window}
	switch w.rate.key {
	case rateIP:
		h.Key.Addr = w.rate.addr(e.ip)
	case rateIPPath:
		h.Key.Addr, h.Key.Subject = w.rate.addr(e.ip), counterSubject(e.path)
	case rateHeader:
		v, ok := r.Headers[w.rate.header]
		if !ok {
			return
		}
		h.Key.Subject = counterSubject(v)
	case rateAPIKey:
		if !e.keyPresent {
			return
		}
		e.hashKey()
		// The hash, never the value: its first 128 bits, held
		// as an address so that no string is made for it (2^64
		// keys before two are likely to share a counter).
		h.Key.Addr = netip.AddrFrom16([16]byte(e.keyHash[:16]))
	}
	h.Watch = w.action == wafCount || w.shadow // counted, never blocks (verdict compares)
	e.rules[len(e.b.Hits)] = w
	e.b.Hits = append(e.b.Hits, h)
}

// checkRoute is step 2, decided locally: a request for a stage Envoy named
// that the policy does not have, or for no route of a stage that denies
// unknown routes, is denied (403 route:unknown); a denial here still lets
// the WAF hits be counted.
func (e *evaluation) checkRoute() {
	if e.denied.set() {
		return
	}
	if !e.known || (e.route == nil && e.stage != nil && e.stage.unknownDeny) {
		e.denied = denial{reason: ReasonRouteUnknown, body: BodyMissingToken}
	}
}

// checkKey is step 3, decided locally: the API key of a route that takes
// one. A key missing where required, unknown, disabled, expired or without
// a plan for the stage is denied (403); a denial here still lets the WAF
// hits be counted. A good key names the customer and plan whose limits
// apply. An error is ErrKeys: the key could not be looked up.
func (e *evaluation) checkKey(d *Decision, keys Keys) error {
	switch {
	case e.denied.set():
		return nil
	case e.route == nil || e.route.apiKey == KeyNone:
		// No key is checked (an unknown route let through, a request
		// of no stage, a route without keys), but the header is still
		// removed when asked to: it must not reach the upstream.
		d.StripKey = e.p.stripKey && e.keyPresent
		return nil
	}
	reason := ReasonNone
	switch {
	case !e.keyPresent:
		if e.route.apiKey == KeyRequired {
			reason = ReasonKeyMissing
		}
	case !validKeyValue(e.keyValue):
		reason = ReasonKeyUnknown
	default:
		k, err := e.lookupKey(keys)
		if err != nil {
			return err
		}
		reason = e.useKey(d, k)
	}
	if reason != ReasonNone {
		e.denied = denial{reason: reason, body: BodyForbidden}
	}
	return nil
}

// lookupKey finds the request's key among the policy's keys, then among
// the run-time ones; nil when it is in neither.
func (e *evaluation) lookupKey(keys Keys) (*APIKey, error) {
	e.hashKey()
	k := e.p.keys[e.keyHash]
	if k == nil && keys != nil {
		var err error
		if k, err = keys.LookupKey(e.keyHash); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeys, err)
		}
	}
	return k, nil
}

// useKey returns why k (nil: unknown) cannot be used at e.now, or
// ReasonNone; then e and d hold its customer and plan.
func (e *evaluation) useKey(d *Decision, k *APIKey) Reason {
	switch {
	case k == nil:
		return ReasonKeyUnknown
	case !k.Enabled:
		return ReasonKeyDisabled
	case !k.Expires.IsZero() && !e.now.Before(k.Expires):
		return ReasonKeyExpired
	}
	if e.plan = e.p.planFor(k, e.stage); e.plan == nil {
		return ReasonKeyNoPlan
	}
	e.customer = k.Customer
	d.Customer, d.KeyID, d.Plan = k.Customer, k.ID, e.plan.Name
	d.StripKey = e.p.stripKey
	return ReasonNone
}

// limits is steps 4 and 5, for a request not denied already: the ops of the
// buckets (plan, route, stage, account), the quota and the route's
// concurrency cap, which apply carries out in one atomic step; and the
// usage counter of the key's customer.
func (e *evaluation) limits(r *Request) {
	if e.denied.set() {
		return
	}
	b, plan, route, stage := &e.b, e.plan, e.route, e.stage
	if plan != nil {
		if o, ok := plan.overrides[route]; ok {
			b.addBucket(TierPlan, o.throttle, Key{Limit: o.key, Subject: e.customer})
		} else if plan.throttle != nil {
			b.addBucket(TierPlan, *plan.throttle, Key{Limit: plan.throttleKey, Subject: e.customer})
		}
	}
	if route != nil && route.throttle != nil {
		b.addBucket(TierRoute, *route.throttle, Key{Limit: route.throttleKey})
	}
	if stage != nil && stage.throttle != nil {
		b.addBucket(TierStage, *stage.throttle, Key{Limit: stage.throttleKey})
	}
	if e.p.account != nil {
		b.addBucket(TierAccount, *e.p.account, Key{Limit: e.p.accountKey})
	}
	if plan != nil && plan.quota != nil {
		start, end := plan.quotaWindow(e.now)
		e.period = end.Sub(start)
		b.Ops = append(b.Ops, Op{
			Key:    Key{Limit: plan.quotaKey, Subject: e.customer, Period: start.Unix()},
			Tier:   TierQuota,
			Quota:  plan.quota.Limit,
			End:    end,
			Shadow: plan.quota.Shadow,
		})
	}
	if route != nil && route.Concurrency > 0 && r.Lease != "" {
		b.Ops = append(b.Ops, Op{Key: Key{Limit: route.concurrencyKey}, Tier: TierConcurrency,
			Quota: int64(route.Concurrency), Lease: r.Lease})
	}
	if plan != nil {
		b.Usage = Key{Limit: plan.usageKey, Subject: e.customer, Period: utcDay(e.now)}
	}
}

// apply hands the batch, when there is anything in it, to st: one atomic
// step that counts the WAF hits, then checks the ops and takes from them
// only when all of them admit the request. An error is ErrState; d is then
// the decision made without the state: the local denial, or an allow
// without limits naming the concurrency slot the store may have taken.
func (e *evaluation) apply(d *Decision, r *Request, st State) error {
	b := &e.b
	if len(b.Hits) == 0 && len(b.Ops) == 0 && b.Usage.Limit == "" {
		return nil
	}
	if err := st.Apply(e.now, b); err != nil {
		if e.denied.set() {
			e.denied.decide(d)
		} else if n := len(b.Ops); n > 0 && b.Ops[n-1].Tier == TierConcurrency {
			// The store may have taken the slot before the error
			// (a timeout): the caller releases it like a taken one,
			// and a release of a slot never taken is harmless.
			d.Slot, d.Lease = b.Ops[n-1].Key, r.Lease
		}
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	d.StateUsed, d.Local = true, b.Local
	return nil
}

// verdict is the last step, from the state's results: a WAF hit that
// blocked answers first, then the local denial (with d.Counted naming a
// count rule whose rate was exceeded); else d reports the limits, most
// constrained first, and the slot taken, and a request that a limit did
// not admit is denied (denyLimits).
func (e *evaluation) verdict(d *Decision, r *Request) {
	b := &e.b
	if b.Blocked >= 0 {
		d.denyWAF(e.rules[b.Blocked])
		return
	}
	// A hit's Limit is its rule's, or this replica's share of it when the
	// store decided locally.
	for i, h := range b.Hits {
		w := e.rules[i]
		switch {
		case h.Count <= h.Limit:
		case w.shadow:
			e.addShadow(w.reason)
		case w.action == wafCount && d.Counted == "":
			d.Counted = w.reason
		}
	}
	if e.denied.set() {
		e.denied.decide(d)
		return
	}
	d.setLimits(b.Ops, e.period)
	if b.Taken || len(b.Ops) == 0 {
		if n := len(b.Ops); n > 0 && b.Ops[n-1].Tier == TierConcurrency {
			d.Slot, d.Lease = b.Ops[n-1].Key, r.Lease
		}
		for i := range b.Ops {
			switch o := &b.Ops[i]; {
			case !o.Shadow:
			case o.OK:
				d.ShadowTook |= 1 << o.Tier
			default:
				e.addShadow(tierReasons[o.Tier])
			}
		}
		if len(e.shadow) > 0 {
			d.Shadow = string(e.shadow)
		}
		return
	}
	e.denyLimits(d)
}

// addShadow adds reason to the shadow limits that would have denied the
// request.
func (e *evaluation) addShadow(reason Reason) {
	if len(e.shadow) > 0 {
		e.shadow = append(e.shadow, ',')
	}
	e.shadow = append(e.shadow, reason...)
}

// denyLimits denies a request that a limit did not admit: the first such
// op names the reason (a quota answers Limit Exceeded, a concurrency cap
// with its route's status), the longest wait is Retry-After.
func (e *evaluation) denyLimits(d *Decision) {
	status, reason, body := 429, ReasonNone, BodyTooManyRequests
	var wait time.Duration
	for i := range e.b.Ops {
		o := &e.b.Ops[i]
		if o.OK || o.Shadow {
			continue
		}
		if reason == ReasonNone {
			reason = tierReasons[o.Tier]
			switch o.Tier {
			case TierQuota:
				body = BodyLimitExceeded
			case TierConcurrency:
				if status = e.route.concurrencyStatus; status == 503 {
					body = BodyUnavailable
				}
			}
		}
		wait = max(wait, o.Wait)
	}
	d.deny(status, reason, body)
	d.RetryAfter = finite(wait)
}

var tierReasons = [...]Reason{
	TierPlan:    ReasonThrottlePlan,
	TierRoute:   ReasonThrottleRoute,
	TierStage:   ReasonThrottleStage,
	TierAccount: ReasonThrottleAccount,
	TierQuota:   ReasonQuota,

	TierConcurrency: ReasonConcurrency,
}

// defaultBlock stands for waf.default_action: block.
var defaultBlock = wafRule{name: "default_action", reason: "waf:default_action", action: wafBlock}

// addBucket adds a bucket op to b.
func (b *Batch) addBucket(t Tier, th Throttle, k Key) {
	b.Ops = append(b.Ops, Op{Key: k, Tier: t, Throttle: th, Shadow: th.Shadow})
}

// utcDay returns the start of now's UTC day in Unix seconds.
func utcDay(now time.Time) int64 {
	s := now.Unix()
	return s - ((s%secondsPerDay)+secondsPerDay)%secondsPerDay
}

// finite returns d, or maxWait for a limit that never admits.
func finite(d time.Duration) time.Duration {
	if d == forever {
		return maxWait
	}
	return d
}

// planFor returns the plan of k that covers stage, or nil.
func (p *Policy) planFor(k *APIKey, stage *Stage) *Plan {
	for _, name := range k.Plans {
		if pl := p.plans[name]; pl != nil && pl.stages[stage] {
			return pl
		}
	}
	return nil
}

// maxSubject is the longest WAF counter subject (a header value, a path)
// kept as it is; a longer one is replaced by its digest.
const maxSubject = 64

// counterSubject returns s as the subject of a WAF counter's key: s itself
// when short, else NUL and the first 128 bits of its SHA-256 (NUL is in no
// header value or canonical path, so a digest never equals a value). A
// client that sends a long header or path then costs a counter no more
// than a short one does, in memory and in Redis (2^64 long values before
// two are likely to share a counter).
func counterSubject(s string) string {
	if len(s) <= maxSubject {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "\x00" + string(sum[:16])
}
