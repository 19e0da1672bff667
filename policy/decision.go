package policy

import (
	"net/netip"
	"time"
)

// Verdict is the outcome of a decision.
type Verdict uint8

const (
	// Allow lets the request through.
	Allow Verdict = iota
	// Deny answers the request with Decision.Status.
	Deny
)

func (v Verdict) String() string {
	if v == Allow {
		return "allow"
	}
	return "deny"
}

// Reason says which step of the decision answered a denial. WAF reasons are
// "waf:" followed by the rule name.
type Reason string

// Reasons (package doc, "Answers").
const (
	ReasonNone            Reason = ""
	ReasonInvalid         Reason = "request:invalid"
	ReasonRouteUnknown    Reason = "route:unknown"
	ReasonKeyMissing      Reason = "key:missing"
	ReasonKeyUnknown      Reason = "key:unknown"
	ReasonKeyDisabled     Reason = "key:disabled"
	ReasonKeyExpired      Reason = "key:expired"
	ReasonKeyNoPlan       Reason = "key:no-plan"
	ReasonThrottlePlan    Reason = "throttle:plan"
	ReasonThrottleRoute   Reason = "throttle:route"
	ReasonThrottleStage   Reason = "throttle:stage"
	ReasonThrottleAccount Reason = "throttle:account"
	ReasonQuota           Reason = "quota"
	ReasonConcurrency     Reason = "concurrency"
	// ReasonStore: the state or key store could not be reached; not a
	// denial of the policy (see Decision.DenyUnavailable).
	ReasonStore Reason = "store:error"
)

// IsKey reports whether r is one of the key:* reasons, which are sent to the
// client only with explain: true.
func (r Reason) IsKey() bool { return len(r) > 4 && r[:4] == "key:" }

// Response bodies of denials (package doc, "The decision").
const (
	BodyBadRequest      = `{"message":"Bad Request"}`
	BodyForbidden       = `{"message":"Forbidden"}`
	BodyMissingToken    = `{"message":"Missing Authentication Token"}`
	BodyTooManyRequests = `{"message":"Too Many Requests"}`
	BodyLimitExceeded   = `{"message":"Limit Exceeded"}`
	BodyUnavailable     = `{"message":"Service Unavailable"}`
)

// Tier names the level a limit belongs to; it is also the item name in the
// RateLimit and RateLimit-Policy headers.
type Tier uint8

// Tiers in the order the decision checks them.
const (
	TierPlan Tier = iota
	TierRoute
	TierStage
	TierAccount
	TierQuota
	// TierConcurrency is a route's in-flight cap (ext_proc only); it is
	// not a rate and sends no rate-limit header.
	TierConcurrency
)

var tierNames = [...]string{"plan", "route", "stage", "account", "quota", "concurrency"}

func (t Tier) String() string { return tierNames[t] }

// MaxLimits is the largest number of limits one request can meet: a plan
// bucket, a route bucket, a stage bucket, the account bucket, a quota and a
// concurrency cap.
const MaxLimits = 6

// Limit is the state of one limit as the decision saw it: after the take when
// the request was allowed, before it (nothing taken) when it was denied.
type Limit struct {
	Tier Tier
	// Quota is the limit's size: a bucket's burst, a quota's limit
	// (including any grant).
	Quota int64
	// Window is the time a bucket takes to fill from empty, or a quota's
	// period length.
	Window time.Duration
	// Remaining is how many more requests the limit admits now.
	Remaining int64
	// Reset is the time until a bucket is full again, or until the quota
	// period ends.
	Reset time.Duration
	// Wait is the time until the limit would admit one more request; zero
	// when it admits now.
	Wait time.Duration
}

// Decision is the answer to one request.
type Decision struct {
	Verdict Verdict
	// Status is the HTTP status: 200 when allowed, else 400, 403, 429 or a
	// WAF rule's custom status.
	Status int
	Reason Reason
	// Body is the JSON body of a denial.
	Body string
	// RetryAfter is the time until every failing limit would admit the
	// request; set on 429 and 503 answers only.
	RetryAfter time.Duration

	// Limits holds the NLimits limits that applied, most constrained first.
	Limits  [MaxLimits]Limit
	NLimits int

	// Path is the request's path as routes match it (without query
	// string, decoded, canonical: package doc, "Stage and route") and ClientIP the client's
	// address by the policy's ip source; both are empty when the request
	// could not be read. Invalid says what could not be read, on a
	// request:invalid denial.
	Path     string
	ClientIP netip.Addr
	Invalid  string

	// API and Stage name the stage the request was checked against (empty
	// when none); Route is the matched route's match string.
	API, Stage, Route string
	// StageBucket and RouteBucket are 1 + the positions of the stage's and
	// the route's buckets in Policy.RateBuckets() of the policy that made
	// the decision; 0 when there is none. Whether the request was counted
	// in them is in Limits.
	StageBucket, RouteBucket int
	// Customer, KeyID and Plan are set when an API key was used.
	Customer, KeyID, Plan string
	// Concurrency is the matched route's in-flight cap (0 = none); it is
	// enforced for requests with a Lease (ext_proc).
	Concurrency int
	// Slot is the concurrency slot the request took (its Limit is empty
	// when it took none), or may have taken when Evaluate failed with
	// ErrState; the caller releases it with State.Release(Slot, Lease) when
	// the request ends.
	Slot  Key
	Lease string
	// Counted names the first WAF count rule that matched (or whose rate
	// was exceeded), for logs and metrics; empty when none.
	Counted Reason
	// Shadow lists, comma-separated, the reasons of the shadow limits
	// (SPEC §10) that would have denied an allowed request: the WAF rules
	// first, then the limits in the order of the tiers ("waf:scanners",
	// "throttle:plan,quota"). Empty on a denial: a request denied anyway
	// is no extra denial.
	Shadow string
	// ShadowTook has bit 1<<Tier set for each shadow limit that took from
	// its bucket or quota (an allowed request that it admitted), for the
	// utilization of shadow buckets.
	ShadowTook uint8
	// StripKey is set when the API key header (KeyHeader) must be removed
	// before the request goes upstream.
	StripKey bool
	// StateUsed is set when the decision called the state store and it
	// answered: proof that the store is reachable.
	StateUsed bool
	// Local is set when the state store decided on this replica's own
	// state, with its share of each limit, because the state it shares
	// with other replicas could not be reached in time (README, "Many replicas";
	// --on-store-error local).
	Local bool

	// Copied from the policy the decision was made with, so that a
	// decision can be translated on its own.
	KeyHeader string     // lower-case API key header name
	Headers   HeaderMode // rate-limit header mode
	Explain   bool       // send key:* reasons to the client
}

// maxWait stands in for Retry-After, Wait and Reset of limits that never
// admit (rate 0 or burst 0, the "stop all traffic" switch): a client is told
// to come back in an hour. Every other wait is reported as it is, however
// long (a month quota, a very slow bucket).
const maxWait = time.Hour

// DenyUnavailable turns d into the answer for a request that could not be
// decided because a store could not be reached: 503 Service Unavailable with
// reason store:error, Retry-After 1s and no limits. What d knew of the stage,
// route and key stays, for logs and metrics.
func (d *Decision) DenyUnavailable() {
	d.deny(503, ReasonStore, BodyUnavailable)
	d.RetryAfter = time.Second
	d.NLimits = 0
	d.StripKey = false
}

// AppliedLimits returns the limits that applied, most constrained first.
func (d *Decision) AppliedLimits() []Limit { return d.Limits[:d.NLimits] }

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

// setLimits reports the ops as the decision's limits, most constrained
// (fewest remaining) first; ties keep the order of the tiers.
func (d *Decision) setLimits(ops []Op, period time.Duration) {
	n := 0
	for i := range ops {
		o := &ops[i]
		if o.Tier == TierConcurrency || o.Shadow {
			continue // not a rate, or not enforced: no rate-limit header
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
