package server

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// pageThrough follows a paged call from its first page and returns every
// item's id (keys) or name (usage customers), and the pages' sizes.
func (h *harness) pageThrough(path string, item func(a answer) []string) ([]string, []int) {
	h.t.Helper()
	var all []string
	var sizes []int
	after := ""
	for range 10_000 {
		p := path
		if after != "" {
			p += "&after=" + after
		}
		a := h.call("GET", p, "").want(h.t, p, 200, "")
		items := item(a)
		all, sizes = append(all, items...), append(sizes, len(items))
		next, ok := a.json["next"].(string)
		if !ok {
			return all, sizes
		}
		if next <= after {
			h.t.Fatalf("%s: next %q after %q", p, next, after)
		}
		after = next
	}
	h.t.Fatalf("%s: no last page", path)
	return nil, nil
}

func keyIDs(a answer) []string {
	var ids []string
	for _, it := range a.json["items"].([]any) {
		ids = append(ids, it.(map[string]any)["id"].(string))
	}
	return ids
}

// TestKeysPaging: GET /v1/keys answers pages in id order, the policy
// file's keys and the run-time keys together, each once; filters by
// customer and plan page too, a plan held by few keys in short pages.
func TestKeysPaging(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	var want []string
	for i := range 2600 {
		k := &policy.APIKey{ID: fmt.Sprintf("rt-%04d", i), Customer: fmt.Sprintf("c%d", i%40), Plans: []string{"free"},
			Enabled: true, Hash: hashOf(fmt.Sprintf("v%d", i))}
		if i == 7 || i == 2500 {
			k.Plans = []string{"enterprise"}
		}
		putKey(h.s.store, k)
		want = append(want, k.ID)
	}
	want = append(want, "acme-2026a", "globex-ent", "hooli-old", "initech-free", "umbrella-2025", "wayne-trial")
	slices.Sort(want)

	got, sizes := h.pageThrough("/v1/keys?limit=8", keyIDs)
	if !slices.Equal(got, want) {
		t.Fatalf("limit 8: got %d ids, want %d in order", len(got), len(want))
	}
	if sizes[0] != 8 || sizes[len(sizes)-1] != len(want)%8 {
		t.Fatalf("limit 8: got page sizes %v", sizes)
	}
	a := h.call("GET", "/v1/keys", "").want(t, "default", 200, "")
	if n := len(keyIDs(a)); n != defaultPage || a.json["next"] != want[defaultPage-1] {
		t.Fatalf("default limit: got %d items and next %v, want %d and %s", n, a.json["next"], defaultPage, want[defaultPage-1])
	}
	// The last page names no next, also when it is full.
	a = h.call("GET", "/v1/keys?limit=5&after="+want[len(want)-6], "").want(t, "last", 200, "")
	if _, ok := a.json["next"]; ok || len(keyIDs(a)) != 5 {
		t.Fatalf("last full page: got %s", a.raw)
	}

	got, _ = h.pageThrough("/v1/keys?limit=4&customer=c7", keyIDs)
	var c7 []string
	for i := 7; i < 2600; i += 40 {
		c7 = append(c7, fmt.Sprintf("rt-%04d", i))
	}
	if !slices.Equal(got, c7) {
		t.Fatalf("customer c7: got %v, want %v", got, c7)
	}
	got, _ = h.pageThrough("/v1/keys?limit=4&customer=acme", keyIDs)
	if !slices.Equal(got, []string{"acme-2026a"}) {
		t.Fatalf("customer acme: got %v", got)
	}

	// enterprise: two run-time keys among 2,600, far apart, and one policy key.
	got, sizes = h.pageThrough("/v1/keys?limit=1&plan=enterprise", keyIDs)
	if w := []string{"globex-ent", "rt-0007", "rt-2500"}; !slices.Equal(got, w) {
		t.Fatalf("plan enterprise: got %v, want %v", got, w)
	}
	if !slices.Contains(sizes, 0) {
		t.Fatalf("plan enterprise: got page sizes %v, want a short page where the scan budget ran out", sizes)
	}
}

// TestUsagePaging: /v1/usage without customer pages over the customers
// with a key on the plan, in customer order.
func TestUsagePaging(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	for i := range 30 {
		plans := []string{"free"}
		if i%3 == 0 {
			plans = []string{"pro"}
		}
		// Two keys a customer: one customer on two plans.
		putKey(h.s.store, &policy.APIKey{ID: fmt.Sprintf("a%02d", i), Customer: fmt.Sprintf("cust-%02d", i/2), Plans: plans,
			Enabled: true, Hash: hashOf(fmt.Sprintf("v%d", i))})
	}
	var want []string
	for c := range 15 {
		if (2*c)%3 != 0 || (2*c+1)%3 != 0 {
			want = append(want, fmt.Sprintf("cust-%02d", c))
		}
	}
	want = append(want, "hooli", "initech", "umbrella")
	slices.Sort(want)
	customers := func(a answer) []string {
		var cs []string
		for c := range a.json["items"].(map[string]any) {
			cs = append(cs, c)
		}
		slices.Sort(cs)
		return cs
	}
	got, sizes := h.pageThrough("/v1/usage?plan=free&start=2026-11-19&end=2026-11-20&limit=4", customers)
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if sizes[0] != 4 {
		t.Fatalf("got page sizes %v", sizes)
	}
	a := h.call("GET", "/v1/usage?plan=free&start=2026-11-20&end=2026-11-20&limit=2&after=initech", "").want(t, "after", 200, "")
	if got := jsonOf(t, a.json); got != `{"end":"2026-11-20","items":{"umbrella":[[0,1000]]},"plan":"free","start":"2026-11-20"}` {
		t.Fatalf("after initech: got %s", got)
	}
	if !strings.Contains(h.call("GET", "/v1/usage?plan=enterprise&start=2026-11-20&end=2026-11-20", "").raw, "globex") {
		t.Fatal("enterprise: globex missing")
	}
	// A year-long report: a page holds at most maxUsageCells pairs, 54
	// customers of 366 days, whatever its limit; the pages still cover
	// every customer.
	yearCustomers := func(a answer) []string {
		for c, series := range a.json["items"].(map[string]any) {
			if n := len(series.([]any)); n != 366 {
				t.Fatalf("%s: got %d days, want 366", c, n)
			}
		}
		return customers(a)
	}
	const year = "/v1/usage?plan=free&start=2024-01-01&end=2024-12-31&limit=1000"
	for i := range 80 {
		putKey(h.s.store, &policy.APIKey{ID: fmt.Sprintf("y%02d", i), Customer: fmt.Sprintf("year-%02d", i), Plans: []string{"free"},
			Enabled: true, Hash: hashOf(fmt.Sprintf("y%d", i))})
	}
	got, sizes = h.pageThrough(year, yearCustomers)
	if len(got) != len(want)+80 || sizes[0] != maxUsageCells/366 {
		t.Fatalf("year: got %d customers in pages of %v, want %d in pages of at most %d", len(got), sizes, len(want)+80, maxUsageCells/366)
	}
}

// gatedCounters holds the first Counter call until released, and counts
// the calls.
type gatedCounters struct {
	Store
	entered, release chan struct{}
	once             sync.Once
	calls            atomic.Int64
}

func (g *gatedCounters) Counter(k policy.Key) (int64, int64, error) {
	g.calls.Add(1)
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.Store.Counter(k)
}

// TestAdminCallCancelledAtStop: a large usage report in flight when the
// server stops is cancelled (it used to run on to its end past SIGTERM):
// once Serve has cancelled the admin calls' context, the report reads no
// more counters and Serve returns.
func TestAdminCallCancelledAtStop(t *testing.T) {
	g := &gatedCounters{entered: make(chan struct{}), release: make(chan struct{})}
	h := serveWrapped(t, testPolicy(t), func(c *Config) { c.ShutdownGrace = time.Hour },
		func(s Store) Store { g.Store = s; return g })
	for i := range 50 {
		putKey(h.s.store, &policy.APIKey{ID: fmt.Sprintf("k%d", i), Customer: fmt.Sprintf("c%d", i), Plans: []string{"free"},
			Enabled: true, Hash: hashOf(fmt.Sprintf("v%d", i))})
	}
	answered := make(chan answer, 1)
	go func() {
		answered <- h.call("GET", "/v1/usage?plan=free&start=2025-11-21&end=2026-11-20&limit=1000", "")
	}()
	<-g.entered
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	<-h.s.adminCtx.Done() // Serve is stopping
	close(g.release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	a := <-answered
	a.want(t, "report", 503, "cancelled")
	// 50 customers × 365 days were asked for; the call stopped at once.
	if n := g.calls.Load(); n > 2 {
		t.Fatalf("got %d counter reads, want the report to stop after the one in flight", n)
	}
}
