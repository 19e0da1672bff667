package policy_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tollgate/tollgate/policy"
)

// bucketsPolicy has an account bucket, a stage with a bucket whose routes
// take route_defaults' or their own, and a stage without a bucket with one
// route without one.
const bucketsPolicy = `version: 1
account: {throttle: {rate: 100, burst: 10}}
apis:
  shop:
    stages:
      prod:
        throttle: {rate: 50, burst: 10}
        route_defaults: {throttle: {rate: 20, burst: 5}}
        routes:
          - match: "GET /items"
          - match: "POST /orders"
            throttle: {rate: 5, burst: 2}
      beta:
        routes:
          - match: "GET /free"
          - match: "GET /items"
            throttle: {rate: 1.5, burst: 2}
`

func TestRateBuckets(t *testing.T) {
	p := parse(t, bucketsPolicy)
	var got []string
	for _, b := range p.RateBuckets() {
		got = append(got, fmt.Sprintf("%s|%s|%s|%s|%g/%d", b.Tier, b.API, b.Stage, b.Route, b.Throttle.Rate(), b.Throttle.Burst))
	}
	want := []string{
		"account||||100/10",
		"route|shop|beta|GET /items|1.5/2", // shop/beta sorts before shop/prod; it has no bucket of its own
		"stage|shop|prod||50/10",
		"route|shop|prod|GET /items|20/5",
		"route|shop|prod|POST /orders|5/2",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got buckets\n%q\nwant\n%q", got, want)
	}

	// A decision names the buckets of its stage and route by position
	// + 1; 0 for none, allowed or denied.
	e := newEngine(p)
	for i, c := range []struct {
		stage, method, path string
		stageBucket, route  int
	}{
		{"prod", "GET", "/items", 3, 4},
		{"prod", "POST", "/orders", 3, 5},
		{"prod", "GET", "/nowhere", 3, 0},
		{"beta", "GET", "/items", 0, 2},
		{"beta", "GET", "/free", 0, 0},
	} {
		r := anon(c.method, c.path, "198.51.100.7")
		r.API, r.Stage = "shop", c.stage
		d := e.do(t, t0, r)
		if d.StageBucket != c.stageBucket || d.RouteBucket != c.route {
			t.Errorf("step %d (%s %s %s): got stage bucket %d, route bucket %d, want %d, %d",
				i, c.stage, c.method, c.path, d.StageBucket, d.RouteBucket, c.stageBucket, c.route)
		}
		for _, l := range d.AppliedLimits() {
			if l.Tier != policy.TierAccount && l.Tier != policy.TierStage && l.Tier != policy.TierRoute {
				continue
			}
			at := map[policy.Tier]int{policy.TierAccount: 1, policy.TierStage: d.StageBucket, policy.TierRoute: d.RouteBucket}[l.Tier]
			if at == 0 || p.RateBuckets()[at-1].Tier != l.Tier || p.RateBuckets()[at-1].Throttle.Burst != l.Quota {
				t.Errorf("step %d: limit %s (burst %d) is not the bucket at %d", i, l.Tier, l.Quota, at)
			}
		}
	}
}

// TestRateBucketsNone: a policy without buckets lists none.
func TestRateBucketsNone(t *testing.T) {
	p := parse(t, "version: 1\napis:\n  shop:\n    stages:\n      prod:\n        routes:\n          - match: \"GET /items\"\n")
	if n := len(p.RateBuckets()); n != 0 {
		t.Fatalf("got %d buckets, want 0", n)
	}
}
