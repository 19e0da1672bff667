package server

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestRedisReplicasShareKeys: two servers on one Redis share run-time keys,
// usage and grants; a key changed through one replica's admin API is seen
// by the other's next requests at once (the change is announced), well
// before the key cache's TTL would run out.
func TestRedisReplicasShareKeys(t *testing.T) {
	srv := redistest.Start(t)
	// The real clock: Redis expires keys on its own.
	onRedis := func(c *Config) { c.Store, c.StoreTimeout, c.Now = srv.URL(), time.Second, nil }
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
	deadline := time.Now().Add(keyCacheTTL / 3)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", keyCacheTTL/3, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
