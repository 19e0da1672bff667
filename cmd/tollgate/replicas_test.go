package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/store/redis/redistest"
)

// These tests run three real tollgate processes on one real Redis.

// proKey is the payments example's pro key (customer acme).
const proKey = "tg_demo_pro_00000000000000001"

// replicaPolicy writes the payments example with limits small enough to
// exhaust in a test: the free plan bursts 60 and hardly refills, the pro
// plan has a quota of 100 a day, and the per-IP WAF rule on POST
// /transactions allows 50 an hour.
func replicaPolicy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, r := range [][2]string{
		{"  free:\n    throttle: {rate: 10, burst: 20}", "  free:\n    throttle: {rate: 0.001, burst: 60}"},
		{"quota: {limit: 100000, period: day}", "quota: {limit: 100, period: day}"},
		{"rate_based: {limit: 1000, window: 5m, key: ip}", "rate_based: {limit: 50, window: 1h, key: ip}"},
	} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("%s: no %q", example, r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// sendLoad sends n requests from workers goroutines spread over the processes
// and counts the answers by status.
func sendLoad(t *testing.T, procs []*proc, workers, n int, req *authv3.CheckRequest) map[int]int {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	counts := map[int]int{}
	var errs []error
	var wg sync.WaitGroup
	for w := range workers {
		p := procs[w%len(procs)]
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				status, err := p.decide(req)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					counts[status]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d calls failed, the first: %v", len(errs), errs[0])
	}
	return counts
}

// TestReplicasShareLimits: three processes sharing one Redis, under
// concurrent load spread over all three, enforce each limit exactly once
// in total: a burst, a quota and a WAF rate rule.
func TestReplicasShareLimits(t *testing.T) {
	awayFromMidnight(t)
	if now := time.Now(); now.Add(10*time.Second).Truncate(time.Hour) != now.Truncate(time.Hour) {
		time.Sleep(15 * time.Second) // the WAF rule's hour window must not turn during the test
	}
	srv := redistest.Start(t)
	policyFile := replicaPolicy(t)
	var procs []*proc
	for range 3 {
		procs = append(procs, startProc(t, policyFile, srv.URL(), "--store-timeout", "1s"))
	}
	for _, c := range []struct {
		name    string
		req     *authv3.CheckRequest
		n       int
		allowed int
		denied  int // status of the denials
	}{
		{"free plan: burst 60, rate 0.001", checkRequest("198.51.100.7", "POST", "/partners/p-1/transactions", freeKey), 300, 60, 429},
		{"pro plan: quota 100", checkRequest("198.51.100.8", "POST", "/partners/p-1/transactions", proKey), 300, 100, 429},
		{"waf: 50 per ip", checkRequest("198.51.100.9", "POST", "/transactions", ""), 300, 50, 403},
	} {
		got := sendLoad(t, procs, 30, c.n, c.req)
		if got[200] != c.allowed || got[c.denied] != c.n-c.allowed {
			t.Errorf("%s: got %v, want exactly %d allowed and %d × %d", c.name, got, c.allowed, c.n-c.allowed, c.denied)
		}
	}
	// Each replica answered some of them.
	for i, p := range procs {
		if n := p.metric(`tollgate_decisions_total{api="payments",outcome="allow",plan="free",reason="none",stage="prod"}`); n <= 0 {
			t.Errorf("replica %d allowed %v free requests, want some", i, n)
		}
	}
}

// TestRedisOutage: with Redis stopped under load, every Check answers within
// the store's budget plus a small margin, as allow or 503 per
// --on-store-error, and the processes' goroutines do not pile up; /readyz
// and the degraded gauge show it. With Redis back, enforcement resumes
// without a restart.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	policyFile := replicaPolicy(t)
	const budget = 5 * time.Millisecond
	open := startProc(t, policyFile, srv.URL(), "--store-timeout", budget.String(), "--on-store-error", "allow")
	closed := startProc(t, policyFile, srv.URL(), "--store-timeout", budget.String(), "--on-store-error", "deny")
	procs := []*proc{open, closed}
	req := checkRequest("198.51.100.7", "POST", "/partners/p-1/transactions", freeKey)
	// 1. Warm up: every worker's connection, and the pools to Redis.
	warm := checkRequest("198.51.100.7", "GET", "/status", "")
	sendLoad(t, procs, 20, 400, warm)
	goroutines := func(p *proc) float64 { return p.metric("go_goroutines") }
	before := []float64{goroutines(open), goroutines(closed)}

	// 2. Redis goes away under load from 20 workers.
	stop := make(chan struct{})
	type sample struct {
		took   time.Duration
		status int
		err    error
		proc   int
	}
	var mu sync.Mutex
	var samples []sample
	var outage atomic.Bool
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				status, err := procs[w%2].decide(req)
				took := time.Since(start)
				if outage.Load() {
					mu.Lock()
					samples = append(samples, sample{took, status, err, w % 2})
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	srv.Stop()
	outage.Store(true)
	time.Sleep(1500 * time.Millisecond)
	during := []float64{goroutines(open), goroutines(closed)}
	var ready struct {
		Status string
		Store  struct{ Degraded bool }
	}
	readyCode := open.get("/readyz", nil, &ready)
	degraded := open.metric("tollgate_store_degraded")
	close(stop)
	wg.Wait()

	if len(samples) < 100 {
		t.Fatalf("step 2: got %d answers during the outage, want many", len(samples))
	}
	// What is checked is that no decision waits on the dead Redis (go-redis
	// would wait seconds to dial or read): the margin is for a shared 2-core
	// machine under load, where one gRPC round trip has taken 130 ms.
	const margin = time.Second
	var took []time.Duration
	for _, s := range samples {
		took = append(took, s.took)
		want := 200
		if s.proc == 1 {
			want = 503
		}
		if s.err != nil || (s.status != want && s.status != 429) {
			// 429: a decision that reached Redis just before it stopped.
			t.Fatalf("step 2: replica %d answered %d, %v; want %d", s.proc, s.status, s.err, want)
		}
	}
	slices.Sort(took)
	p50, p99, worst := took[len(took)/2], took[len(took)*99/100], took[len(took)-1]
	t.Logf("outage: %d answers, p50 %v, p99 %v, max %v", len(took), p50, p99, worst)
	if worst > budget+margin {
		t.Errorf("step 2: the slowest answer took %v, want at most %v + %v", worst, budget, margin)
	}
	for i := range procs {
		if during[i] > before[i]+10 {
			t.Errorf("step 2: replica %d: %v goroutines during the outage, %v before: they pile up", i, during[i], before[i])
		}
	}
	if readyCode != 503 || ready.Status != "not ready" || !ready.Store.Degraded || degraded != 1 {
		t.Errorf("step 2: got readyz %d %+v and degraded %v, want 503, not ready, degraded", readyCode, ready, degraded)
	}

	// 3. Redis is back (empty): the burst of 60 is enforced again. The
	// fail-closed replica shows it: a call that missed its budget while
	// the pool redials answers 503, and may or may not have taken.
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, err := closed.decide(checkRequest("198.51.100.7", "GET", "/status", ""))
		if err == nil && status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("step 3: no recovery within 10s: %d, %v", status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sendLoad(t, procs, 20, 400, warm)
	got := sendLoad(t, []*proc{closed}, 10, 100, req)
	if got[200] > 60 || got[200] < 60-got[503] || got[429] < 100-60-got[503] || got[200]+got[429]+got[503] != 100 {
		t.Errorf("step 3: got %v, want 60 allowed and 40 × 429 (503s aside)", got)
	}
	// The fail-open replica recovers on its own too (its answers were
	// 200 all along, so only readiness tells).
	for _, p := range procs {
		deadline := time.Now().Add(10 * time.Second)
		for p.get("/readyz", nil, nil) != 200 {
			if time.Now().After(deadline) {
				t.Fatalf("step 3: readyz not 200 within 10s of Redis's return")
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.decide(warm) // a decision that reaches the store clears degraded
		if d := p.metric("tollgate_store_degraded"); d != 0 {
			t.Errorf("step 3: degraded: got %v, want 0", d)
		}
	}
}
