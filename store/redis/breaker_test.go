package redis

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// circuitLog records an Observer's circuit changes.
type circuitLog struct {
	mu        sync.Mutex
	changes   []bool
	primaries []bool // a primary's changes: answering or not
}

func (c *circuitLog) Decision(wait, roundTrip time.Duration) {}

func (c *circuitLog) Primary(addr string, answering bool, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.primaries = append(c.primaries, answering)
}

func (c *circuitLog) Circuit(open bool, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes = append(c.changes, open)
}

func (c *circuitLog) got() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bool(nil), c.changes...)
}

// decideOnce makes one decision on a bucket that always admits.
func decideOnce(s *Store) error {
	b := new(policy.Batch)
	b.Reset()
	b.Ops = append(b.Ops, bucketOp("wide", 1e6, 1e6))
	return s.Apply(time.Now(), b)
}

// timedOut reports whether err is a call's timeout: the context's deadline,
// or the socket's read deadline that go-redis sets from it.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// TestWindowCountsTheLastSecond: the window counts the calls of the last
// breakWindow over fixed instants; older ones drop out slot by slot.
func TestWindowCountsTheLastSecond(t *testing.T) {
	var w window
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for ms := range 10 {
		w.add(at(ms*50), true, 1) // 10 successes in the first half second
	}
	for i, c := range []struct {
		ms           int
		ok           bool
		failed, seen int64
	}{
		{500, false, 1, 11},
		{600, false, 2, 12},
		{999, false, 3, 13},
		{1000, false, 4, 12}, // the slot of 0-99ms is reused: its 2 go
		{1350, false, 5, 7},  // 100-399ms are gone too
		{1550, false, 5, 5},  // and 400-599ms: the 500ms failure with them
		{2700, false, 1, 1},  // a quiet second later: only itself
	} {
		_, failed, seen := w.add(at(c.ms), c.ok, 1)
		if failed != c.failed || seen != c.seen {
			t.Errorf("step %d at %dms: got %d failed of %d, want %d of %d", i, c.ms, failed, seen, c.failed, c.seen)
		}
	}
}

// TestCircuitKeepsClosedOnSlowCalls: calls that miss their budget because
// Redis is briefly held (here three, then a few among many that answer)
// are no outage: the circuit stays closed, and the decisions after them
// are made on Redis.
func TestCircuitKeepsClosedOnSlowCalls(t *testing.T) {
	log := &circuitLog{}
	s, srv := openWith(t, Options{Observer: log})
	// n calls, one after another, that Redis holds past their budget.
	slow := func(n int) {
		t.Helper()
		resume := pauseScripts(t, srv)
		for range n {
			if err := decideOnce(s); !timedOut(err) {
				t.Fatalf("a call held by Redis: got %v, want the budget's timeout", err)
			}
		}
		resume()
	}
	slow(3)
	for range 10 {
		if err := decideOnce(s); err != nil {
			t.Fatalf("after 3 slow calls: %v", err)
		}
	}
	slow(4) // 7 slow calls in all, among 10 that answered
	if err := decideOnce(s); err != nil || s.open.Load() || len(log.got()) != 0 {
		t.Fatalf("after a few slow calls among many: got %v, open %v, changes %v, want the circuit closed", err, s.open.Load(), log.got())
	}
}

// TestCircuitOpensOnConnectionError: Redis gone (the dial is refused) opens
// the circuit at the first call: the next fail at once, without a call;
// when Redis is back, the prober closes it. Each change is reported once.
func TestCircuitOpensOnConnectionError(t *testing.T) {
	log := &circuitLog{}
	s, srv := openWith(t, Options{Observer: log})
	if err := decideOnce(s); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := decideOnce(s); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("step 1: got %v, want the call's connection error", err)
	}
	start := time.Now()
	for i := range 100 {
		if err := decideOnce(s); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("step 2.%d: got %v, want ErrUnavailable", i, err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("step 2: 100 decisions took %v with the circuit open, want them at once", took)
	}
	if err := s.Ready(context.Background()); err == nil {
		t.Error("step 2: ready while Redis is gone")
	}
	srv.Restart()
	waitFor(t, "the circuit to close", func() bool { return decideOnce(s) == nil })
	if got := log.got(); len(got) != 2 || !got[0] || got[1] {
		t.Errorf("got the changes %v, want [true false]", got)
	}
}

// TestCircuitOpensWhenMostCallsFail: a Redis that hangs (SIGSTOP) refuses
// nothing; its calls miss their budgets, and once most calls of the last
// second failed (at least breakMin), the circuit opens: later decisions
// fail at once. When Redis goes on, the circuit closes.
func TestCircuitOpensWhenMostCallsFail(t *testing.T) {
	log := &circuitLog{}
	s, srv := openWith(t, Options{Observer: log})
	for range 5 {
		if err := decideOnce(s); err != nil {
			t.Fatal(err)
		}
	}
	srv.Pause()
	defer srv.Resume()
	slow := 0
	for !s.open.Load() {
		if err := decideOnce(s); !timedOut(err) {
			t.Fatalf("decision %d while Redis hangs: got %v, want the budget's timeout", slow, err)
		}
		if slow++; slow > 20 {
			t.Fatalf("%d slow calls and the circuit is still closed", slow)
		}
	}
	if slow < breakMin {
		t.Errorf("the circuit opened after %d slow calls, want at least %d", slow, breakMin)
	}
	start := time.Now()
	if err := decideOnce(s); !errors.Is(err, ErrUnavailable) || time.Since(start) > s.opts.Timeout/2 {
		t.Errorf("with the circuit open: got %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	srv.Resume()
	waitFor(t, "the circuit to close", func() bool { return !s.open.Load() })
	if err := decideOnce(s); err != nil {
		t.Fatalf("after Redis went on: %v", err)
	}
	if got := log.got(); len(got) != 2 || !got[0] || got[1] {
		t.Errorf("got the changes %v, want [true false]", got)
	}
}
