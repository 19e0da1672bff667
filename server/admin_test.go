package server

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// jsonOf renders v as compact JSON, for comparisons.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var keyValueShape = regexp.MustCompile(`^tg_[A-Za-z0-9]{40}$`)

// TestAdminKeyLifecycle follows a run-time key end to end over the admin API
// and real ext_authz calls: create, spend, usage, disable, enable, quota
// and grant, plan change, rotation with a grace, delete. Each change is seen
// by the very next request. It runs on the memory store and on the file
// store.
func TestAdminKeyLifecycle(t *testing.T) {
	for _, store := range []string{"memory:", "file:"} {
		t.Run(strings.TrimSuffix(store, ":"), func(t *testing.T) {
			if store == "file:" {
				store += t.TempDir()
			}
			testAdminKeyLifecycle(t, store)
		})
	}
}

func testAdminKeyLifecycle(t *testing.T, store string) {
	h := serve(t, testPolicy(t, smallFreeQuota...), func(c *Config) { c.Store = store })

	// 1. Create: 201 with the value, shown this once.
	a := h.call("POST", "/v1/keys", `{"id":"acme-rt","customer":"acme","name":"Acme batch","plans":["free"]}`).want(t, "1 create", 201, "")
	value, _ := a.json["value"].(string)
	if !keyValueShape.MatchString(value) {
		t.Fatalf("1: got value %q, want tg_ and 40 base62 characters", value)
	}
	sum := sha256.Sum256([]byte(value))
	for field, want := range map[string]any{"id": "acme-rt", "customer": "acme", "name": "Acme batch", "enabled": true,
		"source": "api", "hash": "sha256:" + hex.EncodeToString(sum[:]), "created": "2026-11-20T12:00:00Z", "expires": nil} {
		if got := a.json[field]; got != want {
			t.Errorf("1: %s: got %v, want %v", field, got, want)
		}
	}
	if loc := a.header.Get("Location"); loc != "/v1/keys/acme-rt" {
		t.Errorf("1: got location %q, want /v1/keys/acme-rt", loc)
	}
	got := h.call("GET", "/v1/keys/acme-rt", "").want(t, "1 get", 200, "")
	if _, ok := got.json["value"]; ok || strings.Contains(got.raw, value) {
		t.Fatalf("1: GET shows the key value: %s", got.raw)
	}
	if list := h.keyList(); strings.Contains(list, value) || !strings.Contains(list, `"id": "acme-rt"`) || !strings.Contains(list, `"id": "acme-2026a"`) {
		t.Fatalf("1: list: got %s, want both kinds of keys and no value", list)
	}

	// 2. Spend 5, with the free plan's limits in the RateLimit headers.
	for i := range 5 {
		d := h.check(value)
		if d.status != 200 {
			t.Fatalf("2.%d: got %d, want 200", i, d.status)
		}
		if p := d.headers["ratelimit-policy"]; !strings.Contains(p, `"plan";q=20;`) || !strings.Contains(p, `"quota";q=8;`) {
			t.Fatalf("2.%d: got RateLimit-Policy %q, want the free plan's", i, p)
		}
	}

	// 3. Usage: [used, remaining] per UTC day, the future day in a fresh
	// period.
	a = h.call("GET", "/v1/usage?plan=free&customer=acme&start=2026-11-19&end=2026-11-21", "").want(t, "3", 200, "")
	if got, want := jsonOf(t, a.json), `{"end":"2026-11-21","items":{"acme":[[0,8],[5,3],[0,8]]},"plan":"free","start":"2026-11-19"}`; got != want {
		t.Fatalf("3: got %s, want %s", got, want)
	}
	a = h.call("GET", "/v1/usage?plan=free&start=2026-11-20&end=2026-11-20", "").want(t, "3 all", 200, "")
	if got, want := jsonOf(t, a.json["items"]), `{"acme":[[5,3]],"hooli":[[0,8]],"initech":[[0,8]],"umbrella":[[0,8]]}`; got != want {
		t.Fatalf("3: every customer on free: got %s, want %s", got, want)
	}

	// 4. Disable: the next request is 403; enable: the next is allowed.
	h.call("PATCH", "/v1/keys/acme-rt", `{"enabled":false}`).want(t, "4 disable", 200, "")
	if d := h.check(value); d.status != 403 {
		t.Fatalf("4: disabled: got %d, want 403", d.status)
	}
	h.call("PATCH", "/v1/keys/acme-rt", `{"enabled":true}`).want(t, "4 enable", 200, "")
	if d := h.check(value); d.status != 200 {
		t.Fatalf("4: enabled: got %d, want 200", d.status)
	}

	// 5. The quota runs out at 8.
	if n := h.checks(value, 3); n != 2 {
		t.Fatalf("5: got %d allowed, want 2 (quota 8, 6 used)", n)
	}
	if d := h.check(value); d.status != 429 || d.headers["retry-after"] != "43200" {
		t.Fatalf("5: got %d retry-after %q, want 429 and 43200 (until midnight)", d.status, d.headers["retry-after"])
	}

	// 6. A grant of 2 lets 2 more through in this period.
	a = h.call("POST", "/v1/usage/acme/grant", `{"plan":"free","requests":2}`).want(t, "6", 200, "")
	if got, want := jsonOf(t, a.json), `{"customer":"acme","granted":2,"limit":8,"period":"day","period_start":"2026-11-20T00:00:00Z","plan":"free","remaining":2,"reset":"2026-11-21T00:00:00Z","timezone":"UTC","used":8}`; got != want {
		t.Fatalf("6: got %s, want %s", got, want)
	}
	if n := h.checks(value, 3); n != 2 {
		t.Fatalf("6: got %d allowed after the grant, want 2", n)
	}

	// 7. Usage and /v1/me see it all.
	a = h.call("GET", "/v1/usage?plan=free&customer=acme&start=2026-11-20&end=2026-11-20", "").want(t, "7", 200, "")
	if got, want := jsonOf(t, a.json["items"]), `{"acme":[[10,0]]}`; got != want {
		t.Fatalf("7: got %s, want %s", got, want)
	}
	a = h.callWith("GET", "/v1/me", "", map[string]string{"x-api-key": value}).want(t, "7 me", 200, "")
	plan := a.json["plans"].([]any)[0].(map[string]any)
	forecast := plan["forecast"]
	delete(plan, "forecast")
	if got, want := jsonOf(t, a.json), `{"customer":"acme","expires":null,"key_id":"acme-rt","name":"Acme batch","plans":[{"plan":"free","quota":{"granted":2,"limit":8,"period":"day","period_start":"2026-11-20T00:00:00Z","remaining":0,"reset":"2026-11-21T00:00:00Z","timezone":"UTC","used":10},"stages":["payments/prod"],"throttle":{"burst":20,"rate":10}}]}`; got != want {
		t.Fatalf("7: me: got %s, want %s", got, want)
	}
	// The quota is used up: it ran out now, whatever the rate.
	a = h.call("GET", "/v1/usage/acme/forecast?plan=free", "").want(t, "7 forecast", 200, "")
	if jsonOf(t, a.json) != jsonOf(t, forecast) {
		t.Errorf("7: /v1/me's forecast %s, /v1/usage/acme/forecast %s: want the same", jsonOf(t, forecast), jsonOf(t, a.json))
	}
	rate, _ := a.json["rate_per_hour"].(float64)
	delete(a.json, "rate_per_hour")
	if got, want := jsonOf(t, a.json), `{"customer":"acme","exhaustion":"2026-11-20T12:00:00Z","limit":10,"period_end":"2026-11-21T00:00:00Z","period_start":"2026-11-20T00:00:00Z","plan":"free","used":10}`; got != want || rate <= 0 {
		t.Errorf("7: forecast: got %s and a rate of %v an hour, want %s and a rate", got, rate, want)
	}

	// 8. Move to pro: the next request has pro's limits.
	h.call("PATCH", "/v1/keys/acme-rt", `{"plans":["pro"]}`).want(t, "8", 200, "")
	d := h.check(value)
	if p := d.headers["ratelimit-policy"]; d.status != 200 || !strings.Contains(p, `"plan";q=200;`) || !strings.Contains(p, `"quota";q=100000;`) {
		t.Fatalf("8: got %d RateLimit-Policy %q, want 200 with the pro plan's limits", d.status, p)
	}

	// 9. Rotate with a grace of 1h: both keys work until it ends.
	a = h.call("POST", "/v1/keys/acme-rt/rotate", `{"grace":"1h","id":"acme-rt2"}`).want(t, "9", 201, "")
	value2, _ := a.json["value"].(string)
	if !keyValueShape.MatchString(value2) || value2 == value || a.json["customer"] != "acme" || jsonOf(t, a.json["plans"]) != `["pro"]` {
		t.Fatalf("9: got %s, want a new value for customer acme on pro", a.raw)
	}
	if old := h.call("GET", "/v1/keys/acme-rt", "").want(t, "9 old", 200, ""); old.json["expires"] != "2026-11-20T13:00:00Z" {
		t.Fatalf("9: old key expires %v, want 2026-11-20T13:00:00Z", old.json["expires"])
	}
	if h.check(value2).status != 200 || h.check(value).status != 200 {
		t.Fatal("9: both keys should work during the grace")
	}
	h.clock.Advance(time.Hour)
	if h.check(value).status != 403 || h.check(value2).status != 200 {
		t.Fatal("9: after the grace, the old key should be 403 and the new one 200")
	}
	// Usage belongs to the customer: 1 (step 8) + 2 (grace) + 1.
	a = h.call("GET", "/v1/usage?plan=pro&customer=acme&start=2026-11-20&end=2026-11-20", "").want(t, "9 usage", 200, "")
	if got, want := jsonOf(t, a.json["items"]), `{"acme":[[4,99996]]}`; got != want {
		t.Fatalf("9: usage: got %s, want %s", got, want)
	}

	// 10. Delete: the next request is 403, the key is gone.
	h.call("DELETE", "/v1/keys/acme-rt2", "").want(t, "10", 204, "")
	if h.check(value2).status != 403 {
		t.Fatal("10: deleted key still works")
	}
	h.call("GET", "/v1/keys/acme-rt2", "").want(t, "10 get", 404, "acme-rt2")

	// Logs name keys by id, never by value; metrics count by plan.
	logs := h.logs.String()
	if strings.Contains(logs, value) || strings.Contains(logs, value2) {
		t.Error("a key value was logged")
	}
	for _, msg := range []string{`"msg":"admin: key created","key_id":"acme-rt"`, `"msg":"admin: key rotated","key_id":"acme-rt","new_key_id":"acme-rt2"`,
		`"msg":"admin: key deleted","key_id":"acme-rt2"`, `"msg":"denied"`} {
		if !strings.Contains(logs, msg) {
			t.Errorf("logs: got none with %s", msg)
		}
	}
	for series, want := range map[string]float64{
		`tollgate_quota_requests_total{plan="free"}`:                                                         10,
		`tollgate_quota_requests_total{plan="pro"}`:                                                          4,
		`tollgate_decisions_total{api="payments",outcome="deny",plan="free",reason="quota",stage="prod"}`:    3,
		`tollgate_decisions_total{api="payments",outcome="deny",plan="",reason="key:disabled",stage="prod"}`: 1,
		`tollgate_decisions_total{api="payments",outcome="deny",plan="",reason="key:expired",stage="prod"}`:  1,
		`tollgate_decisions_total{api="payments",outcome="deny",plan="",reason="key:unknown",stage="prod"}`:  1,
		`tollgate_decisions_total{api="payments",outcome="allow",plan="free",reason="none",stage="prod"}`:    10,
		`tollgate_admin_requests_total{code="201",route="POST /v1/keys"}`:                                    1,
		`tollgate_decision_duration_seconds_count`:                                                           20,
	} {
		if got := h.metric(series); got != want {
			t.Errorf("metric %s: got %v, want %v", series, got, want)
		}
	}
}

// TestAdminBadInput: every call with bad input answers its status with a
// JSON error, and changes nothing.
func TestAdminBadInput(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	h.call("POST", "/v1/keys", `{"id":"rt-1","customer":"acme","plans":["free"]}`).want(t, "setup", 201, "")
	before := h.keyList()
	big := `{"name":"` + strings.Repeat("x", 70<<10) + `","plans":["free"]}`
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	cases := []struct {
		method, path, body string
		headers            map[string]string // nil: the admin token
		status             int
		contains           string
	}{
		// Authentication.
		{"GET", "/v1/keys", "", map[string]string{}, 401, "missing bearer token"},
		{"POST", "/v1/keys", `{"plans":["free"]}`, bearer("wrong"), 401, "wrong bearer token"},
		{"POST", "/v1/keys", `{"plans":["free"]}`, map[string]string{"Authorization": "Basic " + adminToken}, 401, "missing bearer token"},
		{"DELETE", "/v1/keys/rt-1", "", bearer(adminToken + "x"), 401, "wrong bearer token"},
		{"POST", "/v1/usage/acme/grant", `{"plan":"free","requests":5}`, bearer(""), 401, "bearer token"},
		// Malformed bodies.
		{"POST", "/v1/keys", `{"plans":["free"]`, nil, 400, "body: unexpected EOF"},
		{"POST", "/v1/keys", `{"plans":["free"],}`, nil, 400, "malformed JSON"},
		{"POST", "/v1/keys", `["free"]`, nil, 400, "body: got a JSON array, want a JSON object"},
		{"POST", "/v1/keys", ``, nil, 400, "body: empty"},
		{"POST", "/v1/keys", `{"plans":["free"]} {"plans":["pro"]}`, nil, 400, "unexpected data after the JSON object"},
		{"POST", "/v1/keys", `{"plans":["free"]}x`, nil, 400, "unexpected data after the JSON object"},
		{"POST", "/v1/keys", big, nil, 413, "larger than 65536 bytes"},
		{"POST", "/v1/keys", `{"plans":"free"}`, nil, 400, "body: plans: got a JSON string, want a list"},
		// Unknown fields.
		{"POST", "/v1/keys", `{"plans":["free"],"value":"tg_chosen_by_me_000000000000"}`, nil, 400, `unknown field "value"`},
		{"PATCH", "/v1/keys/rt-1", `{"enabled":false,"customer":"other"}`, nil, 400, `unknown field "customer"`},
		{"POST", "/v1/keys/rt-1/rotate", `{"grace":"1h","plans":["pro"]}`, nil, 400, `unknown field "plans"`},
		{"POST", "/v1/usage/acme/grant", `{"plan":"free","requests":5,"reason":"x"}`, nil, 400, `unknown field "reason"`},
		// Bad values.
		{"POST", "/v1/keys", `{"plans":["gold"]}`, nil, 400, `body: plans[0]: "gold" is not a usage plan (plans: enterprise, free, pro, trial)`},
		{"POST", "/v1/keys", `{"plans":[]}`, nil, 400, "a key needs at least one plan"},
		{"POST", "/v1/keys", `{}`, nil, 400, "a key needs at least one plan"},
		{"POST", "/v1/keys", `{"plans":["free","pro"]}`, nil, 400, "at most one plan per stage"},
		{"POST", "/v1/keys", `{"id":"bad id","plans":["free"]}`, nil, 400, `body: id: "bad id" is not valid`},
		{"POST", "/v1/keys", `{"customer":"","plans":["free"]}`, nil, 400, `body: customer: "" is not valid`},
		{"POST", "/v1/keys", `{"plans":["free"],"expires":"next week"}`, nil, 400, `"next week" is not an RFC 3339 time`},
		{"POST", "/v1/keys", `{"plans":["free"],"expires":"2020-01-01T00:00:00Z"}`, nil, 400, "is not in the future"},
		{"POST", "/v1/keys", `{"plans":["free"],"name":"a\u0007b"}`, nil, 400, "not printable"},
		{"POST", "/v1/keys", `{"id":"x y","plans":["gold"]}`, nil, 400, `body: id: "x y" is not valid (1 to 64 letters, digits, "_", "." and "-", not "." or ".."); body: plans[0]: "gold"`},
		{"PATCH", "/v1/keys/rt-1", `{}`, nil, 400, "nothing to change"},
		{"PATCH", "/v1/keys/rt-1", `{"plans":["gold"]}`, nil, 400, `"gold" is not a usage plan`},
		{"PATCH", "/v1/keys/rt-1", `{"expires":5}`, nil, 400, "expires: 5 is not an RFC 3339 time"},
		{"PATCH", "/v1/keys/rt-1", `{"enabled":"no"}`, nil, 400, "body: enabled: got a JSON string, want true or false"},
		{"POST", "/v1/keys/rt-1/rotate", `{"grace":"a day"}`, nil, 400, `"a day" is not a duration`},
		{"POST", "/v1/keys/rt-1/rotate", `{"grace":"-1h"}`, nil, 400, "is not between 0s and"},
		{"POST", "/v1/usage/acme/grant", `{"plan":"enterprise","requests":5}`, nil, 400, `"enterprise" has no quota`},
		{"POST", "/v1/usage/acme/grant", `{"plan":"free","requests":0}`, nil, 400, "requests: 0 is not between 1"},
		{"POST", "/v1/usage/acme/grant", `{"plan":"free","requests":1.5}`, nil, 400, "requests: got a JSON number 1.5, want a whole number"},
		{"POST", "/v1/usage/acme/grant", `{"plan":"free","requests":-5}`, nil, 400, "requests: -5 is not between 1"},
		{"POST", "/v1/usage/acme/grant", `{"plan":"gold","requests":5}`, nil, 400, `"gold" is not a usage plan`},
		{"POST", "/v1/usage/acme/grant", `{"requests":5}`, nil, 400, "plan: required"},
		{"POST", "/v1/usage/nobody/grant", `{"plan":"free","requests":5}`, nil, 404, `customer "nobody" holds no key on plan "free"`},
		{"GET", "/v1/usage?plan=gold&start=2026-11-01&end=2026-11-02", "", nil, 400, `"gold" is not a usage plan`},
		{"GET", "/v1/usage?plan=free&start=2026-11-02&end=2026-11-01", "", nil, 400, "is before start"},
		{"GET", "/v1/usage?plan=free&start=2026-13-01&end=2026-11-01", "", nil, 400, `start: "2026-13-01" is not a date`},
		{"GET", "/v1/usage?plan=free&start=2025-01-01&end=2026-11-01", "", nil, 400, "a report covers at most 366"},
		{"GET", "/v1/usage?plan=free&start=2025-11-01&end=2026-11-02", "", nil, 400, "is 367 days; a report covers at most 366"},
		{"GET", "/v1/usage?plan=free&start=2026-11-01", "", nil, 400, "end: required"},
		{"GET", "/v1/usage?plan=free&start=2026-11-01&end=2026-11-01&owner=5", "", nil, 400, `unknown parameter "owner"`},
		{"GET", "/v1/usage?plan=free&customer=acme&start=2026-11-01&end=2026-11-01&limit=5", "", nil, 400, "limit and after page the customers"},
		{"GET", "/v1/usage?plan=free&start=2026-11-01&end=2026-11-01&limit=0", "", nil, 400, `limit: "0" is not a number from 1 to 1000`},
		{"GET", "/v1/keys?limit=1001", "", nil, 400, `limit: "1001" is not a number from 1 to 1000`},
		{"GET", "/v1/keys?limit=ten", "", nil, 400, `limit: "ten" is not a number`},
		{"GET", "/v1/keys?after=a/b", "", nil, 400, `after: "a/b" is not a key id`},
		{"GET", "/v1/keys?after=..", "", nil, 400, `after: ".." is not a key id`},
		{"GET", "/v1/usage?plan=free&plan=pro&start=2026-11-01&end=2026-11-01", "", nil, 400, "plan: given 2 times"},
		{"GET", "/v1/keys?owner=acme", "", nil, 400, `unknown parameter "owner"`},
		{"GET", "/v1/keys?plan=free&plan=pro", "", nil, 400, `plan: given 2 times`},
		// Duplicates and the policy file's keys.
		{"POST", "/v1/keys", `{"id":"rt-1","plans":["free"]}`, nil, 409, `key id "rt-1" is taken`},
		{"POST", "/v1/keys", `{"id":"acme-2026a","plans":["free"]}`, nil, 409, `taken by a key of the policy file`},
		{"POST", "/v1/keys/rt-1/rotate", `{"id":"acme-2026a"}`, nil, 409, `taken by a key of the policy file`},
		{"PATCH", "/v1/keys/acme-2026a", `{"enabled":false}`, nil, 409, "read-only"},
		{"DELETE", "/v1/keys/acme-2026a", "", nil, 409, "read-only"},
		{"POST", "/v1/keys/acme-2026a/rotate", `{"grace":"1h"}`, nil, 409, "read-only"},
		// Unknown keys, paths and methods.
		{"GET", "/v1/keys/nope", "", nil, 404, `no key with id "nope"`},
		{"PATCH", "/v1/keys/nope", `{"enabled":false}`, nil, 404, `no key with id "nope"`},
		{"DELETE", "/v1/keys/nope", "", nil, 404, `no key with id "nope"`},
		{"POST", "/v1/keys/nope/rotate", `{}`, nil, 404, `no key with id "nope"`},
		{"GET", "/v1/nothing", "", nil, 404, "no such path"},
		{"PUT", "/v1/keys/rt-1", `{}`, nil, 405, "method PUT is not allowed"},
		{"DELETE", "/v1/keys", "", nil, 405, "allowed: GET, POST"},
		// /v1/me authenticates with the API key.
		{"GET", "/v1/me", "", nil, 401, "missing API key (header x-api-key)"},
		{"GET", "/v1/me", "", map[string]string{"x-api-key": "tg_demo_disabled_000000000001"}, 403, "forbidden"},
		{"GET", "/v1/me", "", map[string]string{"x-api-key": "tg_not_a_key_at_all_00000000"}, 403, "forbidden"},
	}
	for i, c := range cases {
		step := fmt.Sprintf("%d %s %s", i, c.method, c.path)
		var a answer
		if c.headers == nil {
			a = h.call(c.method, c.path, c.body)
		} else {
			a = h.callWith(c.method, c.path, c.body, c.headers)
		}
		a.want(t, step, c.status, c.contains)
		if c.status == 401 && a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", step)
		}
		if c.status == 405 && a.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", step)
		}
		if after := h.keyList(); after != before {
			t.Fatalf("%s: the keys changed:\nbefore %s\nafter  %s", step, before, after)
		}
	}
	// No grant went through.
	a := h.callWith("GET", "/v1/me", "", map[string]string{"x-api-key": "tg_demo_free_0000000000000001"}).want(t, "me", 200, "")
	if q := jsonOf(t, a.json["plans"]); !strings.Contains(q, `"granted":0`) {
		t.Fatalf("me: got %s, want no grant", q)
	}
}

// TestAdminWithoutToken: with no admin token configured, /v1 answers 503
// and health, readiness and metrics still answer.
func TestAdminWithoutToken(t *testing.T) {
	h := serve(t, testPolicy(t), func(c *Config) { c.AdminToken = "" })
	h.call("GET", "/v1/keys", "").want(t, "list", 503, "no admin token is configured")
	h.call("POST", "/v1/keys", `{"plans":["free"]}`).want(t, "create", 503, "no admin token is configured")
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		h.callWith("GET", path, "", nil).want(t, path, 200, "")
	}
	// /v1/me needs the caller's key, not the admin token.
	h.callWith("GET", "/v1/me", "", map[string]string{"x-api-key": "tg_demo_pro_00000000000000001"}).want(t, "me", 200, "")
}

// TestAdminOff: AdminAddr "-" serves no admin API.
func TestAdminOff(t *testing.T) {
	h := serve(t, testPolicy(t), func(c *Config) { c.AdminAddr = "-" })
	if h.s.AdminAddr() != nil {
		t.Fatalf("got admin address %v, want none", h.s.AdminAddr())
	}
	if d := h.check("tg_demo_pro_00000000000000001"); d.status != 200 {
		t.Fatalf("got %d, want 200", d.status)
	}
}

// TestRotateKeepsExpiry: the new key keeps the old one's expiry, and the old
// one never outlives its own; an expired key cannot be rotated.
func TestRotateKeepsExpiry(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	h.call("POST", "/v1/keys", `{"id":"k1","plans":["pro"],"expires":"2026-11-20T18:00:00Z"}`).want(t, "1", 201, "")
	a := h.call("POST", "/v1/keys/k1/rotate", `{"grace":"24h"}`).want(t, "2", 201, "")
	if a.json["expires"] != "2026-11-20T18:00:00Z" || !strings.HasPrefix(a.json["id"].(string), "key-") {
		t.Fatalf("2: got %s, want a generated id and the old expiry", a.raw)
	}
	if old := h.call("GET", "/v1/keys/k1", "").want(t, "3", 200, ""); old.json["expires"] != "2026-11-20T18:00:00Z" {
		t.Fatalf("3: got old expiry %v, want unchanged 2026-11-20T18:00:00Z (earlier than the grace)", old.json["expires"])
	}
	h.clock.Advance(7 * time.Hour)
	h.call("POST", "/v1/keys/k1/rotate", ``).want(t, "4", 409, "expired at 2026-11-20T18:00:00Z")
	// An empty rotate body means the default grace of 24h.
	h.call("POST", "/v1/keys", `{"id":"k2","plans":["pro"]}`).want(t, "5", 201, "")
	h.call("POST", "/v1/keys/k2/rotate", ``).want(t, "6", 201, "")
	if old := h.call("GET", "/v1/keys/k2", "").want(t, "7", 200, ""); old.json["expires"] != "2026-11-21T19:00:00Z" {
		t.Fatalf("7: got %v, want 2026-11-21T19:00:00Z", old.json["expires"])
	}
	// PATCH clears an expiry with null.
	h.call("PATCH", "/v1/keys/k2", `{"expires":null}`).want(t, "8", 200, "")
	if k := h.call("GET", "/v1/keys/k2", "").want(t, "9", 200, ""); k.json["expires"] != nil {
		t.Fatalf("9: got %v, want null", k.json["expires"])
	}
}

// TestUsageQuotaPeriods: remaining follows the quota period, here a week.
func TestUsageQuotaPeriods(t *testing.T) {
	h := serve(t, testPolicy(t, "quota: {limit: 1000, period: day}", "quota: {limit: 10, period: week}"), nil)
	// 2026-11-20 is a Friday; the week started on Monday 2026-11-16.
	h.clock.Advance(-72 * time.Hour) // Tuesday 17th
	if n := h.checks("tg_demo_free_0000000000000001", 3); n != 3 {
		t.Fatalf("got %d allowed, want 3", n)
	}
	h.clock.Advance(72 * time.Hour) // Friday 20th
	if n := h.checks("tg_demo_free_0000000000000001", 2); n != 2 {
		t.Fatalf("got %d allowed, want 2", n)
	}
	a := h.call("GET", "/v1/usage?plan=free&customer=initech&start=2026-11-18&end=2026-11-24", "").want(t, "usage", 200, "")
	// The 17th's 3 count although the report starts on the 18th; Monday
	// 23rd starts a new week.
	if got, want := jsonOf(t, a.json["items"]), `{"initech":[[0,7],[0,7],[2,5],[0,5],[0,5],[0,10],[0,10]]}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	// enterprise has no quota: remaining is null.
	a = h.call("GET", "/v1/usage?plan=enterprise&start=2026-11-20&end=2026-11-20", "").want(t, "enterprise", 200, "")
	if got, want := jsonOf(t, a.json["items"]), `{"globex":[[0,null]]}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestAdminUncleanPaths: a path not in its clean form ("//", "." or ".."
// segments, also escaped) is a JSON 404 for every method, not
// http.ServeMux's 307 to the clean path in HTML, which keeps the method: a
// client following it would have DELETE /v1/keys/a/../k delete key k (a
// reviewer's find). The request goes over a raw connection: Go's client
// would clean the path itself.
func TestAdminUncleanPaths(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	addr := strings.TrimPrefix(h.base, "http://")
	for _, target := range []string{"/v1//keys", "//v1/keys", "/v1/./keys", "/v1/keys/.", "/v1/keys/%2e%2e",
		"/v1/keys/a/../initech-free", "/healthz/.."} {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", method, target, adminToken)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Error string }
			err = json.NewDecoder(resp.Body).Decode(&body)
			conn.Close()
			if resp.StatusCode != 404 || err != nil || !strings.Contains(body.Error, "no such path") {
				t.Errorf("%s %s: got %d %q (%v), want a JSON 404", method, target, resp.StatusCode, body.Error, err)
			}
		}
	}
	// Counted as the paths of no route are, never with an empty label.
	if v := h.metric(`tollgate_admin_requests_total{code="404",route=""}`); v != -1 {
		t.Errorf("refused paths counted with an empty route label: %v", v)
	}
	// Clean paths, a trailing slash among them, are served as before.
	for path, want := range map[string]int{"/healthz": 200, "/v1/keys/": 404} {
		resp, err := h.http.Get(h.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
