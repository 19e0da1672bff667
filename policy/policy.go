package policy

import (
	"crypto/sha256"
	"net/netip"
	"sync/atomic"
	"time"
)

// Policy is a compiled, validated policy file. It is immutable (its only
// mutable part is a cache safe for concurrent use): share it
// freely between goroutines and swap it whole on reload.
type Policy struct {
	// limits maps each limit's state key to its identity (see limitID).
	limits map[string]string
	// File is the name the policy was compiled from (for messages).
	File string

	account    *Throttle // nil: no account limit
	accountKey string    // Key.Limit of the account bucket
	// buckets lists the account, stage and route buckets (RateBuckets).
	buckets []RateBucket

	keyHeader string // lower-case
	stripKey  bool
	ip        ipSource

	// Headers is the rate-limit header mode (package envoy's doc, "Responses").
	Headers HeaderMode
	// Explain sends key:* reasons to clients.
	Explain bool

	stages       map[string]*Stage // by "api/stage"
	apis         map[string]*api
	hosts        map[string]*Stage // lower-case host without port
	defaultStage *Stage            // nil: none

	plans    map[string]*Plan
	keys     map[[sha256.Size]byte]*APIKey
	keysByID map[string]*APIKey
	// keysInIDOrder and keysInCustomerOrder hold the keys by id, and by
	// customer then id, for KeysAfter and CustomerKeysAfter.
	keysInIDOrder, keysInCustomerOrder []*APIKey

	waf waf

	// sinks holds notifications.sinks, by name.
	sinks []Sink
	// shadowLimits holds the field paths of the limits in shadow mode, in
	// file order (ShadowLimits).
	shadowLimits []string
}

// HeaderMode selects the rate-limit headers (package envoy's doc, "Responses").
type HeaderMode uint8

// Header modes.
const (
	HeadersIETF HeaderMode = iota
	HeadersLegacy
	HeadersBoth
	HeadersNone
)

// ipSource says where the client IP comes from.
type ipSource struct {
	kind    ipKind
	xffHops int
	header  string // lower-case
}

type ipKind uint8

const (
	ipPeer ipKind = iota
	ipXFF
	ipHeader
)

type api struct {
	name   string
	stages []*Stage // in file order
}

// Stage is one stage of an api, with its routes.
type Stage struct {
	// Name is "api/stage".
	Name       string
	API, Stage string

	throttle    *Throttle // stage-wide bucket; nil: none
	throttleKey string    // Key.Limit of the stage bucket
	bucket      int       // 1 + the bucket's position in Policy.buckets; 0: none
	unknownDeny bool
	routes      routeTable
	routeList   []*Route // in the order written
}

// KeyMode is a route's api_key setting.
type KeyMode uint8

// Key modes.
const (
	KeyNone KeyMode = iota
	KeyOptional
	KeyRequired
)

// Route is one compiled route of a stage.
type Route struct {
	// Match is the route's match string as written ("POST /transactions").
	Match  string
	Method string // upper case, or "ANY"
	// Pattern is the path part of Match.
	Pattern string

	throttle    *Throttle // route bucket (own throttle, else route_defaults); nil: none
	throttleKey string
	bucket      int // 1 + the bucket's position in Policy.buckets; 0: none
	apiKey      KeyMode
	wafSkip     bool
	// Concurrency is the in-flight cap (ext_proc only); 0: none.
	Concurrency int
	// concurrencyStatus answers a request over the cap: 429 or 503.
	concurrencyStatus int
	concurrencyKey    string
}

// Plan is a compiled usage plan.
type Plan struct {
	Name        string
	throttle    *Throttle // nil: no plan throttle
	throttleKey string
	quota       *Quota // nil: unlimited
	quotaKey    string
	usageKey    string // the Limit of the plan's usage-history counters
	stages      map[*Stage]bool
	// overrides holds per-route throttles, by route.
	overrides map[*Route]planOverride
	alerts    *Alerts // nil: no alerts
	// shadow is the plan's mode: shadow (SPEC §10), the default of its
	// throttles' and quota's own modes.
	shadow bool
	// period caches the quota period last computed, so that most
	// decisions skip the calendar arithmetic.
	period atomic.Pointer[period]
}

// period is a quota period [start, end).
type period struct{ start, end time.Time }

// quotaWindow returns pl.quota.Window(now), from the cache when now falls in
// the period last computed. pl.quota must not be nil.
func (pl *Plan) quotaWindow(now time.Time) (start, end time.Time) {
	if w := pl.period.Load(); w != nil && !now.Before(w.start) && now.Before(w.end) {
		return w.start, w.end
	}
	start, end = pl.quota.Window(now)
	pl.period.Store(&period{start, end})
	return start, end
}

type planOverride struct {
	throttle Throttle
	key      string
}

// Quota is a request quota per calendar period.
type Quota struct {
	Limit  int64
	Period Period
	// Location is the period's time zone (UTC by default).
	Location *time.Location
	// WeekStart is the first day of a week period.
	WeekStart time.Weekday
	// AnchorDay is the day of month a month period starts on, 1..31; on
	// shorter months the period starts on the month's last day.
	AnchorDay int
	// Shadow is mode: shadow (SPEC §10): the quota is counted but never
	// denies.
	Shadow bool
}

// Sink is a destination of quota events (notifications.sinks): a webhook.
type Sink struct {
	Name string
	// URL is the webhook's absolute http or https URL.
	URL string
	// SecretFile is the file that holds the HMAC secret the events are
	// signed with, as written in the policy (relative to the working
	// directory of the process that reads it); empty: unsigned. Package
	// policy never reads it.
	SecretFile string
	// Timeout bounds one delivery attempt.
	Timeout time.Duration
}

// Alerts is a usage plan's quota alerts.
type Alerts struct {
	// Thresholds are percents of the quota's limit (grants included),
	// 1..100, sorted, each once.
	Thresholds []int
	// Forecast asks for one event per period when the quota will run out
	// before the period ends at the recent rate.
	Forecast bool
	// Sinks names the sinks the plan's events go to, in the order written.
	Sinks []string
}

// Period is a quota period.
type Period uint8

// Periods.
const (
	Day Period = iota
	Week
	Month
)

var periodNames = [...]string{"day", "week", "month"}

func (p Period) String() string { return periodNames[p] }

// APIKey is an API key known by its hash.
type APIKey struct {
	ID       string
	Customer string // never empty: defaults to ID
	Name     string
	Hash     [sha256.Size]byte
	Plans    []string
	Enabled  bool
	Expires  time.Time // zero: never
	// Created is when a run-time key was created; zero for the policy
	// file's keys.
	Created time.Time
	// RotatedTo is the id of the key that a rotation made to replace this
	// run-time key; empty when it was never rotated. A rotated key works
	// until its grace ends (Expires), and is not rotated again.
	RotatedTo string
	// FromPolicy is set for keys of the policy file (read-only at run time).
	FromPolicy bool
}

// waf is the compiled WAF section.
type waf struct {
	rules         []wafRule
	defaultAction wafAction
	hasRate       bool
}

type wafAction uint8

const (
	wafAllow wafAction = iota
	wafBlock
	wafCount
)

type wafRule struct {
	name   string
	reason Reason // "waf:" + name
	action wafAction
	set    *ipSet // ip_set rules; nil for rate_based

	// rate_based
	rate  *rateRule
	scope *routeTable // nil: every request

	status int    // response status (default 403)
	body   string // response body (default BodyForbidden)
	// shadow is mode: shadow (SPEC §10): the rule is evaluated and its
	// rate counted, but a request it would block goes on.
	shadow bool
}

type rateRule struct {
	limit  int64
	window time.Duration
	key    rateKey
	header string // lower-case, for rateHeader
	// v6bits is ipv6_prefix: IPv6 clients are counted per prefix of this
	// length (0: per address).
	v6bits int
	id     string // Key.Limit of its counters
}

// addr returns the address a client at ip is counted under: ip itself, or
// for an IPv6 client of a rule with ipv6_prefix, its prefix.
func (rr *rateRule) addr(ip netip.Addr) netip.Addr {
	if rr.v6bits == 0 || !ip.Is6() {
		return ip
	}
	p, _ := ip.Prefix(rr.v6bits) // 1..128 on an IPv6 address: never fails
	return p.Addr()
}

type rateKey uint8

const (
	rateIP rateKey = iota
	rateHeader
	rateAPIKey
	rateIPPath
)

// ipSet is a set of CIDR prefixes, looked up by masking the address to each
// prefix length present.
type ipSet struct {
	v4, v6 map[netip.Prefix]struct{}
	bits4  []int // prefix lengths present, longest first
	bits6  []int
}

// Contains reports whether a is in the set.
func (s *ipSet) Contains(a netip.Addr) bool {
	a = a.Unmap()
	m, lens := s.v4, s.bits4
	if a.Is6() {
		m, lens = s.v6, s.bits6
	}
	for _, n := range lens {
		p, err := a.Prefix(n)
		if err != nil {
			continue
		}
		if _, ok := m[p]; ok {
			return true
		}
	}
	return false
}
