// Package gcfloor keeps the Go garbage collector's heap goal at or above a
// floor. With GOGC=100 the collector runs each time the heap doubles its
// live data; serve's live data is small (tens of MB) and its allocation
// rate high (gRPC and protobuf per decision), so at the default it
// collected several times a second, and each collection also shrank the
// gRPC workers' stacks, which the next decisions grew again. Raising the
// goal of a small heap to the floor costs at most the floor in memory and
// saved a sixth to a third of serve's CPU per decision (README, --gc-heap-floor); a
// heap whose live data is half the floor or more is collected as GOGC=100
// would.
//
// A memory limit (GOMEMLIMIT) still holds: the runtime collects to stay
// under it whatever the percent.
package gcfloor

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// heapMinimum is the runtime's least heap goal at GOGC=100, which it scales
// by the percent: the percent for a tiny live heap is bounded so that this
// goal stays at or under the floor.
const heapMinimum = 4 << 20

// Percent returns the GC percent that puts the heap goal of live bytes of
// live data at floor. The runtime's goal is live + (live + roots) ×
// percent/100, roots being the goroutine stacks and globals it scanned
// (/gc/scan/stack:bytes, /gc/scan/globals:bytes): the percent is
// (floor − live) × 100 / (live + roots), at least 100 and at most
// floor × 100 / heapMinimum. With no live data measured yet (live 0: no
// collection so far) it returns 100, so that the first collection comes
// when it would by default.
func Percent(live, roots, floor uint64) int {
	if live == 0 || live >= floor {
		return 100
	}
	p := (floor - live) * 100 / (live + roots)
	return int(max(100, min(p, floor*100/heapMinimum)))
}

// Keep sets the GC percent from the live heap and the roots (as the last
// collection measured them) at once and then every interval, until ctx is
// done; the last Keep of the process to stop puts back the percent the first
// found. Only changes of a tenth or more are made.
func Keep(ctx context.Context, floor uint64, every time.Duration) {
	keeping.Lock()
	if keeping.n == 0 {
		keeping.found = Current()
	}
	keeping.n++
	keeping.Unlock()
	set := Current()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		roots := read("/gc/scan/stack:bytes") + read("/gc/scan/globals:bytes")
		if p := Percent(read("/gc/heap/live:bytes"), roots, floor); p*10 < set*9 || p*10 > set*11 {
			debug.SetGCPercent(p)
			set = p
		}
		select {
		case <-ctx.Done():
			keeping.Lock()
			if keeping.n--; keeping.n == 0 {
				debug.SetGCPercent(keeping.found)
			}
			keeping.Unlock()
			return
		case <-tick.C:
		}
	}
}

// keeping counts the Keeps running in this process (serves of one process,
// as in tests), and holds the percent the first found: the last to stop
// puts it back.
var keeping struct {
	sync.Mutex
	n, found int
}

// Current returns the GC percent in force (runtime/metrics' /gc/gogc:percent).
func Current() int { return int(read("/gc/gogc:percent")) }

// read returns the runtime metric of the name (0: none).
func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
