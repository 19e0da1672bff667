package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/busyhost"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// openCluster opens a store on the cluster c with o, closed when the test
// ends.
func openCluster(t *testing.T, c *redistest.Cluster, o Options) *Store {
	t.Helper()
	s, err := Open(c.URL(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !s.spread {
		t.Fatal("a store on a cluster does not spread its state")
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// planOp is a customer's plan bucket.
func planOp(limit, customer string, rate float64, burst int64) policy.Op {
	return policy.Op{Key: policy.Key{Limit: limit, Subject: customer}, Tier: policy.TierPlan, Throttle: policy.NewThrottle(rate, burst)}
}

// accountOp is the shared account bucket.
func accountOp(limit string, rate float64, burst int64) policy.Op {
	return policy.Op{Key: policy.Key{Limit: limit}, Tier: policy.TierAccount, Throttle: policy.NewThrottle(rate, burst)}
}

// TestSpreadMatchesMemory: on a 3-primary cluster, over fixed instants, a
// customer's buckets and quotas, shadow ones too, and WAF counters of
// several homes (an address, a header) give what store/memory gives, step
// for step: they are exact, each on its own slot.
func TestSpreadMatchesMemory(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{CallerClock: true})
	m := memory.New()
	rng := rand.New(rand.NewPCG(3, 4))
	byHeader := policy.Hit{Key: policy.Key{Limit: "waf-h", Subject: "agent-x"}, Limit: 30, Window: 5 * time.Second}
	hits := []policy.Hit{hit("waf-a", 40, 10*time.Second), byHeader, hit("waf-b", 25, 3*time.Second)}
	for _, customer := range []string{"acme", "globex", "initech"} {
		ops := []policy.Op{
			planOp("plan", customer, 0.723457, 4),
			shadow(planOp("shadow-plan", customer, 1.5, 3)),
			quotaOp("quota", 300, t0.Add(-time.Hour), t0.Add(time.Hour)),
			shadow(quotaOp("shadow-quota", 100, t0.Add(-time.Hour), t0.Add(time.Hour))),
		}
		for i := 2; i < 4; i++ {
			ops[i].Key.Subject = customer
		}
		usage := policy.Key{Limit: "usage", Subject: customer, Period: t0.Truncate(24 * time.Hour).Unix()}
		t.Logf("customer %s", customer)
		taken, denied := matchMemory(t, s, m, rng, 800, hits, ops, usage, func(policy.Op) bool { return true })
		if taken < 50 || denied < 50 {
			t.Errorf("%s: got %d batches taken and %d denied, want both often", customer, taken, denied)
		}
		for _, k := range []policy.Key{ops[2].Key, ops[3].Key, usage} {
			gu, gg, err := s.Counter(k)
			wu, wg, _ := m.Counter(k)
			if err != nil || gu != wu || gg != wg {
				t.Errorf("%s: counter %s: got %d, %d, %v, want %d, %d", customer, k.Limit, gu, gg, err, wu, wg)
			}
		}
	}
}

// TestOneSlotLayout: layout=one-slot keeps every key of a cluster on the
// prefix's slot, as before the state spread, in one call a decision.
func TestOneSlotLayout(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s, err := Open(c.URL()+"&layout=one-slot", Options{CallerClock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.spread {
		t.Fatal("layout=one-slot spreads")
	}
	plan := planOp("plan", "acme", 1, 2)
	for i, want := range []bool{true, true, false} {
		if b := apply(t, s, t0, policy.Key{}, nil, plan, accountOp("account", 1, 10)); b.Taken != want {
			t.Fatalf("request %d: taken %v, want %v", i, b.Taken, want)
		}
	}
	if k := s.key('b', plan.Key); !strings.HasPrefix(k, DefaultPrefix) {
		t.Errorf("key %q: not on the prefix's slot", k)
	}
}

// TestSpreadHomes: a customer's keys share its slot, a client's WAF
// counters theirs, and 60 customers' state is on every primary.
func TestSpreadHomes(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{CallerClock: true})
	slot := func(key string) string {
		n, err := c.SlotOwner(key)
		if err != nil {
			t.Fatal(err)
		}
		return n.Addr()
	}
	for i := range 60 {
		customer := fmt.Sprint("customer-", i)
		plan, quota := planOp("plan", customer, 1, 5), quotaOp("quota", 10, t0, t0.Add(time.Hour))
		quota.Key.Subject = customer
		usage := policy.Key{Limit: "usage", Subject: customer, Period: t0.Unix()}
		apply(t, s, t0, usage, nil, plan, quota)
		if a, b, u := slot(s.key('b', plan.Key)), slot(s.key('c', quota.Key)), slot(s.key('c', usage)); a != b || a != u {
			t.Fatalf("%s: plan bucket on %s, quota on %s, usage on %s: want one node", customer, a, b, u)
		}
	}
	ip := netip.MustParseAddr("198.51.100.9")
	h1 := policy.Key{Limit: "waf-1", Addr: ip}
	h2 := policy.Key{Limit: "waf-2", Subject: "/pay", Addr: ip}
	if s.key('w', h1)[:len(s.statePrefix)+18] != s.key('w', h2)[:len(s.statePrefix)+18] {
		t.Errorf("one client's WAF counters have different homes: %s, %s", s.key('w', h1), s.key('w', h2))
	}
	sizes, err := c.DBSizes()
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		if n == 0 {
			t.Errorf("primary %d holds no state: %v", i, sizes)
		}
	}
}

// TestLeasedBucket: three replicas share an account bucket that does not
// refill (60 tokens) through leases, under concurrency on a busy host: they
// never admit more than 60 together, the tokens of requests their
// customers' buckets deny go back, and once the pools give back what they
// hold, the fleet has admitted exactly 60.
func TestLeasedBucket(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	busyhost.Spin(t, time.Minute)
	var stores []*Store
	for range 3 {
		stores = append(stores, openCluster(t, c, Options{}))
	}
	waitFor(t, "three replicas", func() bool {
		for _, s := range stores {
			s.beat()
		}
		return stores[0].Replicas() == 3 && stores[2].Replicas() == 3
	})
	exactRuns(t, func(run string) int {
		account := accountOp("account"+run, 0.0001, 60)
		var taken, missed, customers atomic.Int64
		round := func(n int) {
			var wg sync.WaitGroup
			for i, s := range stores {
				for g := range 4 {
					wg.Go(func() {
						for range n {
							// Each goroutine's own customer, whose bucket
							// of 3 denies a third of its requests or more.
							customer := fmt.Sprint(run, "-", i, "-", g, "-", customers.Add(1)%4)
							b := new(policy.Batch)
							b.Reset()
							b.Ops = append(b.Ops, planOp("plan"+run, customer, 0.0001, 3), account)
							switch err := s.Apply(time.Now(), b); {
							case budgetMissed(err):
								missed.Add(1)
							case err != nil:
								t.Errorf("Apply: %v", err)
							case b.Taken:
								taken.Add(1)
							}
						}
					})
				}
			}
			wg.Wait()
		}
		round(8) // 96 requests; the customers' buckets deny some
		if n := missed.Load(); n > 0 {
			return int(n)
		}
		if n := taken.Load(); n > 60 {
			t.Fatalf("the fleet admitted %d with a shared bucket of 60", n)
		}
		time.Sleep(3 * leaseIdle) // the pools give back what they hold
		for _, s := range stores {
			s.returnIdle(false)
		}
		account.Key.Limit = "account" + run
		var left int
		for i := range 200 {
			b := apply(t, stores[i%3], time.Now(), policy.Key{}, nil, planOp("plan-after"+run, fmt.Sprint("late-", i), 1, 1), account)
			if b.Taken {
				left++
			}
		}
		if n := taken.Load() + int64(left); n != 60 {
			t.Errorf("the fleet admitted %d, then %d more: %d in all, want exactly the bucket's 60", taken.Load(), left, n)
		}
		return 0
	})
}

// TestSpreadConcurrency: on a cluster the route's concurrency slots are on
// their own slot; a request its customer's quota denies gives its slot
// back, and takes no quota.
func TestSpreadConcurrency(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{CallerClock: true})
	slot := func(lease string) policy.Op {
		return policy.Op{Key: policy.Key{Limit: "cc"}, Tier: policy.TierConcurrency, Quota: 2, Lease: lease}
	}
	q := quotaOp("q", 3, t0.Add(-time.Hour), t0.Add(time.Hour))
	for i, want := range []bool{true, true, false} {
		b := apply(t, s, t0, policy.Key{}, nil, q, slot(fmt.Sprint("lease-", i)))
		if b.Taken != want {
			t.Fatalf("step 1.%d: got taken %v, want %v", i, b.Taken, want)
		}
		if !want && (b.Ops[1].OK || b.Ops[1].Wait != time.Second) {
			t.Fatalf("step 1.%d: got %+v, want a denial with wait 1s", i, b.Ops[1])
		}
	}
	if used, _, _ := s.Counter(q.Key); used != 2 {
		t.Fatalf("step 1: got %d quota used, want 2 (the denied request took none)", used)
	}
	if err := s.Release(slot("").Key, "lease-0"); err != nil {
		t.Fatal(err)
	}
	if b := apply(t, s, t0, policy.Key{}, nil, q, slot("lease-3")); !b.Taken {
		t.Fatal("step 2: no slot after a release")
	}
	// The quota is used up: the slot this request took goes back.
	if err := s.Release(slot("").Key, "lease-1"); err != nil {
		t.Fatal(err)
	}
	if b := apply(t, s, t0, policy.Key{}, nil, q, slot("lease-4")); b.Taken || b.Ops[0].OK {
		t.Fatalf("step 3: got %+v, want the quota to deny", b.Ops)
	}
	s.background.Wait() // the slot's release
	if b := apply(t, s, t0, policy.Key{}, nil, slot("lease-5")); !b.Taken {
		t.Fatal("step 4: the slot of a request the quota denied was not given back")
	}
}

// TestSpreadLocal: with the customer's primary hung, a cluster store
// decides locally, and what it counted reaches that primary once it goes
// on, once.
func TestSpreadLocal(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{Local: true, CallerClock: true})
	s.beat()
	now := time.Now()
	q := quotaOp("q", 10, now.Add(-time.Hour), now.Add(time.Hour))
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: now.UTC().Truncate(24 * time.Hour).Unix()}
	for range 7 {
		if b := apply(t, s, now, usage, nil, q); !b.Taken || b.Local {
			t.Fatalf("before: got taken %v local %v, want taken on Redis", b.Taken, b.Local)
		}
	}
	node, err := c.SlotOwner(s.key('c', q.Key))
	if err != nil {
		t.Fatal(err)
	}
	node.Pause()
	taken := 0
	for i := range 6 {
		b := apply(t, s, now, usage, nil, q)
		if !b.Local {
			node.Resume()
			t.Fatalf("during, decision %d: not local", i)
		}
		if b.Taken {
			taken++
		}
	}
	node.Resume()
	if taken != 3 {
		t.Fatalf("during: got %d taken, want the 3 left", taken)
	}
	if err := c.WaitOK(); err != nil {
		t.Fatal(err)
	}
	// A push makes a call per counter: the quota's, then the usage's.
	waitFor(t, "the local counts to reach Redis", func() bool {
		decideOnce(s)
		used, _, _ := s.Counter(q.Key)
		uses, _, _ := s.Counter(usage)
		return used >= 10 && uses >= 10
	})
	if used, _, err := s.Counter(q.Key); used != 10 || err != nil {
		t.Errorf("quota after: got %d, %v, want 10", used, err)
	}
	if used, _, err := s.Counter(usage); used != 10 || err != nil {
		t.Errorf("usage after: got %d, %v, want 10", used, err)
	}
}

// TestLeasedBucketDeniesWithTokensLeft: as many concurrent decisions as a
// fresh shared bucket holds are all admitted, round after round. The
// decision that asks for a lease takes a token of it before the decisions
// that waited for that lease wake: else they may take them all first and
// leave it denied while the bucket in Redis holds more (a pool denies only
// when a lease found the bucket empty). The bucket of 4 is leased a token
// at a time (leaseSize: a quarter of it, one replica); many Ps run the
// waiters that a lease wakes beside its asker, as a busy server's do.
func TestLeasedBucketDeniesWithTokensLeft(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{})
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(16))
	const burst, rounds = 4, 200
	exactRuns(t, func(run string) int {
		for round := range rounds {
			account := accountOp(fmt.Sprint("account", run, "-", round), 0.0001, burst)
			var taken, missed atomic.Int64
			start := make(chan struct{})
			var wg sync.WaitGroup
			for range burst {
				wg.Go(func() {
					<-start
					b := new(policy.Batch)
					b.Reset()
					b.Ops = append(b.Ops, account)
					switch err := s.Apply(time.Now(), b); {
					case budgetMissed(err):
						missed.Add(1)
					case err != nil:
						t.Errorf("Apply: %v", err)
					case b.Taken:
						taken.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if n := missed.Load(); n > 0 {
				return int(n)
			}
			if n := taken.Load(); n != burst {
				left := 0
				for apply(t, s, time.Now(), policy.Key{}, nil, account).Taken {
					left++
				}
				t.Fatalf("round %d: %d concurrent decisions on a fresh bucket of %d: %d admitted, then %d more one by one; want all at once",
					round, burst, burst, n, left)
			}
		}
		return 0
	})
}

// TestSpreadCountersWithoutSubject: two WAF counters keyed by headers that
// the request sends empty have neither address nor subject, so each is at
// home on its own limit's slot; on different nodes they are counted, not
// sent in one call that the node refuses (a non local key).
func TestSpreadCountersWithoutSubject(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{CallerClock: true})
	owner := func(limit string) string {
		n, err := c.SlotOwner(s.key('w', policy.Key{Limit: limit}))
		if err != nil {
			t.Fatal(err)
		}
		return n.Addr()
	}
	first, second := "waf-h0", ""
	for i := 1; second == ""; i++ {
		if l := fmt.Sprint("waf-h", i); owner(l) != owner(first) {
			second = l
		}
	}
	hits := []policy.Hit{
		{Key: policy.Key{Limit: first}, Limit: 10, Window: time.Minute},
		{Key: policy.Key{Limit: second}, Limit: 10, Window: time.Minute},
	}
	for step := range 3 {
		b := apply(t, s, t0, policy.Key{}, hits)
		for i, h := range b.Hits {
			if h.Count != int64(step+1) {
				t.Fatalf("step %d: hit %d: got count %d, want %d", step, i, h.Count, step+1)
			}
		}
	}
}

// TestSpreadLateDenial: the reply of a customer's call that a leased
// bucket had denied (flagDenied), which came after its caller gave up, is
// settled as what it was: Redis counted no usage for it, so the local
// store does not mark one as Redis's, and the push after takes none off.
func TestSpreadLateDenial(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{Local: true, CallerClock: true})
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: t0.Unix()}
	apply(t, s, t0, usage, nil) // admitted: a use
	sub := new(policy.Batch)
	sub.Reset()
	sub.Usage = usage
	r, err := s.encode(t0, sub, true, &quotaOwed{})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := s.decide(r) // Redis answers; the caller has given up
	if err != nil {
		t.Fatal(err)
	}
	late, err := s.encode(t0, sub, true, &quotaOwed{})
	if err != nil {
		t.Fatal(err)
	}
	s.settleLate(late, reply)
	late.free()
	if err := s.reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if used, _, err := s.Counter(usage); used != 1 || err != nil {
		t.Errorf("usage: got %d, %v, want the 1 admitted", used, err)
	}
}

// TestSpreadHungPrimary: while a primary hangs and decisions for its
// customer keep coming, the decisions of customers on the other primaries
// are made on Redis within their budgets: each primary's calls have a lane
// of their own, never a sender that also waits for the hung one; and the
// hung one's lane, once its calls failed, fails its decisions at once.
func TestSpreadHungPrimary(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	log := &circuitLog{}
	s := openCluster(t, c, Options{Local: true, Observer: log})
	s.beat()
	now := time.Now()
	stuck := openQuota("stuck", now)
	hung := ownerOf(t, c, s, stuck)
	healthy := customersOff(t, c, s, now, hung, 8)
	decide := func(o policy.Op) (*policy.Batch, error) {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, o)
		return b, s.Apply(time.Now(), b)
	}
	for _, o := range append(healthy, stuck) { // every lane made, every script loaded
		if _, err := decide(o); err != nil {
			t.Fatal(err)
		}
	}

	hung.Pause()
	defer hung.Resume()
	stop := make(chan struct{})
	var stuckDone atomic.Int64
	var wg sync.WaitGroup
	for range 32 { // the hung primary's decisions, all along
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				decide(stuck) // decided locally: after its budget, or at once once the lane rests
				stuckDone.Add(1)
				time.Sleep(time.Millisecond)
			}
		})
	}
	waitFor(t, "calls held by the hung primary", func() bool { return s.laneOf(nodeOf(t, s, stuck)).inflight.Load() > 0 })
	var local, made atomic.Int64
	var healthyWG sync.WaitGroup
	end := time.Now().Add(time.Second)
	for i := range 16 {
		o := healthy[i%len(healthy)]
		healthyWG.Go(func() {
			for time.Now().Before(end) {
				b, err := decide(o)
				switch {
				case err != nil:
					t.Errorf("a healthy primary's customer: %v", err)
				case b.Local:
					local.Add(1)
				}
				made.Add(1)
			}
		})
	}
	healthyWG.Wait()
	close(stop)
	hung.Resume()
	wg.Wait()
	// The hung primary's lane rests once laneFails calls failed in a row:
	// its customer's decisions are then decided locally at once, not each
	// after its 100ms budget (at most 32 × 10 a second).
	if n := stuckDone.Load(); n < 3200 {
		t.Errorf("%d decisions for the hung primary's customer ended, want its lane to fail them at once (thousands)", n)
	}
	// The budget is the default (100ms): a healthy primary answers well
	// within it, even on a busy host.
	t.Logf("%d of %d made locally; %d for the hung primary", local.Load(), made.Load(), stuckDone.Load())
	// Heard once each: it stopped answering, and answers again.
	waitFor(t, "the hung primary's customer decided on Redis again", func() bool {
		b, err := decide(stuck)
		return err == nil && !b.Local
	})
	log.mu.Lock()
	primaries := slices.Clone(log.primaries)
	log.mu.Unlock()
	if !slices.Equal(primaries, []bool{false, true}) {
		t.Errorf("the Observer heard the primary's changes %v, want [false true] (stopped answering, answers again)", primaries)
	}
	if n := local.Load(); n > made.Load()/10 {
		t.Errorf("%d of the %d decisions of healthy primaries' customers were made locally (their budgets spent waiting), want at most a tenth", n, made.Load())
	}
}

// nodeOf returns the primary that o's customer key is on.
func nodeOf(t *testing.T, s *Store, o policy.Op) *goredis.Client {
	t.Helper()
	n, err := s.cluster.MasterForKey(context.Background(), s.key('c', o.Key))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSpreadPrimaryDown: a primary that refuses connections (killed, in the
// seconds before its failover) has its customers decided locally, and the
// circuit stays closed for the others', which are still decided on Redis.
func TestSpreadPrimaryDown(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{Local: true})
	s.beat()
	now := time.Now()
	lost := openQuota("lost", now)
	down := ownerOf(t, c, s, lost)
	healthy := customersOff(t, c, s, now, down, 4)
	decide := func(o policy.Op) *policy.Batch {
		t.Helper()
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, o)
		if err := s.Apply(time.Now(), b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, o := range append(healthy, lost) {
		if b := decide(o); b.Local {
			t.Fatal("decided locally before the primary went down")
		}
	}
	down.Stop()
	// Well inside redistest.NodeTimeout, after which every node answers
	// CLUSTERDOWN.
	for round := range 10 {
		if b := decide(lost); !b.Local {
			t.Fatalf("round %d: the down primary's customer was not decided locally", round)
		}
		for _, o := range healthy {
			if b := decide(o); b.Local {
				t.Fatalf("round %d: a healthy primary's customer was decided locally (circuit open: %v)", round, s.open.Load())
			}
		}
	}
}

// TestSpreadPrimaryDownUnderLoad: as TestSpreadPrimaryDown, with decisions
// made together. The calls to the primary that refuses fail at once, one
// decision each, while the other primaries' carry the decisions that
// waited together: counted by calls, the refusals were most of them and
// the circuit opened for every primary's customers.
func TestSpreadPrimaryDownUnderLoad(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	log := &circuitLog{}
	s := openCluster(t, c, Options{Local: true, Observer: log})
	s.beat()
	now := time.Now()
	type customer struct {
		op   policy.Op
		lost bool
	}
	var down *redistest.Server
	var customers []customer
	for i := range 300 {
		o := openQuota(fmt.Sprint("customer-", i), now)
		n := ownerOf(t, c, s, o)
		if down == nil {
			down = n
		}
		customers = append(customers, customer{o, n == down})
	}
	var killed atomic.Bool
	var healthyLocal atomic.Int64
	stop := time.Now().Add(2500 * time.Millisecond)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			b := new(policy.Batch)
			for i := g; time.Now().Before(stop); i++ {
				cu := customers[i%len(customers)]
				after := killed.Load()
				b.Reset()
				b.Ops = append(b.Ops, cu.op)
				if err := s.Apply(time.Now(), b); err != nil {
					t.Error(err)
					return
				}
				if after && b.Local && !cu.lost {
					healthyLocal.Add(1)
				}
			}
		})
	}
	time.Sleep(time.Second) // a window of calls that answered
	down.Stop()
	killed.Store(true)
	wg.Wait()
	if n := healthyLocal.Load(); n > 0 || len(log.got()) > 0 {
		t.Errorf("%d decisions of the healthy primaries' customers were made locally (circuit changes: %v)", n, log.got())
	}
}

// openQuota returns a quota op of subject's that does not run out: a
// decision on it says only whether Redis answered.
func openQuota(subject string, now time.Time) policy.Op {
	return policy.Op{Key: policy.Key{Limit: "q", Subject: subject, Period: now.Add(-time.Hour).Unix()},
		Tier: policy.TierQuota, Quota: 1 << 40, End: now.Add(time.Hour)}
}

// ownerOf returns the primary that holds o's key.
func ownerOf(t *testing.T, c *redistest.Cluster, s *Store, o policy.Op) *redistest.Server {
	t.Helper()
	n, err := c.SlotOwner(s.key('c', o.Key))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// customersOff returns the open quotas (openQuota) of n customers whose keys
// are on primaries other than primary.
func customersOff(t *testing.T, c *redistest.Cluster, s *Store, now time.Time, primary *redistest.Server, n int) []policy.Op {
	t.Helper()
	var ops []policy.Op
	for i := 0; len(ops) < n; i++ {
		if o := openQuota(fmt.Sprint("customer-", i), now); ownerOf(t, c, s, o) != primary {
			ops = append(ops, o)
		}
	}
	return ops
}
