package gcfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

var sink int

// deep grows its goroutine's stack by about n KB, then waits.
func deep(n int, wait <-chan struct{}) {
	var pad [1024]byte
	pad[n%1024] = byte(n)
	if n > 0 {
		deep(n-1, wait)
		sink += int(pad[n%1024])
		return
	}
	<-wait
}

// TestKeepGoalWithStacks: the runtime's heap goal is live + (live + stacks
// + globals) × GOGC/100, so a percent worked out from the live heap alone
// puts the goal of a server with many goroutines (gRPC streams) far above
// the floor; Keep's goal stays near it.
func TestKeepGoalWithStacks(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	wait := make(chan struct{})
	defer close(wait)
	for range 2000 {
		go deep(8, wait)
	}
	time.Sleep(100 * time.Millisecond)
	runtime.GC() // measures the live heap and the stacks
	const floor = 64 << 20
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { Keep(ctx, floor, time.Hour) })
	deadline := time.Now().Add(10 * time.Second)
	for Current() == 100 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	goal := read("/gc/heap/goal:bytes")
	p := Current()
	cancel()
	wg.Wait()
	t.Logf("stacks %d MB, live %d MB: percent %d, heap goal %d MB", read("/gc/scan/stack:bytes")>>20, read("/gc/heap/live:bytes")>>20, p, goal>>20)
	if goal > floor*11/10 {
		t.Errorf("heap goal %d MB with a floor of %d MB", goal>>20, floor>>20)
	}
}
