package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/store/redis"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestRedisReplicasShareKeys: two servers on one Redis share run-time keys,
// usage and grants; a key changed through one replica's admin API is seen
// by the other's next requests at once (the change is announced), well
// before the key cache's TTL would run out.
func TestRedisReplicasShareKeys(t *testing.T) {
	srv := redistest.Start(t)
	// The real clock: Redis expires keys on its own.
	onRedis := func(c *Config) { c.Store, c.Now = srv.URL(), nil }
	a := serve(t, testPolicy(t), onRedis)
	b := serve(t, testPolicy(t), onRedis)

	created := a.call("POST", "/v1/keys", `{"id":"acme-rt","customer":"acme","plans":["free"]}`).want(t, "1 create", 201, "")
	value, _ := created.json["value"].(string)
	if n := b.checks(value, 3) + a.checks(value, 2); n != 5 {
		t.Fatalf("1: got %d allowed over both replicas, want 5", n)
	}
	if got := b.keyList(); !strings.Contains(got, `"id": "acme-rt"`) {
		t.Fatalf("1: replica b does not list the key: %s", got)
	}

	// 2. Disabled through a: b's requests are 403 as soon as the
	// announcement arrives.
	a.call("PATCH", "/v1/keys/acme-rt", `{"enabled":false}`).want(t, "2 disable", 200, "")
	soon(t, "b to see the disabled key", func() bool { return b.check(value).status == 403 })
	a.call("PATCH", "/v1/keys/acme-rt", `{"enabled":true}`).want(t, "2 enable", 200, "")
	soon(t, "b to see the enabled key", func() bool { return b.check(value).status == 200 })

	// 3. Usage and grants are the same seen from either replica.
	day := time.Now().UTC().Format(time.DateOnly)
	ua := a.call("GET", "/v1/usage?plan=free&customer=acme&start="+day+"&end="+day, "").want(t, "3 usage a", 200, "")
	ub := b.call("GET", "/v1/usage?plan=free&customer=acme&start="+day+"&end="+day, "").want(t, "3 usage b", 200, "")
	if ga, gb := jsonOf(t, ua.json["items"]), jsonOf(t, ub.json["items"]); ga != gb || !strings.Contains(ga, `[[6,994]]`) && !strings.Contains(ga, `[[7,993]]`) {
		t.Fatalf("3: usage: a %s, b %s, want the same 6 or 7 used of 1000", ga, gb)
	}
	b.call("POST", "/v1/usage/acme/grant", `{"plan":"free","requests":10}`).want(t, "3 grant", 200, "")
	me := a.callWith("GET", "/v1/me", "", map[string]string{"x-api-key": value}).want(t, "3 me", 200, "")
	if got := jsonOf(t, me.json["plans"]); !strings.Contains(got, `"granted":10`) {
		t.Fatalf("3: a's /v1/me: got %s, want the grant made through b", got)
	}

	// 4. Deleted through b: a's next requests are 403.
	b.call("DELETE", "/v1/keys/acme-rt", "").want(t, "4 delete", 204, "")
	soon(t, "a to see the deleted key", func() bool { return a.check(value).status == 403 })
}

// soon polls cond for up to a third of the key cache's TTL.
func soon(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(redis.KeyCacheTTL / 3)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", redis.KeyCacheTTL/3, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRedisOutageVisible: with the default --on-store-error local, when
// Redis goes away requests are still decided, locally with this replica's
// share of each limit (a free key's burst of 20 holds: one replica, the
// whole burst), counted in tollgate_store_local_decisions_total; the
// degraded gauge is 1, /readyz is 503 and says how decisions are made and
// by how many replicas, and one log line says so, not one per decision.
// When Redis is back, all of it clears on its own, with one line.
func TestRedisOutageVisible(t *testing.T) {
	srv := redistest.Start(t)
	// The free plan's burst of 20 hardly refills: the counts below do not
	// depend on how fast the requests go.
	policyText := testPolicy(t, "  free:\n    throttle: {rate: 10, burst: 20}", "  free:\n    throttle: {rate: 0.001, burst: 20}")
	h := serve(t, policyText, func(c *Config) { c.Store, c.Now = srv.URL(), nil })
	const free = "tg_demo_free_0000000000000001"
	if n := h.checks(free, 5); n != 5 {
		t.Fatalf("up: got %d allowed, want 5", n)
	}
	srv.Stop()
	// The free plan bursts 20: locally, with one live replica, a fresh
	// bucket admits 20 and no more.
	if n := h.checks(free, 30); n != 20 {
		t.Errorf("down: got %d of 30 allowed, want the local bucket's 20", n)
	}
	var ready struct {
		Status string
		Store  struct {
			Degraded     bool
			OnStoreError string `json:"on_store_error"`
			Replicas     int
		}
	}
	a := h.callWith("GET", "/readyz", "", nil)
	if err := json.Unmarshal([]byte(a.raw), &ready); err != nil || a.status != 503 || !ready.Store.Degraded ||
		ready.Store.OnStoreError != "local" || ready.Store.Replicas != 1 {
		t.Errorf("down: readyz: got %d %s, want 503, degraded, local, 1 replica", a.status, a.raw)
	}
	for series, want := range map[string]float64{
		"tollgate_store_degraded":                  1,
		"tollgate_replicas":                        1,
		"tollgate_store_local_decisions_total":     30,
		`tollgate_store_errors_total{op="decide"}`: 0,
	} {
		if got := h.metric(series); got != want {
			t.Errorf("down: %s: got %v, want %v", series, got, want)
		}
	}
	if n := strings.Count(h.logs.String(), "store unreachable"); n != 1 {
		t.Errorf("down: %d lines say the store is unreachable, want 1:\n%s", n, h.logs.String())
	}

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for h.metric("tollgate_store_degraded") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("back: still degraded 10s after Redis returned")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.callWith("GET", "/readyz", "", nil).want(t, "back: readyz", 200, "")
	local := h.metric("tollgate_store_local_decisions_total")
	// Redis came back empty (it keeps nothing on disk): the bucket is full.
	// The quota counted locally was added to Redis before the first
	// decision made on it: Redis came back empty, and holds the 20.
	if d := h.check(free); d.status != 200 || !strings.Contains(d.headers["ratelimit"], `"quota";r=979;`) {
		t.Errorf("back: got %d %v, want 200 with 1000-20-1 = 979 of the quota left", d.status, d.headers["ratelimit"])
	}
	if n := h.checks(free, 24); n != 19 {
		t.Errorf("back: got %d of 24 more allowed, want the rest of the shared bucket's 20, 19", n)
	}
	if got := h.metric("tollgate_store_local_decisions_total"); got != local {
		t.Errorf("back: %v decisions made locally after the recovery, want none", got-local)
	}
	if n := strings.Count(h.logs.String(), "store reachable again"); n != 1 {
		t.Errorf("back: %d lines say the store is back, want 1", n)
	}
}
