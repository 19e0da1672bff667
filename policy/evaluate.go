package policy

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strings"
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

func (d *Decision) deny(status int, reason Reason, body string) {
	d.Verdict, d.Status, d.Reason, d.Body = Deny, status, reason, body
}

func (d *Decision) denyWAF(w *wafRule) {
	status, body := w.status, w.body
	if status == 0 {
		status, body = 403, BodyForbidden
	}
	d.deny(status, w.reason, body)
	if status == 429 {
		d.RetryAfter = time.Second
		if w.rate != nil {
			d.RetryAfter = w.rate.window
		}
	}
}

// addBucket adds a bucket op to b.
func (b *Batch) addBucket(t Tier, th Throttle, k Key) {
	b.Ops = append(b.Ops, Op{Key: k, Tier: t, Throttle: th})
}

// setLimits reports the ops as the decision's limits, most constrained
// (fewest remaining) first; ties keep the order of the tiers.
func (d *Decision) setLimits(ops []Op, period time.Duration) {
	n := 0
	for i := range ops {
		o := &ops[i]
		if o.Tier == TierConcurrency {
			continue // not a rate: no rate-limit header
		}
		l := Limit{Tier: o.Tier, Remaining: o.Remaining, Reset: finite(o.Reset), Wait: finite(o.Wait)}
		if o.Tier == TierQuota {
			l.Quota, l.Window = o.Quota, period
		} else {
			l.Quota, l.Window = o.Throttle.Burst, finite(o.Throttle.Window())
		}
		j := n
		for j > 0 && d.Limits[j-1].Remaining > l.Remaining {
			d.Limits[j] = d.Limits[j-1]
			j--
		}
		d.Limits[j] = l
		n++
	}
	d.NLimits = n
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

// clientIP returns the client address by the policy's ip source.
func (p *Policy) clientIP(r *Request) (ip netip.Addr, raw string, ok bool) {
	raw = r.Peer
	switch p.ip.kind {
	case ipXFF:
		if xff, ok := r.Headers["x-forwarded-for"]; ok {
			if v, ok := xffEntry(xff, p.ip.xffHops); ok {
				raw = v
			}
		}
	case ipHeader:
		if v, ok := r.Headers[p.ip.header]; ok {
			raw = v
		}
	}
	ip, ok = parseIP(raw)
	return ip, raw, ok
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

// invalidTarget says what is unreadable in a request's method and path
// (Decision.Invalid); normalizePath refused the path or the method is
// empty.
func invalidTarget(method, target string) string {
	path, _, _ := strings.Cut(target, "?")
	path, _, _ = strings.Cut(path, "#")
	switch {
	case method == "" && target == "":
		return "no method and no path (no HTTP request attributes?)"
	case method == "":
		return "no method"
	case path == "":
		return "no path"
	case path[0] != '/':
		return fmt.Sprintf("path %q does not start with \"/\"", clip(path))
	case strings.IndexByte(path, 0) >= 0 || strings.Contains(path, "%00"):
		return "path holds a NUL byte"
	case strings.Contains(strings.ToUpper(path), "%2F"):
		return fmt.Sprintf("path %q holds an escaped slash (%%2F)", clip(path))
	}
	if undotted, ok := dropParams(path); !ok {
		return fmt.Sprintf("path %q has a dot segment with parameters (\"..;\"), which servers read in different ways", clip(path))
	} else if dec, ok := percentDecode(undotted); ok && ambiguousDots(dec) {
		return fmt.Sprintf("path %q has \"..\" after an empty segment, which servers read in different ways", clip(path))
	}
	return fmt.Sprintf("path %q holds a bad escape", clip(path))
}

// invalidAddr says why a client address is unreadable (Decision.Invalid).
func invalidAddr(raw string) string {
	if strings.TrimSpace(raw) == "" {
		return "no client address"
	}
	return fmt.Sprintf("client address %q is not an IP address", clip(raw))
}

// clip shortens s, which a client sent, to at most 64 bytes for a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// xffEntry returns the entry hops places from the right end of an
// X-Forwarded-For value; ok is false when there are not that many.
func xffEntry(xff string, hops int) (string, bool) {
	end := len(xff)
	for i := len(xff) - 1; i >= -1; i-- {
		if i >= 0 && xff[i] != ',' {
			continue
		}
		if hops == 0 {
			return xff[i+1 : end], true
		}
		hops--
		end = i
	}
	return "", false
}

// parseIP parses an address with or without a port ("192.0.2.1",
// "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]:80"). It picks the form
// first, so that the common address with a port costs no failed parse (and
// no error allocation). The address is returned without its zone
// (fe80::1%eth0 is fe80::1): the zone names the receiving host's interface,
// not the client, and a zoned address would be counted apart.
func parseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	var a netip.Addr
	var err error
	if withPort := strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1; withPort {
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	} else {
		a, err = netip.ParseAddr(s)
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// stageFor returns the stage a request belongs to (SPEC §2). known is false
// when Envoy named a stage the policy does not have.
func (p *Policy) stageFor(r *Request) (s *Stage, known bool) {
	if r.API != "" || r.Stage != "" {
		s := p.namedStage(r.API, r.Stage)
		return s, s != nil
	}
	if len(p.hosts) > 0 && r.Host != "" {
		if s, ok := p.hosts[hostName(r.Host)]; ok {
			return s, true
		}
	}
	return p.defaultStage, true
}

// namedStage finds the stage Envoy named by api and stage; stage may be
// "api/stage" on its own.
func (p *Policy) namedStage(apiName, stage string) *Stage {
	if apiName == "" {
		if strings.IndexByte(stage, '/') >= 0 {
			return p.stages[stage]
		}
		if len(p.apis) != 1 {
			return nil
		}
		for _, a := range p.apis {
			apiName = a.name
		}
	}
	a := p.apis[apiName]
	if a == nil {
		return nil
	}
	if stage == "" {
		if len(a.stages) == 1 {
			return a.stages[0]
		}
		if p.defaultStage != nil && p.defaultStage.API == apiName {
			return p.defaultStage
		}
		return nil
	}
	for _, s := range a.stages {
		if s.Stage == stage {
			return s
		}
	}
	return nil
}

// hostName returns host without its port, lower-case.
func hostName(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	for i := 0; i < len(host); i++ {
		if 'A' <= host[i] && host[i] <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}
