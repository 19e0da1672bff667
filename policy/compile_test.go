package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

type m = map[string]any
type l = []any

// specExample is the example policy file of the product specification as a YAML decoder delivers it
// (ints, time.Time for the unquoted timestamp).
func specExample() m {
	return m{
		"version": 1,
		"account": m{"throttle": m{"rate": 10000, "burst": 5000}},
		"clients": m{
			"api_key_header": "x-api-key",
			"strip_api_key":  false,
			"ip":             m{"source": "peer", "xff_trusted_hops": 0, "header": "x-envoy-external-address"},
		},
		"headers": "ietf",
		"explain": false,
		"apis": m{"payments": m{
			"hosts": l{"api.example.com"},
			"stages": m{"prod": m{
				"throttle":       m{"rate": 5000, "burst": 10000},
				"route_defaults": m{"throttle": m{"rate": 1000, "burst": 2000}},
				"unknown_routes": "allow",
				"routes": l{
					m{"match": "POST /transactions", "throttle": m{"rate": 2000, "burst": 4000}, "concurrency": 500},
					m{"match": "POST /partners/{id}/transactions", "api_key": "required"},
					m{"match": "GET /status", "throttle": m{"rate": 500, "burst": 1000}, "waf": "skip"},
				},
			}},
		}},
		"default_stage": "payments/prod",
		"usage_plans": m{
			"free": m{
				"throttle": m{"rate": 10, "burst": 20},
				"quota":    m{"limit": 1000, "period": "day"},
				"stages":   l{"payments/prod"},
			},
			"pro": m{
				"throttle": m{"rate": 100, "burst": 200},
				"quota":    m{"limit": 100000, "period": "day"},
				"stages": l{m{
					"stage":  "payments/prod",
					"routes": m{"POST /partners/{id}/transactions": m{"rate": 100, "burst": 200}},
				}},
			},
			"enterprise": m{
				"throttle": m{"rate": 1000, "burst": 2000},
				"stages":   l{"payments/prod"},
			},
		},
		"api_keys": l{m{
			"id":       "acme-2026a",
			"customer": "acme",
			"hash":     "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			"plans":    l{"pro"},
			"enabled":  true,
			"expires":  time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC),
		}},
		"waf": m{
			"ip_sets": m{"blocklist": l{"203.0.113.0/24", "2001:db8:bad::/48"}},
			"rules": l{
				m{"name": "blocked-networks", "ip_set": "blocklist", "action": "block"},
				m{
					"name":       "transactions-per-ip",
					"rate_based": m{"limit": 1000, "window": "5m", "key": "ip"},
					"scope":      m{"routes": l{"POST /transactions"}},
					"action":     "block",
					"response":   m{"status": 403, "body": `{"message":"Forbidden"}`},
				},
			},
			"default_action": "allow",
		},
	}
}

func mustCompile(t *testing.T, doc any) *Policy {
	t.Helper()
	p, err := Compile("policy.yaml", doc)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func TestCompileSpecExample(t *testing.T) {
	p := mustCompile(t, specExample())
	checkSpecExample(t, p)
}

// TestCompileSpecExampleFromJSON compiles the same document as
// encoding/json decodes it: every number a float64.
func TestCompileSpecExampleFromJSON(t *testing.T) {
	doc := specExample()
	doc["api_keys"].(l)[0].(m)["expires"] = "2027-06-30T00:00:00Z"
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := json.Unmarshal(data, &tree); err != nil {
		t.Fatal(err)
	}
	checkSpecExample(t, mustCompile(t, tree))
}

func checkSpecExample(t *testing.T, p *Policy) {
	t.Helper()
	eq := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	eq("account", *p.account, Throttle{RateMicro: 10_000_000_000, Burst: 5000})
	eq("account key", p.LimitName(p.accountKey), "account|10000000000/5000")
	eq("key header", p.KeyHeader(), "x-api-key")
	eq("ip source", p.ip, ipSource{kind: ipPeer, header: "x-envoy-external-address"})
	eq("headers", p.Headers, HeadersIETF)

	st := p.stages["payments/prod"]
	if st == nil {
		t.Fatalf("no stage payments/prod in %v", p.StageNames())
	}
	eq("stage name", st.API+" "+st.Stage, "payments prod")
	eq("stage throttle", *st.throttle, NewThrottle(5000, 10000))
	eq("stage key", p.LimitName(st.throttleKey), "stage|payments/prod|5000000000/10000")
	eq("unknown deny", st.unknownDeny, false)
	eq("default stage", p.defaultStage, st)
	eq("host", p.hosts["api.example.com"], st)
	eq("api stages", len(p.apis["payments"].stages), 1)

	routes := []struct {
		method, path string
		match        string
		throttle     Throttle
		key          string
		apiKey       KeyMode
		wafSkip      bool
		concurrency  int
	}{
		{"POST", "/transactions", "POST /transactions", NewThrottle(2000, 4000),
			"route|payments/prod|POST /transactions|2000000000/4000", KeyNone, false, 500},
		// No throttle of its own: route_defaults.
		{"POST", "/partners/p1/transactions", "POST /partners/{id}/transactions", NewThrottle(1000, 2000),
			"route|payments/prod|POST /partners/{id}/transactions|1000000000/2000", KeyRequired, false, 0},
		{"GET", "/status", "GET /status", NewThrottle(500, 1000),
			"route|payments/prod|GET /status|500000000/1000", KeyNone, true, 0},
	}
	for i, c := range routes {
		r := st.routes.match(c.method, c.path)
		if r == nil {
			t.Errorf("route %d: %s %s matches no route", i, c.method, c.path)
			continue
		}
		eq("match", r.Match, c.match)
		eq(c.match+" throttle", *r.throttle, c.throttle)
		eq(c.match+" key", p.LimitName(r.throttleKey), c.key)
		eq(c.match+" api_key", r.apiKey, c.apiKey)
		eq(c.match+" waf skip", r.wafSkip, c.wafSkip)
		eq(c.match+" concurrency", r.Concurrency, c.concurrency)
	}

	if got, want := p.PlanNames(), []string{"enterprise", "free", "pro"}; !slices.Equal(got, want) {
		t.Errorf("plans: got %v, want %v", got, want)
	}
	free, pro, ent := p.Plan("free"), p.Plan("pro"), p.Plan("enterprise")
	eq("free throttle", *free.throttle, NewThrottle(10, 20))
	eq("free throttle key", p.LimitName(free.throttleKey), "plan|free|10000000/20")
	eq("free quota", *free.quota, Quota{Limit: 1000, Period: Day, Location: time.UTC, WeekStart: time.Monday, AnchorDay: 1})
	eq("free quota key", p.LimitName(free.quotaKey), "quota|free")
	eq("free stage", free.stages[st], true)
	eq("enterprise quota", ent.quota == nil, true)
	eq("enterprise quota key", ent.quotaKey, "")
	partners := st.routes.match("POST", "/partners/p1/transactions")
	o, ok := pro.overrides[partners]
	eq("pro override", ok, true)
	eq("pro override throttle", o.throttle, NewThrottle(100, 200))
	eq("pro override key", p.LimitName(o.key), "plan|pro|payments/prod|POST /partners/{id}/transactions|100000000/200")
	eq("pro overrides", len(pro.overrides), 1)

	hash, _ := hex.DecodeString("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	k := p.keys[[sha256.Size]byte(hash)]
	if k == nil {
		t.Fatal("key acme-2026a is not found by its hash")
	}
	eq("key by id", p.KeyByID("acme-2026a"), k)
	eq("key customer", k.Customer, "acme")
	eq("key plans", strings.Join(k.Plans, ","), "pro")
	eq("key enabled", k.Enabled, true)
	eq("key from policy", k.FromPolicy, true)
	eq("key expires", k.Expires.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)), true)
	eq("plan for key", p.planFor(k, st), pro)

	w := p.waf
	eq("waf rules", len(w.rules), 2)
	eq("waf has rate", w.hasRate, true)
	eq("waf default", w.defaultAction, wafAllow)
	blocked := w.rules[0]
	eq("rule 0", blocked.reason, Reason("waf:blocked-networks"))
	eq("rule 0 action", blocked.action, wafBlock)
	for _, c := range []struct {
		ip   string
		want bool
	}{
		{"203.0.113.9", true},
		{"::ffff:203.0.113.9", true},
		{"203.0.114.1", false},
		{"2001:db8:bad:1::7", true},
		{"2001:db8:bae::1", false},
		{"198.51.100.7", false},
	} {
		eq("blocklist has "+c.ip, blocked.set.Contains(netip.MustParseAddr(c.ip)), c.want)
	}
	rate := w.rules[1]
	eq("rule 1", rate.reason, Reason("waf:transactions-per-ip"))
	eq("rule 1 id", p.LimitName(rate.rate.id), "waf|transactions-per-ip|ip|1000|5m0s")
	eq("rule 1 window", rate.rate.window, 5*time.Minute)
	eq("rule 1 status", rate.status, 403)
	eq("rule 1 body", rate.body, BodyForbidden)
	eq("rule 1 scope POST /transactions", rate.scope.match("POST", "/transactions") != nil, true)
	eq("rule 1 scope GET /transactions", rate.scope.match("GET", "/transactions") != nil, false)
}

// TestCompileKeyIdentities checks that a limit's state key changes with its
// definition and only then, so that a reload keeps the state of unchanged
// limits.
func TestCompileKeyIdentities(t *testing.T) {
	base := mustCompile(t, specExample())
	ids := func(p *Policy) []string {
		st := p.stages["payments/prod"]
		var out []string
		out = append(out, p.accountKey, st.throttleKey)
		for _, match := range []string{"POST /transactions", "POST /partners/p/transactions", "GET /status"} {
			method, path, _ := strings.Cut(match, " ")
			out = append(out, st.routes.match(method, path).throttleKey)
		}
		for _, name := range p.PlanNames() {
			pl := p.plans[name]
			out = append(out, pl.throttleKey, pl.quotaKey)
			for _, o := range pl.overrides {
				out = append(out, o.key)
			}
		}
		for _, r := range p.waf.rules {
			if r.rate != nil {
				out = append(out, r.rate.id)
			}
		}
		return out
	}
	want := ids(base)
	if again := ids(mustCompile(t, specExample())); !slices.Equal(again, want) {
		t.Errorf("same policy: got %v, want %v", again, want)
	}
	changes := []struct {
		name   string
		change func(m)
		index  int // which identity changes
	}{
		{"account burst", func(d m) { d["account"] = m{"throttle": m{"rate": 10000, "burst": 5001}} }, 0},
		{"stage rate", func(d m) { stage(d)["throttle"] = m{"rate": 5000.5, "burst": 10000} }, 1},
		{"route rate", func(d m) { stage(d)["routes"].(l)[0].(m)["throttle"] = m{"rate": 1, "burst": 4000} }, 2},
		{"route defaults", func(d m) { stage(d)["route_defaults"] = m{"throttle": m{"rate": 1000, "burst": 1}} }, 3},
		{"waf window", func(d m) {
			d["waf"].(m)["rules"].(l)[1].(m)["rate_based"] = m{"limit": 1000, "window": "6m", "key": "ip"}
		}, 12},
	}
	for _, c := range changes {
		doc := specExample()
		c.change(doc)
		got := ids(mustCompile(t, doc))
		for i := range want {
			if changed := got[i] != want[i]; changed != (i == c.index) {
				t.Errorf("%s: identity %d: got %q, was %q", c.name, i, got[i], want[i])
			}
		}
	}
}

func stage(d m) m { return d["apis"].(m)["payments"].(m)["stages"].(m)["prod"].(m) }

// TestCompileErrors checks single errors of the decoder: their path, their
// message and that nothing falls back to a default. The file-level golden
// tests live in policyfile.
func TestCompileErrors(t *testing.T) {
	cases := []compileError{
		{"empty", nil, `policy.yaml: the policy is empty (want a mapping that starts with version: 1)`},
		{"not a mapping", l{1}, `policy.yaml: got a list, want a mapping`},
		{"version missing", m{}, `policy.yaml: version: required field is missing (want 1)`},
		{"version string", m{"version": "1"}, `policy.yaml: version: "1" is not a supported version (want 1)`},
		{"non-string keys", map[any]any{"version": 1, 7: "x", true: 1},
			"policy.yaml: key 7 is not a string\npolicy.yaml: key true is not a string"},
		{"unknown top field", m{"version": 1, "acount": m{}},
			`policy.yaml: unknown field "acount" (want version, account, clients, headers, explain, apis, default_stage, usage_plans, api_keys, waf, notifications)`},
		{"rate too precise", m{"version": 1, "account": m{"throttle": m{"rate": 0.0000001, "burst": 1}}},
			`policy.yaml: account.throttle.rate: 1e-07 has more than 6 decimals`},
		{"rate NaN", m{"version": 1, "account": m{"throttle": m{"rate": math.NaN(), "burst": 1}}},
			`policy.yaml: account.throttle.rate: NaN is not a number`},
		{"rate inf", m{"version": 1, "account": m{"throttle": m{"rate": math.Inf(1), "burst": 1}}},
			`policy.yaml: account.throttle.rate: +Inf is above the maximum 1000000000`},
		{"rate string", m{"version": 1, "account": m{"throttle": m{"rate": "10", "burst": 1}}},
			`policy.yaml: account.throttle.rate: "10" is not a number`},
		{"burst fraction", m{"version": 1, "account": m{"throttle": m{"rate": 1, "burst": 1.5}}},
			`policy.yaml: account.throttle.burst: 1.5 is not an integer`},
		{"burst huge", m{"version": 1, "account": m{"throttle": m{"rate": 1, "burst": uint64(math.MaxUint64)}}},
			`policy.yaml: account.throttle.burst: 18446744073709551615 is above the maximum 1000000000`},
		{"burst very negative", m{"version": 1, "account": m{"throttle": m{"rate": 1, "burst": -1e30}}},
			`policy.yaml: account.throttle.burst: -1e+30 is below the minimum 0`},
		{"throttle null", m{"version": 1, "account": m{"throttle": nil}},
			`policy.yaml: account.throttle: null is not a mapping`},
		{"bool as string", m{"version": 1, "explain": "yes"},
			`policy.yaml: explain: "yes" is not true or false`},
		{"quoted path key", m{"version": 1, "apis": m{"pay ments": m{"stages": m{"prod": nil}}}},
			`policy.yaml: apis["pay ments"]: "pay ments" is not a valid api name (letters, digits, "_", "." and "-")`},
		{"header source needs header", m{"version": 1, "clients": m{"ip": m{"source": "header"}}},
			`policy.yaml: clients.ip.header: required field is missing (with source: header)`},
		{"bad header name", m{"version": 1, "clients": m{"api_key_header": "x api key"}},
			`policy.yaml: clients.api_key_header: "x api key" is not a valid HTTP header name`},
		{"rate key is the api key header", m{"version": 1, "waf": m{"rules": l{m{"name": "r", "action": "block",
			"rate_based": m{"limit": 1, "window": "1m", "key": "header:X-API-Key"}}}}},
			`policy.yaml: waf.rules[0].rate_based.key: "header:X-API-Key" is the API key header: use key: api_key`},
		{"rate rule allow", m{"version": 1, "waf": m{"rules": l{m{"name": "r", "action": "allow",
			"rate_based": m{"limit": 1, "window": "1m", "key": "ip"}}}}},
			`policy.yaml: waf.rules[0].action: "allow" is not allowed with rate_based (want block or count)`},
		{"scope on ip_set rule", m{"version": 1, "waf": m{"ip_sets": m{"s": l{"10.0.0.0/8"}},
			"rules": l{m{"name": "r", "action": "block", "ip_set": "s", "scope": m{"routes": l{"GET /"}}}}}},
			`policy.yaml: waf.rules[0].scope: only allowed with rate_based`},
		{"local time zone", m{"version": 1, "usage_plans": m{"p": m{"quota": m{"limit": 1, "period": "day", "timezone": "Local"}}}},
			`policy.yaml: usage_plans.p.quota.timezone: "Local" is not an IANA time zone name such as UTC or Europe/Berlin`},
		{"plan stage item type", m{"version": 1, "usage_plans": m{"p": m{"stages": l{7}}}},
			`policy.yaml: usage_plans.p.stages[0]: 7 is not "api/stage" or a mapping {stage, routes}`},
		{"hosts of a many-stage api", m{"version": 1, "apis": m{"a": m{"hosts": l{"a.example"}, "stages": m{"x": nil, "y": nil}}}},
			`policy.yaml: apis.a.hosts[0]: api a has several stages: default_stage must name one of them for its hosts`},
		{"host with port", m{"version": 1, "apis": m{"a": m{"hosts": l{"a.example:443"}, "stages": m{"x": nil}}}},
			`policy.yaml: apis.a.hosts[0]: "a.example:443" is not a host name (letters, digits, "-", "_" and ".", or an IP address; no port)`},
		{"bad expires", m{"version": 1, "usage_plans": m{"p": nil}, "api_keys": l{m{"id": "k", "plans": l{"p"}, "expires": "next year",
			"hash": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}},
			`policy.yaml: api_keys[0].expires: "next year" is not an RFC 3339 time such as 2027-06-30T00:00:00Z`},
	}
	checkCompileErrors(t, cases)
}

// TestCompileNullSections checks that a section written as null counts as
// empty, as when every entry under "api_keys:" is commented out.
func TestCompileNullSections(t *testing.T) {
	p := mustCompile(t, m{"version": 1, "account": nil, "clients": nil, "apis": nil, "usage_plans": nil, "api_keys": nil, "waf": nil})
	if p.account != nil || len(p.stages) != 0 || len(p.keys) != 0 || len(p.waf.rules) != 0 || p.KeyHeader() != "x-api-key" {
		t.Errorf("got %+v, want an empty policy", p)
	}
}

// TestHeaderRateRules: the rate-based rules keyed by a header are named,
// in order; the others (by ip, ip set) are not.
func TestHeaderRateRules(t *testing.T) {
	d := specExample()
	rules := d["waf"].(m)["rules"].(l)
	for _, name := range []string{"per-client", "per-tenant"} {
		rules = append(rules, m{"name": name, "rate_based": m{"limit": 10, "window": "1m", "key": "header:X-" + name},
			"action": "count"})
	}
	d["waf"].(m)["rules"] = rules
	if got := mustCompile(t, d).HeaderRateRules(); !slices.Equal(got, []string{"per-client", "per-tenant"}) {
		t.Errorf("got %q, want per-client and per-tenant", got)
	}
	if got := mustCompile(t, specExample()).HeaderRateRules(); got != nil {
		t.Errorf("the spec example: got %q, want none", got)
	}
}

func TestCompileRate(t *testing.T) {
	cases := []struct {
		rate any
		want uint64 // RateMicro; 0 with ok false: an error
		ok   bool
	}{
		{0, 0, true},
		{0.1, 100_000, true},
		{0.000001, 1, true},
		{123456.654321, 123_456_654_321, true},
		{1e9, 1e15, true},
		{int64(1e9), 1e15, true},
		{json.Number("2.5"), 2_500_000, true},
		{0.0000015, 0, false},
		{1e9 + 1, 0, false},
		{-0.5, 0, false},
		{true, 0, false},
	}
	for i, c := range cases {
		p, err := Compile("p", m{"version": 1, "account": m{"throttle": m{"rate": c.rate, "burst": 1}}})
		if (err == nil) != c.ok {
			t.Errorf("step %d: rate %v: got error %v, want ok %v", i, c.rate, err, c.ok)
			continue
		}
		if c.ok && p.account.RateMicro != c.want {
			t.Errorf("step %d: rate %v: got %d micro, want %d", i, c.rate, p.account.RateMicro, c.want)
		}
	}
}

func TestCompileIPSet(t *testing.T) {
	cases := []struct {
		cidr string
		want string // the stored prefix, or the error's tail
		ok   bool
	}{
		{"203.0.113.7", "203.0.113.7/32", true},
		{"2001:db8::1", "2001:db8::1/128", true},
		{"10.1.2.3/8", "10.0.0.0/8", true},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", true},
		{"::ffff:10.1.2.3", "10.1.2.3/32", true},
		{"0.0.0.0/0", `"0.0.0.0/0" is not allowed: a /0 prefix matches every address`, false},
		{"::/0", `"::/0" is not allowed: a /0 prefix matches every address`, false},
		{"::ffff:0.0.0.0/96", `"::ffff:0.0.0.0/96" is not allowed: a /0 prefix matches every address`, false},
		{"10.0.0.0/33", `"10.0.0.0/33" is not a CIDR prefix such as 203.0.113.0/24 or 2001:db8::/32`, false},
		{"fe80::1%eth0", `"fe80::1%eth0" is not an IP address or a CIDR prefix such as 203.0.113.0/24`, false},
		{"example.com", `"example.com" is not an IP address or a CIDR prefix such as 203.0.113.0/24`, false},
	}
	for i, c := range cases {
		p, err := Compile("p", m{"version": 1, "waf": m{
			"ip_sets": m{"s": l{c.cidr}},
			"rules":   l{m{"name": "r", "ip_set": "s", "action": "block"}},
		}})
		if !c.ok {
			want := "p: waf.ip_sets.s[0]: " + c.want
			if err == nil || err.Error() != want {
				t.Errorf("step %d: got error %v, want %s", i, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("step %d: %s: got error %v", i, c.cidr, err)
			continue
		}
		s := p.waf.rules[0].set
		want := netip.MustParsePrefix(c.want)
		m := s.v4
		if want.Addr().Is6() {
			m = s.v6
		}
		if _, ok := m[want]; !ok || len(s.v4)+len(s.v6) != 1 {
			t.Errorf("step %d: %s: got sets %v %v, want %s", i, c.cidr, s.v4, s.v6, want)
		}
	}
}

// TestCompileIPSetBitsLongestFirst checks the lookup order of prefix
// lengths.
func TestCompileIPSetBitsLongestFirst(t *testing.T) {
	p := mustCompile(t, m{"version": 1, "waf": m{
		"ip_sets": m{"s": l{"10.0.0.0/8", "10.1.2.3", "192.168.0.0/16", "10.9.0.0/16", "2001:db8::/32", "2001:db8::1"}},
		"rules":   l{m{"name": "r", "ip_set": "s", "action": "block"}},
	}})
	s := p.waf.rules[0].set
	if !slices.Equal(s.bits4, []int{32, 16, 8}) || !slices.Equal(s.bits6, []int{128, 32}) {
		t.Errorf("got bits %v %v, want [32 16 8] [128 32]", s.bits4, s.bits6)
	}
}

// TestCompileQuotaSettings checks the quota fields and their defaults.
func TestCompileQuotaSettings(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	cases := []struct {
		quota m
		want  Quota
	}{
		{m{"limit": 5, "period": "day"}, Quota{Limit: 5, Period: Day, Location: time.UTC, WeekStart: time.Monday, AnchorDay: 1}},
		{m{"limit": 0, "period": "week", "week_start": "sunday", "timezone": "Europe/Berlin"},
			Quota{Limit: 0, Period: Week, Location: berlin, WeekStart: time.Sunday, AnchorDay: 1}},
		{m{"limit": 7, "period": "week", "week_start": "saturday"},
			Quota{Limit: 7, Period: Week, Location: time.UTC, WeekStart: time.Saturday, AnchorDay: 1}},
		{m{"limit": 9, "period": "month", "anchor_day": 31}, Quota{Limit: 9, Period: Month, Location: time.UTC, WeekStart: time.Monday, AnchorDay: 31}},
	}
	for i, c := range cases {
		p := mustCompile(t, m{"version": 1, "usage_plans": m{"p": m{"quota": c.quota}}})
		q, ok := p.Plan("p").Quota()
		if !ok || q.Limit != c.want.Limit || q.Period != c.want.Period || q.Location.String() != c.want.Location.String() ||
			q.WeekStart != c.want.WeekStart || q.AnchorDay != c.want.AnchorDay {
			t.Errorf("step %d: got %+v, want %+v", i, q, c.want)
		}
	}
}

// TestCompileCollectsEveryError checks that one pass reports every error,
// in a deterministic order.
func TestCompileCollectsEveryError(t *testing.T) {
	doc := m{
		"version": 2,
		"headers": "loud",
		"usage_plans": m{
			"b": m{"quota": m{"limit": -1, "period": "fortnight"}},
			"a": m{"stages": l{"nowhere/prod"}},
		},
	}
	want := []string{
		`policy.yaml: version: 2 is not a supported version (want 1)`,
		`policy.yaml: headers: "loud" is not one of ietf, legacy, both, none`,
		`policy.yaml: usage_plans.a.stages[0]: "nowhere/prod" is not a stage (the policy has no stages)`,
		`policy.yaml: usage_plans.b.quota.limit: -1 is below the minimum 0`,
		`policy.yaml: usage_plans.b.quota.period: "fortnight" is not one of day, week, month`,
	}
	for i := range 3 {
		_, err := Compile("policy.yaml", doc)
		if err == nil {
			t.Fatal("got no error")
		}
		if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
			t.Errorf("run %d: got\n%s\nwant\n%s", i, err, strings.Join(want, "\n"))
		}
		var joined interface{ Unwrap() []error }
		if !errors.As(err, &joined) || len(joined.Unwrap()) != len(want) {
			t.Errorf("run %d: got %T, want %d joined errors", i, err, len(want))
		}
	}
}

// compileError is a document that must not compile, and its whole error.
type compileError struct {
	name string
	doc  any
	want string
}

// checkCompileErrors compiles each case's document and checks that it fails
// with exactly the case's error, and no policy.
func checkCompileErrors(t *testing.T, cases []compileError) {
	t.Helper()
	for i, c := range cases {
		p, err := Compile("policy.yaml", c.doc)
		if err == nil {
			t.Errorf("step %d (%s): got a policy, want error %q", i, c.name, c.want)
			continue
		}
		if p != nil {
			t.Errorf("step %d (%s): got a policy with the error", i, c.name)
		}
		if err.Error() != c.want {
			t.Errorf("step %d (%s): got error\n%s\nwant\n%s", i, c.name, err, c.want)
		}
	}
}
