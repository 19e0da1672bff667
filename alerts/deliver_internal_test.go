package alerts

import (
	"testing"
	"time"
)

// TestBackoffDefaults checks the waits after each failed delivery at the
// defaults: 10s doubling to a 1h ceiling, each drawn from its upper half.
func TestBackoffDefaults(t *testing.T) {
	d := NewDeliverer(DeliverOptions{})
	if d.o.Backoff != 10*time.Second || d.o.MaxBackoff != time.Hour || d.o.GiveUp != 24*time.Hour ||
		d.o.Poll != time.Second || d.o.Lease != time.Minute || d.o.Queue != 1024 {
		t.Fatalf("defaults: %+v", d.o)
	}
	for i, c := range []struct {
		attempt int
		want    time.Duration // the ceiling of the draw
	}{
		{1, 10 * time.Second},
		{2, 20 * time.Second},
		{3, 40 * time.Second},
		{8, 1280 * time.Second},
		{9, 2560 * time.Second},
		{10, time.Hour}, // 5120s is past the ceiling
		{11, time.Hour},
		{1000, time.Hour}, // no overflow
	} {
		lo := backoff(c.attempt, d.o.Backoff, d.o.MaxBackoff, 0)
		hi := backoff(c.attempt, d.o.Backoff, d.o.MaxBackoff, 1-1e-9)
		if lo != c.want/2 || hi > c.want || hi < c.want-time.Millisecond {
			t.Errorf("step %d: attempt %d: draws from %v to %v, want %v to %v", i, c.attempt, lo, hi, c.want/2, c.want)
		}
	}
}
