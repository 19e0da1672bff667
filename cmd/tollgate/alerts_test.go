package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/alerts"
	"github.com/tollgate/tollgate/internal/busyhost"
	"github.com/tollgate/tollgate/internal/hooktest"
	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// These tests send quota events from the real binary to a real receiver:
// across a restart on the file store, and from three replicas sharing
// Redis's outbox.

// alertEdits are the replacements of the payments example that give the
// free plan a quota of limit a day, alerting at 80% and 100% to a webhook
// sink "hook" at url.
func alertEdits(limit int, url string) [][2]string {
	return [][2]string{
		{"quota: {limit: 1000, period: day}", fmt.Sprintf("quota: {limit: %d, period: day}", limit)},
		{"alerts: {thresholds: [80, 100], forecast: true, sinks: [ops]}", "alerts: {thresholds: [80, 100], sinks: [hook]}"},
		{`      webhook: {url: "http://echo:8080/hooks/tollgate", timeout: 5s}` + "\n",
			`      webhook: {url: "http://echo:8080/hooks/tollgate", timeout: 5s}` + "\n" +
				"    hook:\n" + `      webhook: {url: "` + url + `/tollgate"}` + "\n"},
	}
}

// today is the start of the UTC day: the free plan's quota period.
func today() time.Time { return time.Now().UTC().Truncate(24 * time.Hour) }

// eventData decodes a delivery's CloudEvent data.
func eventData(t *testing.T, d hooktest.Delivery) alerts.Data {
	t.Helper()
	var ce struct{ Data alerts.Data }
	if err := json.Unmarshal(d.Body, &ce); err != nil {
		t.Fatalf("event %s: %v: %s", d.ID, err, d.Body)
	}
	return ce.Data
}

// TestAlertsDeliveredAfterRestart: an event whose delivery failed (the
// receiver answered 503) waits in the file store's outbox through a
// SIGTERM; the process started again on the same directory delivers it,
// once, with the same id and body, after the receiver is back. The new
// process sees the threshold again at its next request, and adds nothing:
// the outbox keeps the first event of each id.
//
// The retry comes at the default backoff, 5 to 10s after the failure
// (alerts.DefaultBackoff, drawn in its upper half): the outbox keeps when
// an event is due across the restart.
func TestAlertsDeliveredAfterRestart(t *testing.T) {
	testclock.AwayFromMidnight(t)
	var status atomic.Int64
	status.Store(http.StatusServiceUnavailable)
	r := hooktest.New(t, func(string, int) int { return int(status.Load()) })
	policyFile := replicaPolicy(t, alertEdits(10, r.URL))
	store := "file:" + t.TempDir()
	id := alerts.EventID(alerts.TypeThreshold, "initech", "free", today(), 80)

	// 1. 8 of 10: the 80% event, refused.
	p := startProc(t, policyFile, store)
	if got := p.checks(freeKey, 8); got != 8 {
		t.Fatalf("step 1: got %d allowed, want 8", got)
	}
	hooktest.WaitFor(t, "a failed delivery", func() bool { return p.metric(`tollgate_events_failed_total{sink="hook"}`) >= 1 })
	if n := p.metric("tollgate_events_pending"); n != 1 {
		t.Fatalf("step 1: %v events pending, want 1", n)
	}
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("step 1: SIGTERM: exit %v, want status 0\n%s", err, p.logs.String())
	}
	refused := r.Deliveries()
	if len(refused) == 0 || refused[0].ID != id || refused[0].Status != http.StatusServiceUnavailable {
		t.Fatalf("step 1: got deliveries of %v, want %s refused", ids(refused), id)
	}

	// 2. The receiver is back, and so is tollgate; one more request
	// crosses 80% again in the new process.
	status.Store(http.StatusOK)
	p = startProc(t, policyFile, store)
	if !p.check(freeKey) {
		t.Fatal("step 2: the 9th request was denied")
	}
	hooktest.WaitFor(t, "the delivery after the restart", func() bool { return r.Accepted()[id] >= 1 })
	hooktest.WaitFor(t, "an empty outbox", func() bool { return p.metric("tollgate_events_pending") == 0 })
	got := r.Deliveries()
	for _, d := range got {
		if d.ID != id || !bytes.Equal(d.Body, refused[0].Body) {
			t.Errorf("step 2: got %s, want every delivery to be the refused one:\n%s", d.Body, refused[0].Body)
		}
	}
	if a := r.Accepted()[id]; a != 1 || len(got) != len(refused)+1 {
		t.Errorf("step 2: got %d deliveries (%d before the restart), %d accepted, want one accepted after the restart", len(got), len(refused), a)
	}
	if data := eventData(t, got[len(got)-1]); data.Used != 8 || data.Limit != 10 || data.Threshold == nil || *data.Threshold != 80 {
		t.Errorf("step 2: got data %+v, want 8 used of 10, threshold 80", data)
	}
	if n := p.metric(`tollgate_events_sent_total{sink="hook"}`); n != 1 {
		t.Errorf("step 2: sent %v events, want 1", n)
	}
	t.Logf("refused %d times before the restart; delivered %v after the refusal", len(refused), got[len(got)-1].At.Sub(refused[len(refused)-1].At).Round(time.Millisecond))
}

// TestAlertsThreeReplicasOneEvent: three processes on one Redis, both
// cores kept busy, a fresh key's requests sprayed over the three until its
// quota of 20 is used: each replica may see each threshold, and the
// receiver gets one event per threshold in total, each delivered once.
func TestAlertsThreeReplicasOneEvent(t *testing.T) {
	testclock.AwayFromMidnight(t)
	srv := redistest.Start(t)
	r := hooktest.New(t, hooktest.Always(http.StatusNoContent))
	key := testKey{"alerts-e2e", "free", "tg_test_free_alerts_e2e_00001"}
	// Each replica's marker: its own customer, who crosses 80% there alone.
	markers := []testKey{
		{"marker-0", "free", "tg_test_free_alerts_marker_0"},
		{"marker-1", "free", "tg_test_free_alerts_marker_1"},
		{"marker-2", "free", "tg_test_free_alerts_marker_2"},
	}
	procs := startReplicas(t, 3, replicaPolicy(t, alertEdits(20, r.URL), append([]testKey{key}, markers...)...), srv.URL())

	// 1. 60 requests at once over the three replicas.
	stop := busyhost.Spin(t, time.Minute)
	got := sendLoad(t, procs, 30, 60, checkRequest("198.51.100.7", "POST", "/partners/p-1/transactions", key.value))
	stop()
	t.Logf("step 1: %v", got)

	// 2. The markers: a replica adds events to the outbox in the order it
	// saw them, so once its marker has come and the outbox is empty,
	// whatever it saw in step 1 was added (or found added) before.
	for i, p := range procs {
		if n := p.checks(markers[i].value, 16); n != 16 {
			t.Fatalf("step 2: marker %d: got %d allowed, want 16", i, n)
		}
	}
	e80 := alerts.EventID(alerts.TypeThreshold, key.id, "free", today(), 80)
	e100 := alerts.EventID(alerts.TypeThreshold, key.id, "free", today(), 100)
	hooktest.WaitFor(t, "the events", func() bool {
		a := r.Accepted()
		return a[e80] >= 1 && a[e100] >= 1 && len(a) == 5
	})
	hooktest.WaitFor(t, "an empty outbox", func() bool { return procs[0].metric("tollgate_events_pending") == 0 })

	count := map[string]int{}
	for _, d := range r.Deliveries() {
		count[d.ID]++
		if d.ID != e80 && d.ID != e100 {
			continue
		}
		data := eventData(t, d)
		lo := int64(16) // 80%: whichever replica's crossing came first
		if d.ID == e100 {
			lo = 20
		}
		if data.Customer != key.id || data.Used < lo || data.Used > 20 || data.Limit != 20 {
			t.Errorf("event %s: got data %+v, want %s, %d to 20 used of 20", d.ID, data, key.id, lo)
		}
	}
	for i, m := range markers {
		if id := alerts.EventID(alerts.TypeThreshold, m.id, "free", today(), 80); count[id] != 1 {
			t.Errorf("marker %d: got %d deliveries, want 1", i, count[id])
		}
	}
	if count[e80] != 1 || count[e100] != 1 || len(count) != 5 {
		t.Errorf("got deliveries %v, want one each of %s (80%%), %s (100%%) and the three markers", count, e80, e100)
	}
	sent := 0.0
	for _, p := range procs {
		sent += p.metric(`tollgate_events_sent_total{sink="hook"}`)
	}
	if sent != 5 {
		t.Errorf("the replicas sent %v events in all, want 5", sent)
	}
}

// ids returns the event ids of deliveries, in order.
func ids(ds []hooktest.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}
