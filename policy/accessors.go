package policy

import (
	"net/netip"
	"slices"
	"sort"
	"time"
)

// KeyHeader returns the lower-case name of the API key header.
func (p *Policy) KeyHeader() string { return p.keyHeader }

// Plan returns the usage plan called name, or nil.
func (p *Policy) Plan(name string) *Plan { return p.plans[name] }

// PlanNames returns the names of the usage plans, sorted.
func (p *Policy) PlanNames() []string { return sortedNames(p.plans) }

// KeyByID returns the policy file's API key with the id, or nil. The key
// is shared: callers must not modify it.
func (p *Policy) KeyByID(id string) *APIKey { return p.keysByID[id] }

// KeyIDs returns the ids of the policy file's API keys, sorted.
func (p *Policy) KeyIDs() []string { return sortedNames(p.keysByID) }

// KeysAfter returns at most limit of the policy file's keys whose ids sort
// after after ("": from the first), in id order, in O(log n + limit). The
// keys are shared: callers must not modify them.
func (p *Policy) KeysAfter(after string, limit int) []*APIKey {
	keys := p.keysInIDOrder
	at := sort.Search(len(keys), func(i int) bool { return keys[i].ID > after })
	return keys[at:min(at+limit, len(keys)):min(at+limit, len(keys))]
}

// CustomerKeysAfter returns at most limit of the policy file's keys that
// sort after the customer and id given, in the order of customer, then id.
// The keys are shared: callers must not modify them.
func (p *Policy) CustomerKeysAfter(customer, id string, limit int) []*APIKey {
	keys := p.keysInCustomerOrder
	at := sort.Search(len(keys), func(i int) bool {
		k := keys[i]
		return k.Customer > customer || k.Customer == customer && k.ID > id
	})
	return keys[at:min(at+limit, len(keys)):min(at+limit, len(keys))]
}

// StageNames returns the "api/stage" names of the stages, sorted.
func (p *Policy) StageNames() []string { return sortedNames(p.stages) }

// Throttle returns the plan's throttle; ok is false when the plan has none.
func (pl *Plan) Throttle() (t Throttle, ok bool) {
	if pl.throttle == nil {
		return Throttle{}, false
	}
	return *pl.throttle, true
}

// Quota returns the plan's quota; ok is false when the plan has none
// (unlimited).
func (pl *Plan) Quota() (q Quota, ok bool) {
	if pl.quota == nil {
		return Quota{}, false
	}
	return *pl.quota, true
}

// QuotaKey returns the state key of the plan's quota counter for a customer
// in the period that holds now, and the period's end; ok is false when the
// plan has no quota.
func (pl *Plan) QuotaKey(customer string, now time.Time) (k Key, end time.Time, ok bool) {
	if pl.quota == nil {
		return Key{}, time.Time{}, false
	}
	start, end := pl.quotaWindow(now)
	return Key{Limit: pl.quotaKey, Subject: customer, Period: start.Unix()}, end, true
}

// QuotaWindow returns the plan's quota period that holds now: [start, end),
// the same on every replica (Quota.Window); ok is false when the plan has
// no quota.
func (pl *Plan) QuotaWindow(now time.Time) (start, end time.Time, ok bool) {
	if pl.quota == nil {
		return time.Time{}, time.Time{}, false
	}
	start, end = pl.quotaWindow(now)
	return start, end, true
}

// Alerts returns the plan's quota alerts; ok is false when it has none. The
// slices are shared: callers must not modify them.
func (pl *Plan) Alerts() (a Alerts, ok bool) {
	if pl.alerts == nil {
		return Alerts{}, false
	}
	return *pl.alerts, true
}

// PlanAlerts returns the quota alerts of the plan called name; ok is false
// when there is no such plan or it has no alerts. It does not allocate; the
// slices are shared: callers must not modify them.
func (p *Policy) PlanAlerts(name string) (a Alerts, ok bool) {
	if pl := p.plans[name]; pl != nil {
		return pl.Alerts()
	}
	return Alerts{}, false
}

// ShadowLimits returns the field paths of the limits in shadow mode (SPEC
// §10), in the order compiled: "usage_plans.trial.quota", "waf.rules[2]".
// A route_defaults throttle is listed once.
func (p *Policy) ShadowLimits() []string { return slices.Clone(p.shadowLimits) }

// HeaderRateRules returns the names of the WAF's rate-based rules that
// count by a request header (key: header:NAME), in the file's order.
func (p *Policy) HeaderRateRules() []string {
	var names []string
	for _, r := range p.waf.rules {
		if r.rate != nil && r.rate.key == rateHeader {
			names = append(names, r.name)
		}
	}
	return names
}

// Sinks returns notifications.sinks, sorted by name.
func (p *Policy) Sinks() []Sink { return slices.Clone(p.sinks) }

// Sink returns the sink called name; ok is false when there is none.
func (p *Policy) Sink(name string) (s Sink, ok bool) {
	for _, s := range p.sinks {
		if s.Name == name {
			return s, true
		}
	}
	return Sink{}, false
}

// StageNames returns the "api/stage" names of the plan's stages, sorted.
func (pl *Plan) StageNames() []string {
	names := make([]string, 0, len(pl.stages))
	for st := range pl.stages {
		names = append(names, st.Name)
	}
	slices.Sort(names)
	return names
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// LimitName returns the identity of the limit whose state key (Key.Limit) is
// id, such as "plan|pro|100000000/200"; empty when the policy has no such
// limit.
func (p *Policy) LimitName(id string) string { return p.limits[id] }

// UsageKey returns the key of the usage-history counter of customer on the
// plan for the UTC day that holds day (see Batch.Usage).
func (pl *Plan) UsageKey(customer string, day time.Time) Key {
	return Key{Limit: pl.usageKey, Subject: customer, Period: utcDay(day)}
}

// ValidKeyID reports whether s is a valid key id or customer name, as the
// policy file requires them: 1 to 64 letters, digits, "_", "." and "-", but
// not "." or ".." (a URL path segment of either names no key: a client or
// a proxy resolves /v1/keys/.. to /v1).
func ValidKeyID(s string) bool { return validName(s, 64) && s != "." && s != ".." }

// KeyIDRule describes the valid ids and customers, for messages.
const KeyIDRule = `1 to 64 letters, digits, "_", "." and "-", not "." or ".."`

// CheckKeyPlans checks the plans of a key created at run time by the rules
// of the policy file's api_keys[].plans: at least one, each a usage plan of
// p, none twice, no two covering the same stage. Every error is reported,
// as "body: plans[i]: <message>".
func (p *Policy) CheckKeyPlans(plans []string) error {
	c := &compiler{decoder: decoder{file: "body"}, p: p}
	items := make([]any, len(plans))
	for i, name := range plans {
		items[i] = name
	}
	c.keyPlans("plans", items)
	return c.err()
}

// DefaultStage returns the "api/stage" name of the default stage, or "".
func (p *Policy) DefaultStage() string {
	if p.defaultStage == nil {
		return ""
	}
	return p.defaultStage.Name
}

// Routes returns the routes of the stage named "api/stage" in the order the
// file writes them; nil when there is no such stage.
func (p *Policy) Routes(stage string) []*Route {
	if st := p.stages[stage]; st != nil {
		return st.routeList
	}
	return nil
}

// KeyMode returns the route's api_key setting.
func (r *Route) KeyMode() KeyMode { return r.apiKey }

// BlockedPrefixes returns the networks of the WAF's ip_set rules whose
// action is block, sorted.
func (p *Policy) BlockedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, r := range p.waf.rules {
		if r.action != wafBlock || r.set == nil {
			continue
		}
		for pf := range r.set.v4 {
			out = append(out, pf)
		}
		for pf := range r.set.v6 {
			out = append(out, pf)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}
