package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tollgate/tollgate/alerts"
	"github.com/tollgate/tollgate/internal/hooktest"
)

// hookSecret is the test sink's secret; its file ends in a newline, as
// echo writes it, which is not part of the secret.
const hookSecret = "e2e-hook-secret-0123456789"

// alertsPolicy returns the payments example with the free plan's quota
// 10 a day, alerting at 80% and 100% to the sink "hook", a webhook at url
// signed with a secret from a file.
func alertsPolicy(t *testing.T, url string) string {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "hook-secret")
	if err := os.WriteFile(secretFile, []byte(hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return testPolicy(t,
		"quota: {limit: 1000, period: day}", "quota: {limit: 10, period: day}",
		"alerts: {thresholds: [80, 100], forecast: true, sinks: [ops]}", "alerts: {thresholds: [80, 100], sinks: [hook]}",
		`      webhook: {url: "http://echo:8080/hooks/tollgate", timeout: 5s}`+"\n",
		`      webhook: {url: "http://echo:8080/hooks/tollgate", timeout: 5s}`+"\n"+
			"    hook:\n"+
			`      webhook: {url: "`+url+`/tollgate", secret_file: "`+secretFile+`"}`+"\n")
}

// TestAlertsThresholdEvents: through the gRPC Check path, a customer who
// uses 80% and then 100% of a quota of 10 makes exactly two events at a
// real receiver: CloudEvents 1.0 in structured JSON, with the event's
// stable id, the use at the request that crossed each threshold, and an
// HMAC signature of the exact body. A grant that lowers the share used, and
// more requests that cross 80% and 100% of the new limit, make no more in
// the period. With the memory store's outbox and the file store's.
func TestAlertsThresholdEvents(t *testing.T) {
	for _, store := range []string{"memory", "file"} {
		t.Run(store, func(t *testing.T) { testAlertsThresholdEvents(t, store) })
	}
}

func testAlertsThresholdEvents(t *testing.T, store string) {
	const free = "tg_demo_free_0000000000000001" // customer initech
	r := hooktest.New(t, hooktest.Always(http.StatusNoContent))
	h := serve(t, alertsPolicy(t, r.URL), func(c *Config) {
		if store == "file" {
			c.Store = "file:" + t.TempDir()
		}
	})
	dayStart, dayEnd := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

	// 1. Twelve requests a minute apart: the 8th uses 80%, the 10th 100%,
	// the last two are denied. What /v1/usage/…/forecast says at the 8th
	// is what the 80% event must say of the exhaustion.
	var at [13]time.Time
	var exhaustion80 any
	for i := 1; i <= 12; i++ {
		h.clock.Advance(time.Minute)
		at[i] = h.clock.Now()
		want := 200
		if i > 10 {
			want = 429
		}
		if d := h.check(free); d.status != want {
			t.Fatalf("1: request %d: got %d, want %d", i, d.status, want)
		}
		if i == 8 {
			a := h.call("GET", "/v1/usage/initech/forecast?plan=free", "").want(t, "1 forecast", 200, "")
			exhaustion80 = a.json["exhaustion"]
		}
	}
	e80, e100 := alerts.EventID(alerts.TypeThreshold, "initech", "free", dayStart, 80), alerts.EventID(alerts.TypeThreshold, "initech", "free", dayStart, 100)
	hooktest.WaitFor(t, "the two events", func() bool { return len(r.Accepted()) >= 2 })

	// Two events due together are sent together: in either order.
	got := map[string]hooktest.Delivery{}
	for _, d := range r.Deliveries() {
		got[d.ID] = d
	}
	if _, ok := got[e80]; !ok || len(r.Deliveries()) != 2 {
		t.Fatalf("1: got deliveries of %v, want one each of %s (80%%) and %s (100%%)", ids(r.Deliveries()), e80, e100)
	}
	if _, ok := got[e100]; !ok {
		t.Fatalf("1: got deliveries of %v, want one each of %s (80%%) and %s (100%%)", ids(r.Deliveries()), e80, e100)
	}
	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }
	if s, ok := exhaustion80.(string); !ok || s <= rfc(at[8]) || s >= rfc(dayEnd) {
		t.Fatalf("1: forecast at the 8th request: exhaustion %v, want an instant after %s, before the day's end", exhaustion80, rfc(at[8]))
	}
	for id, want := range map[string]map[string]any{
		e80: {"specversion": "1.0", "id": e80, "source": "tollgate", "type": "io.tollgate.quota.threshold", "subject": "initech",
			"time": rfc(at[8]), "datacontenttype": "application/json", "data": map[string]any{
				"customer": "initech", "plan": "free", "threshold": 80.0, "used": 8.0, "limit": 10.0,
				"period_start": rfc(dayStart), "period_end": rfc(dayEnd), "exhaustion": exhaustion80}},
		e100: {"specversion": "1.0", "id": e100, "source": "tollgate", "type": "io.tollgate.quota.threshold", "subject": "initech",
			"time": rfc(at[10]), "datacontenttype": "application/json", "data": map[string]any{
				"customer": "initech", "plan": "free", "threshold": 100.0, "used": 10.0, "limit": 10.0,
				"period_start": rfc(dayStart), "period_end": rfc(dayEnd), "exhaustion": rfc(at[10])}},
	} {
		checkDelivery(t, got[id], want)
	}
	if testing.Verbose() {
		t.Logf("the 80%% event as received:\n%s\n%s: %s", got[e80].Body, alerts.SignatureHeader, got[e80].Header.Get(alerts.SignatureHeader))
	}

	// 2. A grant of 10: 10 used of 20 is 50%. Ten more requests use 80%
	// and then 100% of the new limit: thresholds already sent this period.
	h.call("POST", "/v1/usage/initech/grant", `{"plan":"free","requests":10}`).want(t, "2 grant", 200, "")
	for i := 1; i <= 11; i++ {
		h.clock.Advance(time.Minute)
		want := 200
		if i > 10 {
			want = 429
		}
		if d := h.check(free); d.status != want {
			t.Fatalf("2: request %d after the grant: got %d, want %d", i, d.status, want)
		}
	}

	// 3. Another customer's 80% event, sent after those requests: the
	// events of a process go to the outbox in the order they were seen,
	// so once it has come and the outbox is empty, an event of step 2
	// would have come too.
	a := h.call("POST", "/v1/keys", `{"id":"marker-rt","customer":"marker","plans":["free"]}`).want(t, "3 key", 201, "")
	marker, _ := a.json["value"].(string)
	if n := h.checks(marker, 8); n != 8 {
		t.Fatalf("3: got %d allowed, want 8", n)
	}
	eMarker := alerts.EventID(alerts.TypeThreshold, "marker", "free", dayStart, 80)
	hooktest.WaitFor(t, "the marker event", func() bool { return r.Accepted()[eMarker] == 1 })
	hooktest.WaitFor(t, "an empty outbox", func() bool { return h.metric("tollgate_events_pending") == 0 })
	if got := r.Deliveries(); len(got) != 3 || got[2].ID != eMarker { // the marker came after the two
		t.Errorf("3: got deliveries of %v, want %s, %s and the marker %s: nothing from the requests after the grant", ids(got), e80, e100, eMarker)
	}
	for series, want := range map[string]float64{
		`tollgate_events_sent_total{sink="hook"}`:   3,
		`tollgate_events_failed_total{sink="hook"}`: 0,
		`tollgate_events_sent_total{sink="ops"}`:    0,
		`tollgate_events_enqueue_dropped_total`:     0,
		`tollgate_events_pending`:                   0,
	} {
		if got := h.metric(series); got != want {
			t.Errorf("3: %s: got %v, want %v", series, got, want)
		}
	}
}

// checkDelivery checks a delivery's headers, its signature (computed here,
// with the secret as the receiver knows it) and its body, a CloudEvent
// decoded as JSON, against want.
func checkDelivery(t *testing.T, d hooktest.Delivery, want map[string]any) {
	t.Helper()
	if ct := d.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
		t.Errorf("event %s: Content-Type %q, want application/cloudevents+json", d.ID, ct)
	}
	m := hmac.New(sha256.New, []byte(hookSecret))
	m.Write(d.Body)
	if got, want := d.Header.Get("X-Tollgate-Signature"), "sha256="+hex.EncodeToString(m.Sum(nil)); got != want {
		t.Errorf("event %s: X-Tollgate-Signature %q, want %q", d.ID, got, want)
	}
	var got map[string]any
	if err := json.Unmarshal(d.Body, &got); err != nil {
		t.Fatalf("event %s: body %s: %v", d.ID, d.Body, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event %s:\n got %s\nwant %s", d.ID, d.Body, jsonOf(t, want))
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
