package redis

import (
	"context"
	"runtime"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestLanesOfReplacedNodeClients: go-redis's ClusterClient keys its node
// clients by address, closes the client of a node that has left the slot
// map (clusterNodes.GC, a minute after a reload: a failover, a reshard, a
// restart) and makes a new *Client when the address serves slots again.
// Each such cycle must not leave a lane (two senders, a 4096-slot queue
// and the closed client) behind for the life of the Store.
func TestLanesOfReplacedNodeClients(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{CallerClock: true})
	op := planOp("plan", "acme", 1000, 1000)
	apply(t, s, t0, policy.Key{}, nil, op) // its primary's lane made
	base := runtime.NumGoroutine()
	const cycles = 50
	for range cycles {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, op)
		r, err := s.encode(t0, b, false, &quotaOwed{})
		if err != nil {
			t.Fatal(err)
		}
		// What GetOrCreate makes after GC: the same primary, a new client.
		o := *r.node.Options()
		fresh := goredis.NewClient(&o)
		r.node = fresh
		if _, err := s.decide(r); err != nil {
			t.Fatal(err)
		}
		fresh.Close() // as the next GC does
	}
	lanes := 0
	s.lanes.Range(func(_, _ any) bool { lanes++; return true })
	time.Sleep(10 * time.Millisecond)
	if lanes > 3 {
		t.Errorf("%d lanes after %d client replacements of one primary on a 3-primary cluster, want at most 3 (goroutines %d -> %d)",
			lanes, cycles, base, runtime.NumGoroutine())
	}
}

// TestReapLanes: the lane of an address that is no primary any more (a
// failover to a new address) is dropped with its senders once idle; the
// primaries' lanes stay.
func TestReapLanes(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{CallerClock: true})
	apply(t, s, t0, policy.Key{}, nil, planOp("plan", "acme", 1000, 1000)) // a primary's lane
	gone := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})       // an address that serves no slots
	defer gone.Close()
	l := s.laneOf(gone)
	if err := s.reapLanes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.lanes.Load("127.0.0.1:1"); ok {
		t.Error("the lane of an address that is no primary is still there")
	}
	select {
	case <-l.stop:
	default:
		t.Error("its senders were not stopped")
	}
	ended := make(chan struct{})
	go func() { l.running.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("its senders did not end within 10s")
	}
	primaries := 0
	s.lanes.Range(func(_, _ any) bool { primaries++; return true })
	if primaries != 1 {
		t.Errorf("%d lanes left, want the primary's 1", primaries)
	}
}
