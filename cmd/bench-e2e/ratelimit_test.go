package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/load"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestRatelimitEnv: ratelimit listens on loopback only, reads its
// configuration from root without watching it, reaches Redis over tcp,
// and the extra settings come last, so that they win.
func TestRatelimitEnv(t *testing.T) {
	env := ratelimitEnv(rlPorts{grpc: 1001, http: 1002, debug: 1003, metrics: 1004}, "127.0.0.1:6400", "/tmp/rt",
		[]string{"USE_PROMETHEUS=false"})
	for _, want := range []string{"GRPC_HOST=127.0.0.1", "GRPC_PORT=1001", "HOST=127.0.0.1", "PORT=1002",
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=1003", "PROMETHEUS_ADDR=127.0.0.1:1004", "USE_STATSD=false",
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL=127.0.0.1:6400", "RUNTIME_ROOT=/tmp/rt", "RUNTIME_WATCH_ROOT=false"} {
		if !slices.Contains(env, want) {
			t.Errorf("got %q, want %s in it", env, want)
		}
	}
	if env[len(env)-1] != "USE_PROMETHEUS=false" {
		t.Errorf("got %q, want the extra setting last", env)
	}
}

// tinyPolicy has one anonymous route at 1,000 a second and one keyed
// route, and a plan whose rate is ten a day.
const tinyPolicy = `version: 1
apis:
  shop:
    stages:
      live:
        routes:
          - match: "GET /items"
            throttle: {rate: 1000, burst: 10}
          - match: "POST /orders"
            api_key: required
usage_plans:
  tiny:
    throttle: {rate: 0.000116, burst: 1}   # 10 a day
    stages: [shop/live]
`

// TestRatelimitUnderLoad runs the real envoyproxy/ratelimit, as bench-e2e
// built it, on a real Redis with the configuration RateLimitConfig writes,
// and sends it the ratelimit mode's requests: 200 requests of one key on
// a plan of ten a day get ten answers OK (twenty if a day's window ends
// meanwhile) and the rest 429, so the key's descriptor matched its limit
// and Redis counted it; anonymous requests within their route's rate are
// all OK. It skips when the binary has not been built (make bench-e2e
// builds it; this test does not, as that takes minutes).
func TestRatelimitUnderLoad(t *testing.T) {
	dir, err := ratelimitDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ratelimit")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("envoyproxy/ratelimit is not built (%v): make bench-e2e builds it into %s", err, dir)
	}
	rs := redistest.Start(t)
	p, err := policyfile.Parse("tiny.yaml", []byte(tinyPolicy))
	if err != nil {
		t.Fatal(err)
	}
	config, err := load.RateLimitConfig(p, 5, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(config), "unit: day") {
		t.Fatalf("config: want a daily limit:\n%s", config)
	}
	srv, err := startRatelimit(t.Context(), bin, t.TempDir(), rs.Addr(), config, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	for _, c := range []struct {
		mix      load.Mix
		min, max int64 // answers OK
	}{
		{load.Mix{Keyed: 1}, 10, 20},
		{load.Mix{Anonymous: 1}, 200, 200},
	} {
		r, err := load.Run(t.Context(), load.Config{Target: srv.addr, Mode: load.RateLimit, Workers: 4, Conns: 2,
			Requests: 200, Policy: p, Keys: 1, Mix: c.mix, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests != 200 || r.Errors != 0 || r.Allowed < c.min || r.Allowed > c.max || r.Allowed+r.TooMany != 200 {
			t.Errorf("%+v: got %d requests, 200: %d, 429: %d, errors %d (%s); want 200, %d to %d OK and the rest 429",
				c.mix, r.Requests, r.Allowed, r.TooMany, r.Errors, r.FirstError, c.min, c.max)
		}
	}
}
