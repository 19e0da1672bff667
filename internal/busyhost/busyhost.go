// Package busyhost keeps every core of the machine busy while a test runs,
// so that the test sees what a loaded host does to latency: the tests that
// check that limits are exact under concurrency must also hold then.
//
//	busyhost.Spin(t, 30*time.Second) // until the test ends, at most 30s
//
// The spinning goroutines, one per core, compute in short turns and yield
// between them (runtime.Gosched): the host's cores stay busy (other processes,
// such as a Redis or tollgate replicas, get a share of them as on a busy
// machine) and the test's own goroutines still get their turns in this
// process's scheduler, as they would beside other busy goroutines.
package busyhost

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// turn is how long a spinner computes before it yields.
const turn = 200 * time.Microsecond

// Spin keeps runtime.NumCPU() goroutines spinning until the test ends or
// max has passed, whichever comes first; the returned stop ends them sooner.
// stop may be called more than once.
func Spin(t testing.TB, max time.Duration) (stop func()) {
	t.Helper()
	var done atomic.Bool
	var wg sync.WaitGroup
	end := time.Now().Add(max)
	for range runtime.NumCPU() {
		wg.Go(func() {
			x := uint64(1)
			for !done.Load() && time.Now().Before(end) {
				start := time.Now()
				for time.Since(start) < turn {
					for i := range 1000 {
						x = x*6364136223846793005 + uint64(i)
					}
				}
				runtime.Gosched()
			}
			sink.Add(x)
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { done.Store(true); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// sink keeps the spinners' arithmetic from being optimized away.
var sink atomic.Uint64
