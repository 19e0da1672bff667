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
