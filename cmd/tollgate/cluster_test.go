package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/internal/busyhost"
	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// These tests run three real tollgate processes on a real Redis Cluster of
// three primaries (redis-cluster://), at the default flags: per-customer
// limits stay exact as the state spreads over the primaries, and a shared
// bucket, leased in batches, stays within its stated bound (SPEC §5,
// store/redis/spread.go and leases.go).

// The keyed load of TestClusterAtDefaults: each set holds clusterCustomers
// keys of the payments example, each its own customer, half on the free plan
// (a burst of 12 that hardly refills: burst12), half on pro (a daily quota
// of clusterQuota: proQuota). Each repetition uses a fresh set: fresh limits.
const (
	clusterCustomers = 100
	clusterQuota     = 6
	// freeSends and proSends are the requests sent per customer: each
	// limit denies a third or more of them.
	freeSends, proSends = 18, 10
	// clusterExact is how many repetitions must be undisturbed and exact;
	// up to maxDisturbed more may be disturbed (clusterSets in all).
	clusterExact = 3
	clusterSets  = clusterExact + maxDisturbed
	// clusterWorkers is how many Checks are in flight at once, spread
	// over the three processes.
	clusterWorkers = 60
)

// noProAlerts takes the quota alerts off the pro plan. Each pro customer
// here crosses both thresholds within a second, and quota events go to the
// one outbox, on the slot of the store's prefix (store/redis/outbox.go):
// 100 customers' events in a second would make that primary's share of the
// scripts one of alerts, which real customers send at most twice a day.
var noProAlerts = [2]string{"    alerts: {thresholds: [80, 100], forecast: true, sinks: [ops]}\n    stages:\n      - stage:", "    stages:\n      - stage:"}

// clusterKeys returns the keys of a set: the even ones free, the odd ones
// pro.
func clusterKeys(set int) []testKey {
	var keys []testKey
	for i := range clusterCustomers {
		plan := "free"
		if i%2 == 1 {
			plan = "pro"
		}
		id := fmt.Sprintf("cluster-%d-%s-%03d", set, plan, i)
		keys = append(keys, testKey{id, plan, "tg_test_" + strings.ReplaceAll(id, "-", "_")})
	}
	return keys
}

// TestClusterAtDefaults: three processes at the default flags on a
// 3-primary Redis Cluster, with both cores kept busy during each load.
//
//  1. 100 customers at once, their requests shuffled over the processes:
//     each free customer is admitted exactly its burst of 12, each pro
//     customer exactly its quota, clusterExact times over (at most
//     maxDisturbed repetitions may have a decision that missed the budget).
//  2. The customers' state is on every primary, and no primary runs more
//     than 60% of the scripts of that load.
//  3. The account bucket, reloaded to a small burst and rate and leased by
//     the three processes, admits at most burst + rate×T + 3×leaseSize
//     over the load's time T, and no less than burst − 3×leaseSize; the
//     requests it denies take nothing of their customer's.
func TestClusterAtDefaults(t *testing.T) {
	testclock.AwayFromMidnight(t)
	c := redistest.StartCluster(t, 3)
	var keys []testKey
	for set := range clusterSets {
		keys = append(keys, clusterKeys(set)...)
	}
	edits := [][2]string{burst12, proQuota(clusterQuota), noProAlerts}
	file := replicaPolicy(t, edits, keys...)
	procs := startReplicas(t, 3, file, c.URL())

	if err := c.ResetStats(); err != nil {
		t.Fatal(err)
	}
	clusterCustomersExact(t, procs)
	clusterSpread(t, c)
	clusterAccountBound(t, procs, file, edits, keys)
}

// clusterCustomersExact is step 1 of TestClusterAtDefaults.
func clusterCustomersExact(t *testing.T, procs []*proc) {
	t.Helper()
	exact, disturbed := 0, 0
	for set := 0; exact < clusterExact; set++ {
		keys := clusterKeys(set)
		reqs := make([]*authv3.CheckRequest, len(keys))
		want := make([]int64, len(keys))
		var order []int // each request's key, shuffled
		for i, k := range keys {
			reqs[i] = checkRequest("198.51.100.30", "POST", "/partners/p-1/transactions", k.value)
			sends := proSends
			want[i] = clusterQuota
			if k.plan == "free" {
				want[i], sends = 12, freeSends
			}
			order = append(order, slices.Repeat([]int{i}, sends)...)
		}
		rand.New(rand.NewPCG(uint64(set), 7)).Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		allowed := make([]atomic.Int64, len(keys))
		var next atomic.Int64
		before := missedBudget(procs)
		stop := busyhost.Spin(t, time.Minute)
		got := sendLoadWith(t, procs, clusterWorkers, len(order), func(p *proc) (int, error) {
			k := order[next.Add(1)-1]
			status, err := p.decide(reqs[k])
			if status == 200 {
				allowed[k].Add(1)
			}
			return status, err
		})
		stop()
		// A repetition in which a decision missed the budget (decided
		// locally, with a third of each limit) says nothing of
		// exactness; systematic misses fail the test.
		if n := missedBudget(procs) - before; n > 0 {
			if disturbed++; disturbed > maxDisturbed {
				t.Fatalf("step 1, set %d: %v decisions missed the default budget; %d repetitions had such", set, n, disturbed)
			}
			t.Logf("step 1, set %d: %v decisions missed the default budget on this loaded machine; one more", set, n)
			continue
		}
		var wrong []string
		total := int64(0)
		for i, k := range keys {
			total += want[i]
			if n := allowed[i].Load(); n != want[i] {
				wrong = append(wrong, fmt.Sprintf("%s (%s) %d", k.id, k.plan, n))
			}
		}
		if len(wrong) > 0 || got[200] != int(total) || got[429] != len(order)-int(total) {
			t.Errorf("step 1, set %d: got %v; %d customers not admitted exactly %d (free) or %d (pro): %s",
				set, got, len(wrong), 12, clusterQuota, strings.Join(wrong[:min(len(wrong), 10)], ", "))
		}
		exact++
	}
	for i, n := range allowedBy(procs, "free") {
		if n <= 0 {
			t.Errorf("step 1: replica %d allowed %v free requests, want some", i, n)
		}
	}
}

// clusterSpread is step 2 of TestClusterAtDefaults: after the keyed load,
// every primary holds state, and none ran more than 60% of the scripts (the
// customers' calls go to their customers' primaries; the shared buckets'
// leases and the heartbeats are few).
func clusterSpread(t *testing.T, c *redistest.Cluster) {
	t.Helper()
	sizes, err := c.DBSizes()
	if err != nil {
		t.Fatal(err)
	}
	calls, err := c.ScriptCalls()
	if err != nil {
		t.Fatal(err)
	}
	var all int64
	for _, n := range calls {
		all += n
	}
	for i, n := range calls {
		share := float64(n) / float64(max(all, 1))
		t.Logf("step 2: primary %d holds %d keys and ran %d of the %d scripts (%.1f%%)", i, sizes[i], n, all, 100*share)
		if sizes[i] <= 0 {
			t.Errorf("step 2: primary %d holds no state: keys %v", i, sizes)
		}
		if share > 0.6 {
			t.Errorf("step 2: primary %d ran %.1f%% of the scripts (%v), want at most 60%%", i, 100*share, calls)
		}
	}
}

// The account throttle of the payments example, the rate that step 3
// gives it (requests a second), and the example's enterprise key (customer
// globex: a plan bucket of 1,000/s, no quota).
const (
	accountThrottle = "  throttle: {rate: 10000, burst: 5000}"
	accountRate     = 10
	entKey          = "tg_demo_ent_00000000000000001"
)

// wideRoutes lifts the route buckets out of step 3's way: step 1's
// load may leave the route's bucket (2,000, refilling at 1,000/s)
// short when step 3 starts on a quick machine, and only the account
// is to deny there.
var wideRoutes = [2]string{"        route_defaults:                           # each route's own bucket unless it has a throttle\n          throttle: {rate: 1000, burst: 2000}",
	"        route_defaults:\n          throttle: {rate: 100000, burst: 100000}"}

// clusterAccountBound is step 3 of TestClusterAtDefaults. The policy file
// is replaced (the processes reload it) with an account bucket of a small
// rate and a burst of 240 (one more each attempt: a fresh bucket, whose key
// is its limit's digest); 360 requests of the enterprise key, more than
// the account allows, are spread over the three processes, each seeing
// about a third: fewer than the burst, so that a pool that took the whole
// burst could not spend it.
//
// The upper bound is the one leases.go states: over the load's time T at
// most burst + rate×T + replicas×leaseSize. The lower bound follows from
// the design while every replica has requests to decide: a leased token is
// spent or sits in a pool, which holds at most leaseSize and asks for a
// lease only when empty, and a pool denies only when a lease found the
// bucket in Redis empty (leases.go's maxEmpty); so a denial means the
// bucket was drained, its burst at least leased out, and at most
// replicas×leaseSize of it still unspent at the end. A request the account
// denies takes nothing of its customer's, on another slot: globex's usage
// grows by the requests allowed. All this holds for decisions made on
// Redis: an attempt in which one missed the budget (decided locally with a
// third of each limit) is disturbed.
func clusterAccountBound(t *testing.T, procs []*proc, file string, edits [][2]string, keys []testKey) {
	t.Helper()
	const n = 360
	day := time.Now().UTC().Format(time.DateOnly)
	used := func() int64 {
		var usage struct{ Items map[string][][2]int64 }
		if code := procs[0].get("/v1/usage?plan=enterprise&customer=globex&start="+day+"&end="+day, nil, &usage); code != 200 {
			t.Fatalf("step 3: /v1/usage: got %d %+v, want 200", code, usage)
		}
		if days := usage.Items["globex"]; len(days) == 1 {
			return days[0][0]
		}
		return 0
	}
	for attempt, disturbed := 0, 0; ; attempt++ {
		burst := int64(240 + attempt)
		account := [2]string{accountThrottle, fmt.Sprintf("  throttle: {rate: %d, burst: %d}", accountRate, burst)}
		reload(t, procs, file, replicaPolicy(t, append(slices.Clip(edits), account, wideRoutes), keys...))
		for i, p := range procs {
			if r := p.metric("tollgate_replicas"); r != 3 {
				t.Fatalf("step 3: replica %d counts %v replicas, want 3", i, r)
			}
		}
		// leaseSize of store/redis/leases.go: a quarter of the burst
		// shared by the 3 live replicas, at least 1.
		lease := max(burst/(4*3), 1)
		deniedBy := func() (d float64) {
			for _, p := range procs {
				d += max(p.metric(`tollgate_decisions_total{api="payments",outcome="deny",plan="enterprise",reason="throttle:account",stage="prod"}`), 0)
			}
			return d
		}
		missedBefore, deniedBefore, usedBefore := missedBudget(procs), deniedBy(), used()
		stop := busyhost.Spin(t, time.Minute)
		start := time.Now()
		got := sendLoad(t, procs, clusterWorkers, n, checkRequest("198.51.100.31", "POST", "/partners/p-1/transactions", entKey))
		took := time.Since(start)
		stop()
		if m := missedBudget(procs) - missedBefore; m > 0 {
			if disturbed++; disturbed > maxDisturbed {
				t.Fatalf("step 3, attempt %d: %v decisions missed the default budget; %d attempts had such", attempt, m, disturbed)
			}
			t.Logf("step 3, attempt %d: %v decisions missed the default budget on this loaded machine; one more", attempt, m)
			continue
		}
		upper := float64(burst) + accountRate*took.Seconds() + float64(3*lease)
		lower := burst - 3*lease
		t.Logf("step 3: burst %d, rate %d/s, leaseSize %d: %d of %d allowed in %v; bounds [%d, %.1f]",
			burst, accountRate, lease, got[200], n, took.Round(time.Millisecond), lower, upper)
		if float64(got[200]) > upper || int64(got[200]) < lower {
			t.Errorf("step 3: the account bucket allowed %d in %v, want between %d and %.1f", got[200], took, lower, upper)
		}
		if denied := deniedBy() - deniedBefore; got[429] == 0 || float64(got[429]) != denied || got[200]+got[429] != n {
			t.Errorf("step 3: got %v and %v account denials, want only 200s and 429s, the 429s the account's (some)", got, denied)
		}
		if u := used() - usedBefore; u != int64(got[200]) {
			t.Errorf("step 3: globex's usage grew by %d, want the %d allowed", u, got[200])
		}
		return
	}
}

// reload puts the policy file next in place of file and waits until every
// process serves it.
func reload(t *testing.T, procs []*proc, file, next string) {
	t.Helper()
	reloads := func(p *proc) float64 { return p.metric(`tollgate_policy_reloads_total{result="success"}`) }
	var before []float64
	for _, p := range procs {
		before = append(before, reloads(p))
	}
	// A rename replaces the file whole: the watcher of its directory or
	// the SIGHUP, whichever comes first, loads it.
	if err := os.Rename(next, file); err != nil {
		t.Fatal(err)
	}
	for i, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for reloads(p) <= before[i] {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d did not reload the policy within 10s\n%s", i, p.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
