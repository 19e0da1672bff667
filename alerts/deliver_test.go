package alerts_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/alerts"
	"github.com/tollgate/tollgate/internal/busyhost"
	"github.com/tollgate/tollgate/internal/hooktest"
	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/store/redis"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// sinks returns a DeliverOptions.Sinks over fixed sinks.
func sinks(ss ...alerts.Sink) func(string) (alerts.Sink, bool) {
	m := map[string]alerts.Sink{}
	for _, s := range ss {
		m[s.Name] = s
	}
	return func(name string) (alerts.Sink, bool) { s, ok := m[name]; return s, ok }
}

// run starts d and returns the function that stops it and waits for Run.
func run(t *testing.T, d *alerts.Deliverer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// pending returns the outbox's count of waiting entries.
func pending(t *testing.T, o alerts.Outbox) int {
	t.Helper()
	n, _, err := o.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// metric returns the value of the metric name with label sink=sink (any
// labels when sink is ""), from d's collectors; -1 when absent.
func metric(t *testing.T, d *alerts.Deliverer, name, sink string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(d.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := sink == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == "sink" && l.GetValue() == sink
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

func TestDeliverCloudEvent(t *testing.T) {
	secret := []byte("hook-secret")
	ops := hooktest.New(t, hooktest.Always(http.StatusNoContent))
	plain := hooktest.New(t, hooktest.Always(http.StatusOK))
	o := alerts.NewMemoryOutbox()
	d := alerts.NewDeliverer(alerts.DeliverOptions{Outbox: o, Sinks: sinks(
		alerts.Sink{Name: "ops", URL: ops.URL + "/hook?token=x", Secret: secret},
		alerts.Sink{Name: "plain", URL: plain.URL},
	)})
	run(t, d)
	at := time.Now().UTC().Truncate(time.Second)
	threshold := event(alerts.EventID(alerts.TypeThreshold, "acme", "pro", at.Truncate(24*time.Hour), 80), at, "ops", "plain")
	fc := forecast(alerts.EventID(alerts.TypeForecast, "acme", "pro", at.Truncate(24*time.Hour), 0), at, "ops")
	for _, e := range []alerts.Event{threshold, fc} {
		if !d.Enqueue(e) {
			t.Fatal("Enqueue: queue full")
		}
	}
	hooktest.WaitFor(t, "three deliveries", func() bool { return len(ops.Deliveries()) == 2 && len(plain.Deliveries()) == 1 })
	hooktest.WaitFor(t, "an empty outbox", func() bool { return pending(t, o) == 0 })

	byID := map[string]hooktest.Delivery{}
	for _, got := range ops.Deliveries() {
		byID[got.ID] = got
		if ct := got.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
			t.Errorf("%s: Content-Type %q, want application/cloudevents+json", got.ID, ct)
		}
		m := hmac.New(sha256.New, secret)
		m.Write(got.Body)
		if sig, want := got.Header.Get("X-Tollgate-Signature"), "sha256="+hex.EncodeToString(m.Sum(nil)); sig != want {
			t.Errorf("%s: X-Tollgate-Signature %q, want %q", got.ID, sig, want)
		}
	}
	checkBody(t, byID[threshold.ID].Body, threshold, `{"customer":"acme","plan":"pro","threshold":80,"used":80000,"limit":100000,`+
		`"period_start":"`+rfc(threshold.Data.PeriodStart)+`","period_end":"`+rfc(threshold.Data.PeriodEnd)+`","exhaustion":null}`)
	checkBody(t, byID[fc.ID].Body, fc, `{"customer":"acme","plan":"pro","used":80000,"limit":100000,`+
		`"period_start":"`+rfc(fc.Data.PeriodStart)+`","period_end":"`+rfc(fc.Data.PeriodEnd)+`","exhaustion":"`+rfc(*fc.Data.Exhaustion)+`"}`)

	p := plain.Deliveries()[0]
	if sig := p.Header.Get("X-Tollgate-Signature"); sig != "" {
		t.Errorf("a sink without a secret got a signature %q", sig)
	}
	if string(p.Body) != string(byID[threshold.ID].Body) {
		t.Errorf("the two sinks got different bodies:\n%s\n%s", p.Body, byID[threshold.ID].Body)
	}
	for _, c := range []struct {
		name, sink string
		want       float64
	}{
		{"tollgate_events_sent_total", "ops", 2},
		{"tollgate_events_sent_total", "plain", 1},
		{"tollgate_events_failed_total", "ops", -1},
		{"tollgate_events_pending", "", 0},
		{"tollgate_events_oldest_pending_seconds", "", 0},
		{"tollgate_events_enqueue_dropped_total", "", 0},
	} {
		if got := metric(t, d, c.name, c.sink); got != c.want {
			t.Errorf("%s{sink=%q}: got %v, want %v", c.name, c.sink, got, c.want)
		}
	}
}

func rfc(t time.Time) string { return t.Format(time.RFC3339Nano) }

// checkBody checks a CloudEvent's members one by one, and its data as the
// exact JSON wanted.
func checkBody(t *testing.T, body []byte, e alerts.Event, wantData string) {
	t.Helper()
	var got map[string]json.RawMessage
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := map[string]string{
		"specversion": `"1.0"`, "id": `"` + e.ID + `"`, "source": `"tollgate"`, "type": `"` + e.Type + `"`,
		"subject": `"acme"`, "time": `"` + rfc(e.Time) + `"`, "datacontenttype": `"application/json"`, "data": wantData,
	}
	if len(got) != len(want) {
		t.Errorf("body has %d members, want %d: %s", len(got), len(want), body)
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("%s: %q: got %s, want %s", e.Type, k, got[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, e.Time.Format(time.RFC3339Nano)); err != nil {
		t.Errorf("time is not RFC 3339: %v", err)
	}
}

// TestDeliverRetriesSameID has a receiver fail each event twice (a 503,
// then no answer within the sink's timeout) and take the third delivery:
// every event arrives, with the same id and body each time, and is
// accepted once. The backoff is cut short here; TestBackoffDefaults checks
// the default.
func TestDeliverRetriesSameID(t *testing.T) {
	r := hooktest.New(t, func(_ string, n int) int {
		switch n {
		case 1:
			return http.StatusServiceUnavailable
		case 2:
			return 0 // no answer
		default:
			return http.StatusAccepted
		}
	})
	o := alerts.NewMemoryOutbox()
	d := alerts.NewDeliverer(alerts.DeliverOptions{Outbox: o, Sinks: sinks(alerts.Sink{Name: "ops", URL: r.URL, Timeout: 100 * time.Millisecond}),
		Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Poll: 5 * time.Millisecond})
	run(t, d)
	const n = 5
	for i := range n {
		d.Enqueue(event(fmt.Sprint("e", i), time.Now(), "ops"))
	}
	hooktest.WaitFor(t, "every event accepted", func() bool { return len(r.Accepted()) == n })
	hooktest.WaitFor(t, "an empty outbox", func() bool { return pending(t, o) == 0 })

	bodies := map[string][]string{}
	for _, got := range r.Deliveries() {
		bodies[got.ID] = append(bodies[got.ID], string(got.Body))
	}
	for i := range n {
		id := fmt.Sprint("e", i)
		b := bodies[id]
		if len(b) != 3 || b[0] != b[1] || b[1] != b[2] {
			t.Errorf("%s: %d deliveries, want 3 of one body: %q", id, len(b), b)
		}
		if a := r.Accepted()[id]; a != 1 {
			t.Errorf("%s accepted %d times, want 1", id, a)
		}
	}
	if got := metric(t, d, "tollgate_events_failed_total", "ops"); got != 2*n {
		t.Errorf("failed: got %v, want %d", got, 2*n)
	}
	if got := metric(t, d, "tollgate_events_sent_total", "ops"); got != n {
		t.Errorf("sent: got %v, want %d", got, n)
	}
}

// retryLog is an outbox that records the instants of its Retry calls.
type retryLog struct {
	alerts.Outbox
	mu    sync.Mutex
	nexts []time.Time
}

func (l *retryLog) Retry(ctx context.Context, id, sink string, next time.Time) error {
	l.mu.Lock()
	l.nexts = append(l.nexts, next)
	l.mu.Unlock()
	return l.Outbox.Retry(ctx, id, sink, next)
}

func (l *retryLog) get() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.nexts...)
}

// TestDeliverGivesUpAfter24h fails every delivery, at the default backoff
// and give-up, on a clock the test moves to each retry when it is due:
// each wait is drawn from the upper half of 10s doubled per failure, up to
// 1h; the last comes 24h after the event, and then the event is dropped.
func TestDeliverGivesUpAfter24h(t *testing.T) {
	clock := testclock.New(t0)
	r := hooktest.New(t, hooktest.Always(http.StatusInternalServerError))
	r.Now = clock.Now
	o := &retryLog{Outbox: alerts.NewMemoryOutbox()}
	d := alerts.NewDeliverer(alerts.DeliverOptions{Outbox: o, Sinks: sinks(alerts.Sink{Name: "ops", URL: r.URL}),
		Now: clock.Now, Poll: time.Millisecond})
	run(t, d)
	d.Enqueue(event("e1", t0, "ops"))
	hooktest.WaitFor(t, "the event dropped", func() bool {
		if metric(t, d, "tollgate_events_dropped_total", "ops") == 1 {
			return true
		}
		// Once the last failure is recorded, on to when it is due.
		if nexts := o.get(); len(nexts) > 0 && len(nexts) == len(r.Deliveries()) {
			clock.Set(nexts[len(nexts)-1])
		}
		return false
	})
	got, nexts := r.Deliveries(), o.get()
	if len(got) != len(nexts)+1 {
		t.Fatalf("%d deliveries and %d retries, want one retry fewer", len(got), len(nexts))
	}
	end := t0.Add(24 * time.Hour)
	ceiling := 10 * time.Second
	for k, next := range nexts {
		if k > 0 {
			ceiling = min(2*ceiling, time.Hour)
		}
		wait := next.Sub(got[k].At)
		if k == len(nexts)-1 {
			if !next.Equal(end) {
				t.Errorf("the last retry is at t0+%v, want t0+24h", next.Sub(t0))
			}
			continue
		}
		if wait < ceiling/2 || wait > ceiling {
			t.Errorf("wait %d: %v, want %v to %v", k+1, wait, ceiling/2, ceiling)
		}
	}
	if last := got[len(got)-1].At; !last.Equal(end) {
		t.Errorf("the last delivery at t0+%v, want t0+24h", last.Sub(t0))
	}
	if n := pending(t, o); n != 0 {
		t.Errorf("%d pending after the give-up, want 0", n)
	}
	if f := metric(t, d, "tollgate_events_failed_total", "ops"); f != float64(len(got)) {
		t.Errorf("failed: got %v, want %d", f, len(got))
	}
}

// TestDeliverSinkUnknown: an event whose sink the policy in force does not
// name (one a newer policy of another replica does, or a reload half done)
// is a failed attempt, retried, not dropped; its other sinks get it.
func TestDeliverSinkUnknown(t *testing.T) {
	r := hooktest.New(t, hooktest.Always(http.StatusOK))
	o := alerts.NewMemoryOutbox()
	d := alerts.NewDeliverer(alerts.DeliverOptions{Outbox: o, Sinks: sinks(alerts.Sink{Name: "ops", URL: r.URL}), Poll: time.Millisecond})
	run(t, d)
	d.Enqueue(event("e1", time.Now(), "ops", "unknown"))
	hooktest.WaitFor(t, "the delivery and a failed attempt", func() bool {
		return len(r.Accepted()) == 1 && metric(t, d, "tollgate_events_failed_total", "unknown") >= 1
	})
	if got := r.Accepted()["e1"]; got != 1 {
		t.Errorf("ops got e1 %d times, want 1", got)
	}
	if got := metric(t, d, "tollgate_events_dropped_total", "unknown"); got > 0 {
		t.Errorf("dropped{sink=unknown}: got %v, want 0 (it waits for a policy that names it)", got)
	}
	if n := pending(t, o); n != 1 {
		t.Errorf("%d pending, want the unknown sink's entry", n)
	}
}

// TestEnqueueNeverWaits fills the queue of a Deliverer that does not run:
// Enqueue returns at once, counts what it could not queue, and what it
// queued reaches the outbox when Run stops.
func TestEnqueueNeverWaits(t *testing.T) {
	o := alerts.NewMemoryOutbox()
	d := alerts.NewDeliverer(alerts.DeliverOptions{Outbox: o, Sinks: sinks(), Queue: 3})
	for i := range 5 {
		want := i < 3
		if got := d.Enqueue(event(fmt.Sprint("e", i), t0, "ops")); got != want {
			t.Errorf("Enqueue %d: got %v, want %v", i, got, want)
		}
	}
	if got := metric(t, d, "tollgate_events_enqueue_dropped_total", ""); got != 2 {
		t.Errorf("enqueue dropped: got %v, want 2", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, o); n != 3 {
		t.Errorf("pending after Run stopped: got %d, want 3 (the queue is written out)", n)
	}
}

// TestDeliverAfterRestart stops a Deliverer whose receiver fails, closes
// the file store and opens it again: a new Deliverer delivers the event
// once.
func TestDeliverAfterRestart(t *testing.T) {
	dir := t.TempDir()
	clock := testclock.New(t0)
	down := hooktest.New(t, hooktest.Always(http.StatusBadGateway))
	st := openFile(t, dir)
	d := alerts.NewDeliverer(alerts.DeliverOptions{Outbox: st.Outbox(), Sinks: sinks(alerts.Sink{Name: "ops", URL: down.URL}),
		Now: clock.Now, Poll: time.Millisecond})
	stop := run(t, d)
	e := event("e1", t0, "ops")
	d.Enqueue(e)
	hooktest.WaitFor(t, "a failed delivery", func() bool { return len(down.Deliveries()) == 1 })
	stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	up := hooktest.New(t, hooktest.Always(http.StatusOK))
	st = openFile(t, dir)
	clock.Advance(2 * time.Minute) // past the lease and the first backoff
	d = alerts.NewDeliverer(alerts.DeliverOptions{Outbox: st.Outbox(), Sinks: sinks(alerts.Sink{Name: "ops", URL: up.URL}),
		Now: clock.Now, Poll: time.Millisecond})
	stop = run(t, d)
	d.Enqueue(e) // seen again after the restart: not a second event
	hooktest.WaitFor(t, "the delivery", func() bool { return len(up.Accepted()) == 1 })
	hooktest.WaitFor(t, "an empty outbox", func() bool { return pending(t, st.Outbox()) == 0 })
	stop()
	if got := up.Deliveries(); len(got) != 1 || got[0].ID != "e1" {
		t.Errorf("after the restart: %d deliveries, want e1 once", len(got))
	}
	if got := down.Deliveries(); len(got) != 1 {
		t.Errorf("before the restart: %d deliveries, want 1", len(got))
	}
}

// TestDeliverThreeReplicasOneRedis has three Deliverers on one Redis, on a
// busy host, each see the same events: each event is delivered once.
func TestDeliverThreeReplicasOneRedis(t *testing.T) {
	srv := redistest.Start(t)
	busyhost.Spin(t, time.Minute)
	r := hooktest.New(t, hooktest.Always(http.StatusOK))
	var outs []alerts.Outbox
	var ds []*alerts.Deliverer
	var stops []func()
	for range 3 {
		o := openRedis(t, srv, redis.DefaultPrefix).Outbox()
		d := alerts.NewDeliverer(alerts.DeliverOptions{Outbox: o, Sinks: sinks(alerts.Sink{Name: "ops", URL: r.URL})})
		outs, ds, stops = append(outs, o), append(ds, d), append(stops, run(t, d))
	}
	const n = 20
	now := time.Now()
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() {
			for j := range n {
				d.Enqueue(event(fmt.Sprint("e", (j+7*i)%n), now, "ops"))
			}
		})
	}
	wg.Wait()
	hooktest.WaitFor(t, "every event delivered", func() bool { return len(r.Accepted()) == n })
	hooktest.WaitFor(t, "an empty outbox", func() bool { return pending(t, outs[0]) == 0 })
	for _, stop := range stops {
		stop() // their queues are written out: a late Add would show now
	}
	if p := pending(t, outs[0]); p != 0 {
		t.Errorf("%d pending after the replicas stopped, want 0", p)
	}
	got := r.Deliveries()
	if len(got) != n {
		t.Errorf("%d deliveries, want %d", len(got), n)
	}
	for id, c := range r.Accepted() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
	sent := 0.0
	for _, d := range ds {
		sent += max(metric(t, d, "tollgate_events_sent_total", "ops"), 0) // -1: this one sent none
	}
	if sent != n {
		t.Errorf("sent, summed over the replicas: %v, want %d", sent, n)
	}
}

// hungStats is an outbox whose Stats, once hung, does not answer until
// released, whatever its context says: a store that hangs.
type hungStats struct {
	alerts.Outbox
	hung    atomic.Bool
	release chan struct{}
}

func (o *hungStats) Stats(ctx context.Context) (int, time.Time, error) {
	if o.hung.Load() {
		<-o.release
	}
	return o.Outbox.Stats(ctx)
}

// TestScrapeDoesNotWaitForHungOutbox: while the outbox's Stats hangs, a
// scrape still returns, with the last pending count the outbox gave (a
// scrape that waited on the hung call would never return here); once it
// answers again, the scrapes show its new count.
func TestScrapeDoesNotWaitForHungOutbox(t *testing.T) {
	o := &hungStats{Outbox: alerts.NewMemoryOutbox(), release: make(chan struct{})}
	d := alerts.NewDeliverer(alerts.DeliverOptions{Outbox: o, Sinks: sinks(alerts.Sink{Name: "ops", URL: "http://127.0.0.1:1/"}),
		Now: testclock.New(t0).Now})
	if got := metric(t, d, "tollgate_events_pending", ""); got != 0 {
		t.Fatalf("step 1: pending %v, want 0", got)
	}
	o.hung.Store(true)
	if _, err := o.Outbox.Add(context.Background(), event("e1", t0, "ops"), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := metric(t, d, "tollgate_events_pending", ""); got != 0 {
			t.Fatalf("step 2: pending %v while the outbox hangs, want the last answer, 0", got)
		}
	}
	o.hung.Store(false)
	close(o.release)
	hooktest.WaitFor(t, "the outbox's new count", func() bool { return metric(t, d, "tollgate_events_pending", "") == 1 })
}
