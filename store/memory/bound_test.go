package memory

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// addr4 returns the i-th address of 10.0.0.0/8.
func addr4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// heapAlloc returns the live heap after a collection.
func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkWAFCounterBytes reports the live heap each WAF counter costs:
// 200,000 distinct IPv4 clients hit the payments example's per-IP rule
// (1,000 per 5m) once each, on a store whose bound holds them all.
func BenchmarkWAFCounterBytes(b *testing.B) {
	const n = 200_000
	for b.Loop() {
		before := heapAlloc()
		s := New()
		var bt policy.Batch
		for i := range n {
			bt.Reset()
			bt.Hits = append(bt.Hits, policy.Hit{Key: policy.Key{Limit: "waf|transactions-per-ip|ip|1000|5m0s", Addr: addr4(i)}, Limit: 1000, Window: 5 * time.Minute})
			if err := s.Apply(t0, &bt); err != nil {
				b.Fatal(err)
			}
		}
		after := heapAlloc()
		if got := s.Len(); got != n {
			b.Fatalf("got Len %d, want %d", got, n)
		}
		b.ReportMetric(float64(after-before)/n, "B/counter")
		runtime.KeepAlive(s)
	}
}

// perIP is the payments example's per-IP rule, 1,000 per 5m, for the
// address a.
func perIP(a netip.Addr, limit int64) policy.Hit {
	return policy.Hit{Key: policy.Key{Limit: "waf|transactions-per-ip", Addr: a}, Limit: limit, Window: 5 * time.Minute}
}

// hitN hits h n times at now and returns the last batch.
func hitN(t *testing.T, s *Store, now time.Time, h policy.Hit, n int) *policy.Batch {
	t.Helper()
	var b *policy.Batch
	for range n {
		b = apply(t, s, now, []policy.Hit{h})
	}
	return b
}

// curCounts returns the current window's count of every counter s holds
// under an address.
func curCounts(s *Store) map[netip.Addr]int64 {
	m := make(map[netip.Addr]int64)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, w := range sh.counters.addrs {
			a := netip.AddrFrom16(k.addr)
			if k.kind == 4 {
				a = a.Unmap()
			}
			m[a] = w.cur
		}
		sh.mu.Unlock()
	}
	return m
}

// TestWAFCountersFloodBounded is issue 13's flood, small: 20,000 distinct
// addresses on a store bounded to 256 counters. The store never holds more
// than its bound, counts what it dropped, and an address that was blocking
// before the flood is still blocked after it.
func TestWAFCountersFloodBounded(t *testing.T) {
	const bound, flood = 256, 20_000
	s := New(WithShards(4), WithMaxCounters(bound))
	attacker := netip.MustParseAddr("203.0.113.9")
	if b := hitN(t, s, t0, perIP(attacker, 1000), 1001); b.Blocked != 0 {
		t.Fatalf("step 0: got Blocked %d after 1,001 hits, want 0", b.Blocked)
	}
	for i := range flood {
		b := apply(t, s, t0.Add(time.Duration(i)*time.Millisecond), []policy.Hit{perIP(addr4(i), 1000)})
		if b.Hits[0].Count != 1 || b.Blocked != -1 {
			t.Fatalf("step 1: address %d: got Count %d Blocked %d, want 1 -1", i, b.Hits[0].Count, b.Blocked)
		}
		if held, _ := s.WAFCounters(); held > bound {
			t.Fatalf("step 1: address %d: got %d counters held, want at most %d", i, held, bound)
		}
	}
	held, dropped := s.WAFCounters()
	if want := uint64(flood + 1 - held); dropped != want {
		t.Errorf("step 2: got %d dropped (%d held), want %d", dropped, held, want)
	}
	b := apply(t, s, t0.Add(flood*time.Millisecond), []policy.Hit{perIP(attacker, 1000)})
	if b.Blocked != 0 || b.Hits[0].Count != 1002 {
		t.Errorf("step 3: got Count %d Blocked %d for the attacker after the flood, want 1002 0", b.Hits[0].Count, b.Blocked)
	}
}

// TestWAFCountersDropLowestFirst: a full shard of eight counters at 1..8
// of a limit of 10 makes room for a ninth by dropping the two lowest (a
// quarter of the shard).
func TestWAFCountersDropLowestFirst(t *testing.T) {
	s := New(WithShards(1), WithMaxCounters(8))
	for i := range 8 {
		hitN(t, s, t0, perIP(addr4(i), 10), i+1)
	}
	apply(t, s, t0, []policy.Hit{perIP(addr4(100), 10)})
	got := curCounts(s)
	want := map[netip.Addr]int64{addr4(2): 3, addr4(3): 4, addr4(4): 5, addr4(5): 6, addr4(6): 7, addr4(7): 8, addr4(100): 1}
	if len(got) != len(want) {
		t.Errorf("step 0: got %d counters %v, want %d %v", len(got), got, len(want), want)
	}
	for a, n := range want {
		if got[a] != n {
			t.Errorf("step 0: %v: got count %d, want %d", a, got[a], n)
		}
	}
	if _, dropped := s.WAFCounters(); dropped != 2 {
		t.Errorf("step 1: got %d dropped, want 2", dropped)
	}
}

// TestWAFCountersExpiredGoFirst: counters whose windows have passed make
// room before any live counter does, and are not counted as dropped.
func TestWAFCountersExpiredGoFirst(t *testing.T) {
	s := New(WithShards(1), WithMaxCounters(8))
	for i := range 4 {
		apply(t, s, t0, []policy.Hit{perIP(addr4(i), 10)}) // both windows passed at t0+10m
	}
	later := t0.Add(10 * time.Minute)
	for i := 4; i < 8; i++ {
		apply(t, s, later, []policy.Hit{perIP(addr4(i), 10)})
	}
	apply(t, s, later, []policy.Hit{perIP(addr4(100), 10)})
	got := curCounts(s)
	for i := range 4 {
		if _, ok := got[addr4(i)]; ok {
			t.Errorf("step 0: expired %v kept, want dropped", addr4(i))
		}
	}
	for _, a := range []netip.Addr{addr4(4), addr4(5), addr4(6), addr4(7), addr4(100)} {
		if got[a] != 1 {
			t.Errorf("step 0: %v: got count %d, want 1", a, got[a])
		}
	}
	if _, dropped := s.WAFCounters(); dropped != 0 {
		t.Errorf("step 1: got %d dropped, want 0 (only expired counters went)", dropped)
	}
}

// TestWAFCountersNeverDropBlocking: a shard full of blocking counters keeps
// them all; new counters are not kept (and are counted), and a pass is not
// tried for each of them.
func TestWAFCountersNeverDropBlocking(t *testing.T) {
	s := New(WithShards(1), WithMaxCounters(8))
	for i := range 8 {
		hitN(t, s, t0, perIP(addr4(i), 2), 3)
	}
	const flood = 1000
	for i := range flood {
		b := apply(t, s, t0, []policy.Hit{perIP(addr4(100+i), 2)})
		if b.Hits[0].Count != 1 {
			t.Fatalf("step 0: address %d: got Count %d, want 1", i, b.Hits[0].Count)
		}
	}
	held, dropped := s.WAFCounters()
	if held != 8 || dropped != flood {
		t.Errorf("step 1: got %d held %d dropped, want 8 %d", held, dropped, flood)
	}
	// A pass is tried once per quarter of the shard (2) new counters.
	if p := s.shards[0].counters.passes; p > flood/2+1 {
		t.Errorf("step 2: got %d passes for %d new counters, want at most %d", p, flood, flood/2+1)
	}
	for i := range 8 {
		if b := apply(t, s, t0, []policy.Hit{perIP(addr4(i), 2)}); b.Blocked != 0 || b.Hits[0].Count != 4 {
			t.Errorf("step 3: %v: got Count %d Blocked %d, want 4 0", addr4(i), b.Hits[0].Count, b.Blocked)
		}
	}
}

// TestWAFCountersAmortized: a flood of new counters through a full shard
// runs one pass per quarter of the shard, not one per counter.
func TestWAFCountersAmortized(t *testing.T) {
	const bound, flood = 64, 10_000
	s := New(WithShards(1), WithMaxCounters(bound))
	for i := range flood {
		apply(t, s, t0, []policy.Hit{perIP(addr4(i), 1000)})
	}
	if p, want := s.shards[0].counters.passes, flood/(bound/4)+1; p > want {
		t.Errorf("got %d passes for %d new counters, want at most %d", p, flood, want)
	}
}

// TestWAFCountersOtherKeysBounded: counters keyed by a header value (and
// by a zoned address) are bounded too, and keep their own copy of the
// value.
func TestWAFCountersOtherKeysBounded(t *testing.T) {
	s := New(WithShards(1), WithMaxCounters(16))
	buf := []byte("client-00000")
	for i := range 1000 {
		copy(buf[7:], fmt.Sprintf("%05d", i))
		h := policy.Hit{Key: policy.Key{Limit: "waf|per-header", Subject: string(buf)}, Limit: 100, Window: time.Minute}
		apply(t, s, t0, []policy.Hit{h})
		z := policy.Hit{Key: policy.Key{Limit: "waf|per-ip", Addr: netip.MustParseAddr("fe80::1").WithZone(fmt.Sprint("eth", i))}, Limit: 100, Window: time.Minute}
		apply(t, s, t0, []policy.Hit{z})
	}
	if held, dropped := s.WAFCounters(); held > 16 || held+int(dropped) != 2000 {
		t.Errorf("got %d held %d dropped, want at most 16 held and 2000 in all", held, dropped)
	}
}

// BenchmarkWAFFlood is issue 13's flood on a store at the default bound:
// 1,000,000 distinct IPv4 clients, one hit each, at the per-IP rule of the
// payments example, after an address went over its limit. It reports the
// live heap the flood added and fails when that address is no longer
// blocked after it.
func BenchmarkWAFFlood(b *testing.B) {
	const flood = 1_000_000
	attacker := netip.MustParseAddr("203.0.113.9")
	for b.Loop() {
		before := heapAlloc()
		s := New()
		var bt policy.Batch
		send := func(a netip.Addr, now time.Time) {
			bt.Reset()
			bt.Hits = append(bt.Hits, perIP(a, 1000))
			if err := s.Apply(now, &bt); err != nil {
				b.Fatal(err)
			}
		}
		for range 1001 {
			send(attacker, t0)
		}
		for i := range flood {
			send(addr4(i), t0.Add(time.Duration(i)*100*time.Microsecond)) // 100 s, inside one 5m window
		}
		send(attacker, t0.Add(flood*100*time.Microsecond))
		if bt.Blocked != 0 {
			b.Fatalf("the attacker is no longer blocked after the flood (count %d)", bt.Hits[0].Count)
		}
		after := heapAlloc()
		held, dropped := s.WAFCounters()
		b.ReportMetric(float64(int64(after)-int64(before))/(1<<20), "MB-heap")
		b.ReportMetric(float64(held), "held")
		b.ReportMetric(float64(dropped), "dropped")
		runtime.KeepAlive(s)
	}
}
