package gcfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{0, 64 * mb, 100},        // nothing measured yet: as by default
		{1, 64 * mb, 1600},       // tiny: the runtime's least goal (4 MB × 16) at the floor
		{mb, 64 * mb, 1600},      // 63x: bounded likewise
		{4 * mb, 64 * mb, 1500},  // goal 4 + 60 = 64 MB
		{8 * mb, 64 * mb, 700},   // goal 8 + 56 = 64 MB
		{16 * mb, 64 * mb, 300},  // goal 64 MB
		{31 * mb, 64 * mb, 106},  // just under half the floor
		{32 * mb, 64 * mb, 100},  // half the floor: as GOGC=100
		{500 * mb, 64 * mb, 100}, // large: as GOGC=100
		{10 * mb, 0, 100},        // no floor
		{mb, 1024 * mb, 25600},   // a larger floor allows more
	} {
		if got := Percent(c.live, 0, c.floor); got != c.want {
			t.Errorf("Percent(%d, 0, %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
	}
	// Stacks and globals count in the goal: 8 MB live and 8 MB of them,
	// 8 + 16 × 3.5 = 64 MB.
	if got := Percent(8*mb, 8*mb, 64*mb); got != 350 {
		t.Errorf("Percent(8 MB, 8 MB, 64 MB) = %d, want 350", got)
	}
}

// TestKeep: Keep sets the percent that the live heap calls for, and puts
// back the one it found when it stops.
func TestKeep(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	runtime.GC() // measure the live heap
	const floor = 1 << 30
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { Keep(ctx, floor, time.Hour) })
	// Keep sets the percent at once; read it back (and leave it) once it
	// is not 100.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p := Current(); p != 100 {
			if want := floor * 100 / heapMinimum; p != want {
				t.Errorf("percent %d for a live heap far below the floor, want %d", p, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Keep did not set the percent within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	if p := Current(); p != 100 {
		t.Errorf("after Keep stopped: percent %d, want the 100 it found", p)
	}
}

// TestKeepOverlapping: of two Keeps that overlap, the last to stop puts back
// the percent that the first found, whichever order they stop in.
func TestKeepOverlapping(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	runtime.GC()
	// start starts a Keep and waits until it counts among those running.
	start := func() (stop func()) {
		keeping.Lock()
		n := keeping.n
		keeping.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { Keep(ctx, 1<<30, time.Hour) })
		for {
			keeping.Lock()
			started := keeping.n > n
			keeping.Unlock()
			if started {
				return func() { cancel(); wg.Wait() }
			}
			time.Sleep(time.Millisecond)
		}
	}
	stop1 := start()
	waitRaised(t)
	stop2 := start()
	stop1()
	if p := Current(); p == 100 {
		t.Errorf("the first Keep to stop put back 100 while the second runs")
	}
	stop2()
	if p := Current(); p != 100 {
		t.Errorf("after both stopped: percent %d, want the 100 found", p)
	}
}

// waitRaised waits until a Keep has raised the percent.
func waitRaised(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for Current() == 100 {
		if time.Now().After(deadline) {
			t.Fatal("Keep did not raise the percent within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
