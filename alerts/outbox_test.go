package alerts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/alerts"
	"github.com/tollgate/tollgate/internal/busyhost"
	"github.com/tollgate/tollgate/store/file"
	"github.com/tollgate/tollgate/store/redis"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

const lease = time.Minute

// event returns a threshold event seen at at, for sinks.
func event(id string, at time.Time, sinks ...string) alerts.Event {
	threshold := 80
	start := at.Truncate(24 * time.Hour)
	return alerts.Event{ID: id, Type: alerts.TypeThreshold, Time: at, Sinks: sinks, Data: alerts.Data{
		Customer: "acme", Plan: "pro", Threshold: &threshold, Used: 80_000, Limit: 100_000,
		PeriodStart: start, PeriodEnd: start.Add(24 * time.Hour),
	}}
}

// forecast returns a forecast event seen at at, for sinks.
func forecast(id string, at time.Time, sinks ...string) alerts.Event {
	e := event(id, at, sinks...)
	exhaustion := at.Add(5 * time.Hour)
	e.Type, e.Data.Threshold, e.Data.Exhaustion = alerts.TypeForecast, nil, &exhaustion
	return e
}

// opener opens an outbox on fresh storage, and returns a function that
// opens another on the same storage: a restart for the file store (the
// first is closed), another replica for Redis, the same outbox in memory.
type opener func(t *testing.T) (o alerts.Outbox, again func() alerts.Outbox)

// outboxKinds are the outboxes; start runs once per kind, in its test.
var outboxKinds = []struct {
	name  string
	start func(t *testing.T) opener
}{
	{"memory", func(*testing.T) opener {
		return func(*testing.T) (alerts.Outbox, func() alerts.Outbox) {
			o := alerts.NewMemoryOutbox()
			return o, func() alerts.Outbox { return o }
		}
	}},
	{"file", func(*testing.T) opener {
		return func(t *testing.T) (alerts.Outbox, func() alerts.Outbox) {
			dir := t.TempDir()
			st := openFile(t, dir)
			return st.Outbox(), func() alerts.Outbox {
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				st = openFile(t, dir)
				return st.Outbox()
			}
		}
	}},
	{"redis", func(t *testing.T) opener {
		srv := redistest.Start(t) // one Redis for every case, each under its own prefix
		var cases atomic.Int64
		return func(t *testing.T) (alerts.Outbox, func() alerts.Outbox) {
			prefix := fmt.Sprintf("{case%d}:", cases.Add(1))
			return openRedis(t, srv, prefix).Outbox(), func() alerts.Outbox { return openRedis(t, srv, prefix).Outbox() }
		}
	}},
}

func openFile(t *testing.T, dir string) *file.Store {
	t.Helper()
	// No flush while a test copies the file (TestFileOutboxSurvivesCrash).
	st, err := file.Open(dir, file.Options{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openRedis(t *testing.T, srv *redistest.Server, prefix string) *redis.Store {
	t.Helper()
	st, err := redis.Open(srv.URL(), redis.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// outboxContract is what every outbox does; each case gets fresh storage.
var outboxContract = []struct {
	name string
	run  func(t *testing.T, o alerts.Outbox, again func() alerts.Outbox)
}{
	{"AddOncePerIDAndSink", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		e := event("e1", t0, "a", "b")
		mustAdd(t, o, e, true)
		mustAdd(t, o, e, false)
		e3 := e
		e3.Sinks = []string{"a", "b", "c"}
		mustAdd(t, o, e3, true) // c is new
		got := claim(t, o, t0, 10)
		if len(got) != 3 {
			t.Fatalf("claimed %d entries, want 3", len(got))
		}
		slices.SortFunc(got, func(x, y alerts.Pending) int { return strings.Compare(x.Sink, y.Sink) })
		for i, sink := range []string{"a", "b", "c"} {
			want := e
			want.Sinks = []string{sink}
			checkPending(t, got[i], alerts.Pending{Event: want, Sink: sink, Created: t0})
		}
	}},
	{"EventRoundTrip", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		e := forecast("f1", t0.Add(1500*time.Millisecond), "ops")
		mustAdd(t, o, e, true)
		got := claim(t, o, t0.Add(time.Hour), 10)
		if len(got) != 1 {
			t.Fatalf("claimed %d entries, want 1", len(got))
		}
		checkPending(t, got[0], alerts.Pending{Event: e, Sink: "ops", Created: e.Time})
	}},
	{"ClaimHidesForTheLease", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		mustAdd(t, o, event("e1", t0, "a"), true)
		if got := claim(t, o, t0, 10); len(got) != 1 {
			t.Fatalf("claim 1: %d entries, want 1", len(got))
		}
		if got := claim(t, o, t0.Add(lease-time.Second), 10); len(got) != 0 {
			t.Fatalf("claim within the lease: %d entries, want 0", len(got))
		}
		got := claim(t, o, t0.Add(lease), 10)
		if len(got) != 1 || got[0].Attempts != 0 {
			t.Fatalf("claim after the lease: %+v, want the entry again with 0 attempts", got)
		}
	}},
	{"ClaimLongestDueFirstUpToN", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		mustAdd(t, o, event("late", t0.Add(2*time.Second), "a"), true)
		mustAdd(t, o, event("first", t0, "a"), true)
		mustAdd(t, o, event("second", t0.Add(time.Second), "a"), true)
		if got := ids(claim(t, o, t0.Add(time.Second), 10)); !slices.Equal(got, []string{"first", "second"}) {
			t.Fatalf("claim at t0+1s: got %v, want [first second] (late is not due)", got)
		}
		mustAdd(t, o, event("fourth", t0.Add(3*time.Second), "a"), true)
		if got := ids(claim(t, o, t0.Add(5*time.Second), 1)); !slices.Equal(got, []string{"late"}) {
			t.Fatalf("claim of 1 at t0+5s: got %v, want [late]", got)
		}
	}},
	{"DoneEndsOneSink", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		e := event("e1", t0, "a", "b")
		mustAdd(t, o, e, true)
		claim(t, o, t0, 10)
		must(t, o.Done(context.Background(), "e1", "a"))
		got := claim(t, o, t0.Add(lease), 10)
		if len(got) != 1 || got[0].Sink != "b" {
			t.Fatalf("after Done of a: claimed %+v, want b alone", got)
		}
		checkStats(t, o, 1, t0)
		mustAdd(t, o, e, false) // delivered to a, and b waits: both ids are kept
		must(t, o.Done(context.Background(), "e1", "b"))
		checkStats(t, o, 0, time.Time{})
		mustAdd(t, o, e, false)
		if got := claim(t, o, t0.Add(time.Hour), 10); len(got) != 0 {
			t.Fatalf("after Done of both: claimed %+v, want nothing", got)
		}
	}},
	{"RetryCountsAndDelays", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		mustAdd(t, o, event("e1", t0, "a"), true)
		claim(t, o, t0, 10)
		must(t, o.Retry(context.Background(), "e1", "a", t0.Add(10*time.Second)))
		if got := claim(t, o, t0.Add(9*time.Second), 10); len(got) != 0 {
			t.Fatalf("claim before the retry is due: %+v, want nothing", got)
		}
		got := claim(t, o, t0.Add(10*time.Second), 10)
		if len(got) != 1 || got[0].Attempts != 1 {
			t.Fatalf("claim when due: %+v, want the entry with 1 attempt", got)
		}
		must(t, o.Retry(context.Background(), "e1", "a", t0.Add(30*time.Second)))
		got = claim(t, o, t0.Add(30*time.Second), 10)
		if len(got) != 1 || got[0].Attempts != 2 || !got[0].Created.Equal(t0) {
			t.Fatalf("second retry: %+v, want the entry with 2 attempts, created at t0", got)
		}
		checkStats(t, o, 1, t0)
	}},
	{"UnknownEntryIsNoError", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		must(t, o.Done(context.Background(), "nope", "a"))
		must(t, o.Retry(context.Background(), "nope", "a", t0))
		checkStats(t, o, 0, time.Time{})
		if got := claim(t, o, t0.Add(time.Hour), 10); len(got) != 0 {
			t.Fatalf("claimed %+v from an empty outbox", got)
		}
	}},
	{"StatsOldest", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		checkStats(t, o, 0, time.Time{})
		mustAdd(t, o, event("new", t0.Add(time.Minute), "a", "b"), true)
		mustAdd(t, o, event("old", t0, "a"), true)
		checkStats(t, o, 3, t0)
		claim(t, o, t0.Add(time.Hour), 10) // claimed entries still wait
		checkStats(t, o, 3, t0)
		must(t, o.Done(context.Background(), "old", "a"))
		checkStats(t, o, 2, t0.Add(time.Minute))
	}},
	{"SurvivesReopen", func(t *testing.T, o alerts.Outbox, again func() alerts.Outbox) {
		mustAdd(t, o, event("waits", t0, "a"), true)
		mustAdd(t, o, event("retried", t0, "a"), true)
		mustAdd(t, o, event("done", t0, "a"), true)
		claim(t, o, t0, 10)
		must(t, o.Retry(context.Background(), "retried", "a", t0.Add(time.Second)))
		must(t, o.Done(context.Background(), "done", "a"))
		o = again()
		for _, id := range []string{"waits", "retried", "done"} {
			mustAdd(t, o, event(id, t0, "a"), false)
		}
		got := claim(t, o, t0.Add(lease), 10)
		slices.SortFunc(got, func(x, y alerts.Pending) int { return strings.Compare(x.Event.ID, y.Event.ID) })
		if len(got) != 2 || got[0].Event.ID != "retried" || got[0].Attempts != 1 || got[1].Event.ID != "waits" || got[1].Attempts != 0 {
			t.Fatalf("after reopening: claimed %+v, want retried (1 attempt) and waits (0)", got)
		}
	}},
	{"ClaimsNeverShare", func(t *testing.T, o alerts.Outbox, again func() alerts.Outbox) {
		const n = 60
		for i := range n {
			mustAdd(t, o, event(fmt.Sprint("e", i), t0, "a"), true)
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range n { // bounded: an outbox that hides nothing never runs dry
					got, err := o.Claim(context.Background(), t0, 3, lease)
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, p := range got {
						seen[p.Event.ID]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("claimed %d entries, want %d", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("%s claimed %d times within its lease", id, c)
			}
		}
	}},
	{"KeepEnds", func(t *testing.T, o alerts.Outbox, _ func() alerts.Outbox) {
		// On the real clock: Redis's tombstones expire on Redis's.
		const keep = 300 * time.Millisecond
		at := time.Now().Truncate(time.Millisecond)
		e := event("k", at, "a")
		if added, err := o.Add(context.Background(), e, keep); err != nil || !added {
			t.Fatalf("Add: %v, %v; want true", added, err)
		}
		must(t, o.Done(context.Background(), "k", "a"))
		if added, err := o.Add(context.Background(), e, keep); err != nil || added {
			t.Fatalf("Add within keep: %v, %v; want false", added, err)
		}
		time.Sleep(keep + 100*time.Millisecond)
		e.Time = time.Now().Truncate(time.Millisecond)
		if added, err := o.Add(context.Background(), e, keep); err != nil || !added {
			t.Fatalf("Add after keep: %v, %v; want true", added, err)
		}
	}},
}

func TestOutboxContract(t *testing.T) {
	for _, k := range outboxKinds {
		t.Run(k.name, func(t *testing.T) {
			open := k.start(t)
			for _, c := range outboxContract {
				t.Run(c.name, func(t *testing.T) {
					o, again := open(t)
					c.run(t, o, again)
				})
			}
		})
	}
}

// keepLong is the keep of the contract's Adds: past every instant they use.
const keepLong = 48 * time.Hour

func mustAdd(t *testing.T, o alerts.Outbox, e alerts.Event, want bool) {
	t.Helper()
	added, err := o.Add(context.Background(), e, keepLong)
	if err != nil {
		t.Fatal(err)
	}
	if added != want {
		t.Fatalf("Add(%s, %v): got %v, want %v", e.ID, e.Sinks, added, want)
	}
}

func claim(t *testing.T, o alerts.Outbox, now time.Time, n int) []alerts.Pending {
	t.Helper()
	got, err := o.Claim(context.Background(), now, n, lease)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ids(ps []alerts.Pending) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Event.ID)
	}
	return out
}

func checkStats(t *testing.T, o alerts.Outbox, wantN int, wantOldest time.Time) {
	t.Helper()
	n, oldest, err := o.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != wantN || !oldest.Equal(wantOldest) {
		t.Fatalf("Stats: got %d, %v; want %d, %v", n, oldest, wantN, wantOldest)
	}
}

// checkPending compares p with want, times as instants.
func checkPending(t *testing.T, p, want alerts.Pending) {
	t.Helper()
	if norm(p) != norm(want) {
		t.Fatalf("got  %+v\nwant %+v", norm(p), norm(want))
	}
}

// norm is a Pending as a comparable string, with times in UTC.
func norm(p alerts.Pending) string {
	d := p.Event.Data
	exhaustion := "nil"
	if d.Exhaustion != nil {
		exhaustion = d.Exhaustion.UTC().String()
	}
	threshold := "nil"
	if d.Threshold != nil {
		threshold = fmt.Sprint(*d.Threshold)
	}
	return fmt.Sprintf("id=%s type=%s time=%s sinks=%v sink=%s created=%s attempts=%d data={%s %s %s %d %d %s %s %s}",
		p.Event.ID, p.Event.Type, p.Event.Time.UTC(), p.Event.Sinks, p.Sink, p.Created.UTC(), p.Attempts,
		d.Customer, d.Plan, threshold, d.Used, d.Limit, d.PeriodStart.UTC(), d.PeriodEnd.UTC(), exhaustion)
}

// TestFileOutboxSurvivesCrash copies the database file while the store is
// open, as a crash would leave it: what Add and Retry returned from is in
// it, with no flush and no Close.
func TestFileOutboxSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	st := openFile(t, dir)
	o := st.Outbox()
	mustAdd(t, o, event("e1", t0, "a"), true)
	claim(t, o, t0, 10)
	must(t, o.Retry(context.Background(), "e1", "a", t0.Add(time.Second)))

	copyDir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(dir, file.DBName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(copyDir, file.DBName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	o = openFile(t, copyDir).Outbox()
	mustAdd(t, o, event("e1", t0, "a"), false)
	got := claim(t, o, t0.Add(time.Second), 10)
	if len(got) != 1 || got[0].Event.ID != "e1" || got[0].Attempts != 1 {
		t.Fatalf("after the crash: claimed %+v, want e1 with 1 attempt", got)
	}
}

// TestRedisOutboxReplicas has three replicas add the same events at once
// and claim them at once, on a busy host: each entry is added once and
// claimed once.
func TestRedisOutboxReplicas(t *testing.T) {
	srv := redistest.Start(t)
	busyhost.Spin(t, time.Minute)
	var outs []alerts.Outbox
	for range 3 {
		outs = append(outs, openRedis(t, srv, redis.DefaultPrefix).Outbox())
	}
	const n = 50
	var added atomic.Int64
	var wg sync.WaitGroup
	for r, o := range outs {
		wg.Go(func() {
			for i := range n {
				i = (i + r*17) % n // each replica in its own order
				ok, err := o.Add(context.Background(), event(fmt.Sprint("e", i), t0, "a", "b"), keepLong)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					added.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if added.Load() != n {
		t.Fatalf("%d Adds reported a new event, want %d", added.Load(), n)
	}
	var mu sync.Mutex
	claimed := map[string]int{}
	for _, o := range outs {
		wg.Go(func() {
			for range 2 * n {
				got, err := o.Claim(context.Background(), t0, 4, lease)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, p := range got {
					claimed[alerts.EntryKey(p.Event.ID, p.Sink)]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != 2*n {
		t.Fatalf("claimed %d entries, want %d", len(claimed), 2*n)
	}
	for k, c := range claimed {
		if c != 1 {
			t.Errorf("entry %q claimed %d times", k, c)
		}
	}
}
