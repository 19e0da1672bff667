package policy

import (
	"testing"
	"time"
)

var tb0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// takeN takes up to n tokens at now and returns how many were admitted.
func takeN(th Throttle, b *Bucket, n int, now time.Time) int {
	got := 0
	for range n {
		*b = th.At(*b, now)
		if th.Admits(*b) {
			*b = th.Take(*b)
			got++
		}
	}
	return got
}

// step takes n requests at t0+at and expects admit of them to pass.
type step struct {
	at    time.Duration
	n     int
	admit int
}

func TestThrottleSteps(t *testing.T) {
	cases := []struct {
		name  string
		th    Throttle
		steps []step
	}{
		{"free 10/20", NewThrottle(10, 20), []step{{0, 30, 20}, {time.Second, 11, 10}, {1500 * time.Millisecond, 6, 5}}},
		{"account 10000/5000", NewThrottle(10000, 5000), []step{{0, 5000, 5000}, {100 * time.Millisecond, 5000, 1000}}},
		{"rate 0.1 burst 1", NewThrottle(0.1, 1), []step{{0, 1, 1}, {5 * time.Second, 1, 0}, {10 * time.Second, 1, 1}}},
		{"thirds 3/1", NewThrottle(3, 1), []step{{0, 1, 1}, {333333333, 1, 0}, {333333334, 1, 1}}},
		{"stop all 0/0", NewThrottle(0, 0), []step{{0, 5, 0}, {time.Hour, 5, 0}}},
		{"burst 0 never admits", NewThrottle(100, 0), []step{{0, 5, 0}, {time.Hour, 5, 0}}},
	}
	for _, c := range cases {
		var b Bucket
		for i, s := range c.steps {
			if got := takeN(c.th, &b, s.n, tb0.Add(s.at)); got != s.admit {
				t.Errorf("%s step %d: got %d admitted, want %d", c.name, i, got, s.admit)
			}
		}
	}
}

func TestThrottleWaitAndReset(t *testing.T) {
	th := NewThrottle(10, 20)
	b := th.At(Bucket{}, tb0)
	takeN(th, &b, 20, tb0)
	if got, want := th.Wait(b), 100*time.Millisecond; got != want {
		t.Errorf("wait: got %v, want %v", got, want)
	}
	if got, want := th.Reset(b), 2*time.Second; got != want {
		t.Errorf("reset: got %v, want %v", got, want)
	}
	if got, want := th.Window(), 2*time.Second; got != want {
		t.Errorf("window: got %v, want %v", got, want)
	}
	if got := NewThrottle(0, 5).Wait(Bucket{Tokens: 0, Last: 1}); got != forever {
		t.Errorf("rate 0 wait: got %v, want forever", got)
	}
	if th.Full(b, tb0.Add(1999*time.Millisecond)) || !th.Full(b, tb0.Add(2*time.Second)) {
		t.Errorf("full: want false at 1.999s and true at 2s")
	}
}

// TestBucketClockGoesBackwards: an earlier instant refills nothing and does
// not move the bucket's clock back (which would refill twice later).
func TestBucketClockGoesBackwards(t *testing.T) {
	th := NewThrottle(1, 5)
	var b Bucket
	takeN(th, &b, 5, tb0)
	if got := takeN(th, &b, 1, tb0.Add(-10*time.Second)); got != 0 {
		t.Errorf("earlier instant: got %d admitted, want 0", got)
	}
	if b.Last != tb0.UnixNano() {
		t.Errorf("last moved to %d, want %d", b.Last, tb0.UnixNano())
	}
	if got := takeN(th, &b, 5, tb0.Add(2*time.Second)); got != 2 {
		t.Errorf("2s later: got %d admitted, want 2", got)
	}
}

// TestBucketHugeElapsedDoesNotOverflow: years between requests at the
// largest rate fill the bucket instead of overflowing.
func TestBucketHugeElapsedDoesNotOverflow(t *testing.T) {
	th := Throttle{RateMicro: maxRateMicro, Burst: maxBurst}
	b := Bucket{Tokens: 0, Last: tb0.UnixNano()}
	b = th.At(b, tb0.Add(200*365*24*time.Hour))
	if b.Tokens != maxBurst*nanoTokens {
		t.Errorf("got %d tokens, want full %d", b.Tokens, int64(maxBurst*nanoTokens))
	}
	if w := th.Window(); w != time.Second {
		t.Errorf("window: got %v, want 1s", w)
	}
}
