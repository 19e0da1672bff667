package redis

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/busyhost"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestLeaserKeepsAToken: a decision that leases for an empty pool keeps one
// of the lease's tokens, even when the decisions that waited for that lease
// (or arrived meanwhile) want them all. The bucket refills a token a
// microsecond and holds 4 (a lease of 1): every lease finds a token in
// Redis, so no decision is denied.
func TestLeaserKeepsAToken(t *testing.T) {
	c := redistest.StartCluster(t, 1)
	s := openCluster(t, c, Options{})
	s.beat()
	if n := s.Replicas(); n != 1 {
		t.Fatalf("got %d replicas, want 1", n)
	}
	busyhost.Spin(t, time.Minute)
	// More threads than cores, so that a decision may be held up between
	// its lease and its take, as on a host with more cores than this one.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	account := accountOp("account", 1e6, 4)
	var denied, missed, decided atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 200 {
				b := new(policy.Batch)
				b.Reset()
				b.Ops = append(b.Ops, account)
				switch err := s.Apply(time.Now(), b); {
				case budgetMissed(err):
					missed.Add(1)
				case err != nil:
					t.Errorf("Apply: %v", err)
				case !b.Taken:
					denied.Add(1)
				default:
					decided.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("denied %d missed %d decided %d", denied.Load(), missed.Load(), decided.Load())
	if n := denied.Load(); n > 0 {
		t.Errorf("%d of %d decisions denied (%d missed the budget), with a token in Redis at every lease", n, n+decided.Load(), missed.Load())
	}
}

// TestLeasedBoundWithDecisionsInFlight: the tokens that decisions in flight
// hold count in a leased bucket's bound, beside the pools' leases. Over
// fixed instants, a bucket of 4 (a token a second, a lease of 1): four
// decisions each take a token (takeLeases), then their customers' calls
// deny and they give it back (settle) four seconds on, when the bucket in
// Redis has refilled. At that instant the replica spends those 4 and leases
// the 4 Redis holds: 8, within burst + replicas × (lease + decisions in
// flight) = 4 + 1 × (1 + 4), and more than burst + replicas × lease = 5.
func TestLeasedBoundWithDecisionsInFlight(t *testing.T) {
	c := redistest.StartCluster(t, 1)
	s := openCluster(t, c, Options{CallerClock: true})
	s.beat()
	account := accountOp("account", 1, 4)
	inFlight := int(account.Throttle.Burst)
	for i := range inFlight {
		o := account
		if ok, err := s.leases.take(s, t0, &o, time.Time{}); !ok || err != nil {
			t.Fatalf("decision %d in flight: got %v, %v, want a token", i, ok, err)
		}
	}
	later := t0.Add(4 * time.Second)
	for range inFlight {
		s.leases.giveBack(account.Key)
	}
	admitted := 0
	for range 3 * inFlight {
		if b := apply(t, s, later, policy.Key{}, nil, account); b.Taken {
			admitted++
		}
	}
	if want := int(account.Throttle.Burst) + inFlight; admitted != want {
		t.Errorf("admitted %d at one instant, want %d: the burst and the tokens of the decisions that were in flight", admitted, want)
	}
}
