// Package testclock is the clock the tests set: it moves only when told,
// and is safe for concurrent use. Code under test takes its Now method
// where it takes a clock (server.Config.Now, file.Options.Now, ...).
package testclock

import (
	"sync"
	"testing"
	"time"
)

// Clock is a clock that reads t until moved.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a Clock that reads t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// AwayFromMidnight waits, when the UTC day ends within a minute, until it
// has: for tests that count one day's quota with the real clock.
func AwayFromMidnight(t testing.TB) {
	now := time.Now().UTC()
	if left := now.Truncate(24 * time.Hour).Add(24 * time.Hour).Sub(now); left < time.Minute {
		t.Logf("waiting %v for the UTC day to end", left)
		time.Sleep(left + time.Second)
	}
}
