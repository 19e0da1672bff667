package policy

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// batches recycles the state work of a request, so that an evaluation does
// not allocate it.
var batches = sync.Pool{New: func() any { return new(Batch) }}

// Evaluate decides one request at now, in the order of SPEC §3: WAF, route,
// API key, token buckets, quota. st holds the limits' state; keys finds
// run-time API keys and may be nil.
//
// A rejected request consumes nothing but WAF rate counts: the buckets and
// the quota are checked and taken in one st.Apply call. An error means st or
// keys could not be reached, wrapped in ErrKeys or ErrState. With ErrKeys the
// decision is DenyUnavailable's; with ErrState it is the one made without the
// state: a denial found before it (a bad key), or an allow without limits
// (callers choose to fail open or closed).
func (p *Policy) Evaluate(now time.Time, r *Request, st State, keys Keys) (Decision, error) {
	d := Decision{Verdict: Allow, Status: 200, KeyHeader: p.keyHeader, Headers: p.Headers, Explain: p.Explain}

	path, ok := normalizePath(r.Path)
	if r.Method == "" || !ok {
		d.deny(400, ReasonInvalid, BodyBadRequest)
		d.Invalid = invalidTarget(r.Method, r.Path)
		return d, nil
	}
	d.Path = path
	ip, raw, ok := p.clientIP(r)
	if !ok {
		d.deny(400, ReasonInvalid, BodyBadRequest)
		d.Invalid = invalidAddr(raw)
		return d, nil
	}
	d.ClientIP = ip
	stage, known := p.stageFor(r)
	var route *Route
	if stage != nil {
		d.API, d.Stage = stage.API, stage.Stage
		route = stage.routes.match(r.Method, path)
		if route != nil {
			d.Route = route.Match
			d.Concurrency = route.Concurrency
		}
	}

	b := batches.Get().(*Batch)
	defer batches.Put(b)
	b.Reset()
	b.Deadline = r.Deadline

	keyValue, keyPresent := r.Headers[p.keyHeader]
	keyPresent = keyPresent && keyValue != ""
	var keyHash [sha256.Size]byte
	hashed := false
	hashKey := func() {
		if !hashed {
			keyHash = sha256.Sum256([]byte(keyValue))
			hashed = true
		}
	}

	// Step 1: WAF. Rate-based rules become hits that the state counts;
	// the first ip_set rule that ends evaluation is decided here.
	var wafRules [maxHits]*wafRule
	var terminal *wafRule // a block that answers unless a hit blocks first
	if route == nil || !route.wafSkip {
		ended := false
		for i := range p.waf.rules {
			w := &p.waf.rules[i]
			if w.rate != nil {
				if len(b.Hits) == maxHits {
					continue
				}
				if w.scope != nil && w.scope.match(r.Method, path) == nil {
					continue
				}
				h := Hit{Key: Key{Limit: w.rate.id}, Limit: w.rate.limit, Window: w.rate.window}
				switch w.rate.key {
				case rateIP:
					h.Key.Addr = w.rate.addr(ip)
				case rateIPPath:
					h.Key.Addr, h.Key.Subject = w.rate.addr(ip), counterSubject(path)
				case rateHeader:
					v, ok := r.Headers[w.rate.header]
					if !ok {
						continue
					}
					h.Key.Subject = counterSubject(v)
				case rateAPIKey:
					if !keyPresent {
						continue
					}
					hashKey()
					// The hash, never the value: its first 128 bits, held
					// as an address so that no string is made for it (2^64
					// keys before two are likely to share a counter).
					h.Key.Addr = netip.AddrFrom16([16]byte(keyHash[:16]))
				}
				if w.action == wafCount {
					h.Limit = 1<<63 - 1 // counted, never blocks
				}
				wafRules[len(b.Hits)] = w
				b.Hits = append(b.Hits, h)
				continue
			}
			if !w.set.Contains(ip) {
				continue
			}
			switch w.action {
			case wafAllow:
				ended = true
			case wafBlock:
				terminal, ended = w, true
			case wafCount:
				if d.Counted == "" {
					d.Counted = w.reason
				}
			}
			if ended {
				break
			}
		}
		if !ended && p.waf.defaultAction == wafBlock {
			terminal = &defaultBlock
		}
	}

	// Steps 2 and 3, decided locally; a denial here still lets the WAF
	// hits above be counted.
	var pre Decision
	predeny := false
	switch {
	case terminal != nil:
		pre, predeny = d, true
		pre.denyWAF(terminal)
	case !known || (route == nil && stage != nil && stage.unknownDeny):
		pre, predeny = d, true
		pre.deny(403, ReasonRouteUnknown, BodyMissingToken)
	}
	var plan *Plan
	var customer string
	if !predeny && route != nil && route.apiKey != KeyNone {
		reason := ReasonNone
		switch {
		case !keyPresent:
			if route.apiKey == KeyRequired {
				reason = ReasonKeyMissing
			}
		case !validKeyValue(keyValue):
			reason = ReasonKeyUnknown
		default:
			hashKey()
			k := p.keys[keyHash]
			if k == nil && keys != nil {
				var err error
				if k, err = keys.LookupKey(keyHash); err != nil {
					d.DenyUnavailable()
					return d, fmt.Errorf("%w: %w", ErrKeys, err)
				}
			}
			switch {
			case k == nil:
				reason = ReasonKeyUnknown
			case !k.Enabled:
				reason = ReasonKeyDisabled
			case !k.Expires.IsZero() && !now.Before(k.Expires):
				reason = ReasonKeyExpired
			default:
				if plan = p.planFor(k, stage); plan == nil {
					reason = ReasonKeyNoPlan
				} else {
					customer = k.Customer
					d.Customer, d.KeyID, d.Plan = k.Customer, k.ID, plan.Name
					d.StripKey = p.stripKey
				}
			}
		}
		if reason != ReasonNone {
			pre, predeny = d, true
			pre.deny(403, reason, BodyForbidden)
		}
	}
	if !predeny && route != nil && route.apiKey == KeyNone {
		// The header is ignored, but still removed when asked to.
		d.StripKey = p.stripKey && keyPresent
	}

	// Steps 4 and 5: the buckets and the quota, in one atomic step.
	var period time.Duration
	if !predeny {
		if plan != nil {
			if o, ok := plan.overrides[route]; ok {
				b.addBucket(TierPlan, o.throttle, Key{Limit: o.key, Subject: customer})
			} else if plan.throttle != nil {
				b.addBucket(TierPlan, *plan.throttle, Key{Limit: plan.throttleKey, Subject: customer})
			}
		}
		if route != nil && route.throttle != nil {
			b.addBucket(TierRoute, *route.throttle, Key{Limit: route.throttleKey})
		}
		if stage != nil && stage.throttle != nil {
			b.addBucket(TierStage, *stage.throttle, Key{Limit: stage.throttleKey})
		}
		if p.account != nil {
			b.addBucket(TierAccount, *p.account, Key{Limit: p.accountKey})
		}
		if plan != nil && plan.quota != nil {
			start, end := plan.quotaWindow(now)
			period = end.Sub(start)
			b.Ops = append(b.Ops, Op{
				Key:   Key{Limit: plan.quotaKey, Subject: customer, Period: start.Unix()},
				Tier:  TierQuota,
				Quota: plan.quota.Limit,
				End:   end,
			})
		}
		if route != nil && route.Concurrency > 0 && r.Lease != "" {
			b.Ops = append(b.Ops, Op{Key: Key{Limit: route.concurrencyKey}, Tier: TierConcurrency,
				Quota: int64(route.Concurrency), Lease: r.Lease})
		}
	}
	if plan != nil && !predeny {
		b.Usage = Key{Limit: plan.usageKey, Subject: customer, Period: utcDay(now)}
	}
	if len(b.Hits) > 0 || len(b.Ops) > 0 || b.Usage.Limit != "" {
		if err := st.Apply(now, b); err != nil {
			err = fmt.Errorf("%w: %w", ErrState, err)
			if predeny {
				return pre, err
			}
			if n := len(b.Ops); n > 0 && b.Ops[n-1].Tier == TierConcurrency {
				// The store may have taken the slot before the error
				// (a timeout): the caller releases it like a taken one,
				// and a release of a slot never taken is harmless.
				d.Slot, d.Lease = b.Ops[n-1].Key, r.Lease
			}
			return d, err
		}
		d.StateUsed, d.Local = true, b.Local
	}

	if b.Blocked >= 0 {
		d.denyWAF(wafRules[b.Blocked])
		return d, nil
	}
	for i, h := range b.Hits {
		if wafRules[i].action == wafCount && h.Count > wafRules[i].rate.limit && d.Counted == "" {
			d.Counted = wafRules[i].reason
		}
	}
	if predeny {
		pre.Counted, pre.StateUsed, pre.Local = d.Counted, d.StateUsed, d.Local
		return pre, nil
	}
	d.setLimits(b.Ops, period)
	if b.Taken {
		if n := len(b.Ops); n > 0 && b.Ops[n-1].Tier == TierConcurrency {
			d.Slot, d.Lease = b.Ops[n-1].Key, r.Lease
		}
	}
	if b.Taken || len(b.Ops) == 0 {
		return d, nil
	}
	status, reason, body := 429, ReasonNone, BodyTooManyRequests
	var wait time.Duration
	for i := range b.Ops {
		o := &b.Ops[i]
		if o.OK {
			continue
		}
		if reason == ReasonNone {
			reason = tierReasons[o.Tier]
			switch o.Tier {
			case TierQuota:
				body = BodyLimitExceeded
			case TierConcurrency:
				if status = route.concurrencyStatus; status == 503 {
					body = BodyUnavailable
				}
			}
		}
		wait = max(wait, o.Wait)
	}
	d.deny(status, reason, body)
	d.RetryAfter = finite(wait)
	return d, nil
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
	b.Ops = append(b.Ops, Op{Key: k, Tier: t, Throttle: th})
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
