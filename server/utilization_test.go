package server

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// utilPolicy has an account, a stage and three route buckets: /items at
// rate 20, /other at 20 with a burst the stage's cannot cover after
// /items', /slow at 1 with burst 3.
const utilPolicy = `version: 1
account: {throttle: {rate: 100, burst: 100}}
apis:
  shop:
    hosts: ["shop.example.com"]
    stages:
      prod:
        throttle: {rate: 40, burst: 25}
        routes:
          - match: "GET /items"
            throttle: {rate: 20, burst: 20}
          - match: "GET /other"
            throttle: {rate: 20, burst: 20}
          - match: "GET /slow"
            throttle: {rate: 1, burst: 3}
default_stage: shop/prod
`

// checkRoute sends one anonymous request for method and path over gRPC and
// returns its status.
func (h *harness) checkRoute(method, path string) int {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "shop.example.com"}},
	}})
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != 0 {
		return int(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	return 200
}

// utilSeries is the exposed series of a bucket's utilization.
func utilSeries(tier, stage, route string) string {
	api := ""
	if stage != "" {
		api = "shop"
	}
	return fmt.Sprintf(`tollgate_limit_utilization_ratio{api=%q,route=%q,stage=%q,tier=%q}`, api, route, stage, tier)
}

// wantUtil checks the utilization of each series in want, as /metrics
// shows them at the harness's clock (-1: no such series).
func (h *harness) wantUtil(step string, want map[string]float64) {
	h.t.Helper()
	for series, w := range want {
		got := h.metric(series)
		if math.Abs(got-w) > 1e-9 {
			h.t.Errorf("%s: %s: got %v, want %v", step, series, got, w)
		}
	}
}

// TestUtilization follows the utilization of the account, stage and route
// buckets through a minute of traffic at half a route's rate, the window
// sliding past it, requests that buckets denied, and a reload.
func TestUtilization(t *testing.T) {
	h := serve(t, utilPolicy, nil)
	var (
		account = utilSeries("account", "", "")
		stage   = utilSeries("stage", "prod", "")
		items   = utilSeries("route", "prod", "GET /items")
		other   = utilSeries("route", "prod", "GET /other")
		slow    = utilSeries("route", "prod", "GET /slow")
	)
	h.wantUtil("before any request", map[string]float64{account: 0, stage: 0, items: 0, other: 0, slow: 0})

	// 600 requests over the minute from t0, 10 a second: half of
	// /items' rate, a quarter of the stage's, a tenth of the account's.
	for i := range 600 {
		h.clock.Set(t0.Add(time.Duration(i) * 100 * time.Millisecond))
		if st := h.checkRoute("GET", "/items"); st != 200 {
			t.Fatalf("request %d: got status %d, want 200", i, st)
		}
	}
	h.clock.Set(t0.Add(59*time.Second + 999*time.Millisecond))
	h.wantUtil("in the minute's last second (not whole yet)", map[string]float64{account: 590.0 / 60 / 100, stage: 590.0 / 60 / 40, items: 590.0 / 60 / 20, other: 0})
	h.clock.Set(t0.Add(60 * time.Second))
	h.wantUtil("after the minute", map[string]float64{account: 0.1, stage: 0.25, items: 0.5, other: 0, slow: 0})
	h.clock.Set(t0.Add(90*time.Second + 500*time.Millisecond))
	h.wantUtil("half a minute later", map[string]float64{account: 0.05, stage: 0.125, items: 0.25})
	h.clock.Set(t0.Add(120 * time.Second))
	h.wantUtil("a minute after the last request", map[string]float64{account: 0, stage: 0, items: 0})
	h.clock.Set(t0.Add(180 * time.Second))
	h.wantUtil("two minutes after the minute", map[string]float64{account: 0, stage: 0, items: 0})

	// Denied requests take no token and count nowhere: /slow admits its
	// burst of 3 of 10; then /items takes 20 of the stage's 22 left,
	// and of 20 for /other, which its route bucket would admit, the
	// stage admits 2.
	t1 := t0.Add(300 * time.Second)
	h.clock.Set(t1)
	tally := map[string]int{}
	for _, c := range []struct {
		path string
		n    int
	}{{"/slow", 10}, {"/items", 20}, {"/other", 20}} {
		for range c.n {
			tally[fmt.Sprintf("%s %d", c.path, h.checkRoute("GET", c.path))]++
		}
	}
	if want := map[string]int{"/slow 200": 3, "/slow 429": 7, "/items 200": 20, "/other 200": 2, "/other 429": 18}; fmt.Sprint(tally) != fmt.Sprint(want) {
		t.Fatalf("got answers %v, want %v", tally, want)
	}
	h.clock.Set(t1.Add(time.Second))
	h.wantUtil("after the denials", map[string]float64{
		account: 25.0 / 60 / 100, stage: 25.0 / 60 / 40, items: 20.0 / 60 / 20, other: 2.0 / 60 / 20, slow: 3.0 / 60 / 1})

	// A reload that doubles /items' rate halves its utilization (the
	// window goes on); /slow's bucket is gone, and its series with it;
	// a new route's appears at 0.
	edited := strings.Replace(utilPolicy, "throttle: {rate: 20, burst: 20}", "throttle: {rate: 40, burst: 20}", 1)
	edited = strings.Replace(edited, `          - match: "GET /slow"
            throttle: {rate: 1, burst: 3}
`, `          - match: "GET /new"
            throttle: {rate: 5, burst: 5}
`, 1)
	if err := os.WriteFile(h.policy, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Reload(); err != nil {
		t.Fatal(err)
	}
	h.wantUtil("after the reload", map[string]float64{
		account: 25.0 / 60 / 100, stage: 25.0 / 60 / 40, items: 20.0 / 60 / 40, other: 2.0 / 60 / 20, slow: -1,
		utilSeries("route", "prod", "GET /new"): 0})
	// Counting goes on in the new policy's buckets.
	if st := h.checkRoute("GET", "/items"); st != 200 {
		t.Fatalf("after the reload: got status %d, want 200", st)
	}
	h.clock.Set(t1.Add(2 * time.Second))
	h.wantUtil("a request after the reload", map[string]float64{items: 21.0 / 60 / 40, account: 26.0 / 60 / 100})
}

// TestUtilizationWindowClockJumps: a slot reused after its second has
// passed out of the window starts anew, whatever the gap; the clock going
// back within a minute counts in the seconds it names.
func TestUtilizationWindowClockJumps(t *testing.T) {
	var w window
	sec := uint32(t0.Unix())
	for i, c := range []struct {
		add       uint32 // second of one request, relative to t0
		sumAt     uint32
		wantTotal uint64
	}{
		{0, 1, 1},
		{0, 1, 2},
		{64, 65, 1},   // second 0's slot, a window later: starts anew
		{64, 60, 0},   // second 0's counts are gone
		{10, 65, 3},   // back in time, within the window at 65
		{128, 129, 1}, // second 0's slot again; 10 is out of the window
		{1000, 1001, 1},
		{1000, 1061, 0}, // out of the window
	} {
		w.add(sec + c.add)
		if got := w.sum(sec + c.sumAt); got != c.wantTotal {
			t.Errorf("step %d: got %d requests in the window before %d, want %d", i, got, c.sumAt, c.wantTotal)
		}
	}
}

// TestUtilizationWindowConcurrent: requests counted at once from many
// goroutines, across second boundaries, are all in the sum.
func TestUtilizationWindowConcurrent(t *testing.T) {
	var w window
	sec := uint32(t0.Unix())
	const goroutines, each = 8, 1000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for i := range each {
				w.add(sec + uint32(i*4/each)) // seconds 0 to 3, in order
			}
		})
	}
	wg.Wait()
	if got := w.sum(sec + 4); got != goroutines*each {
		t.Fatalf("got %d requests, want %d", got, goroutines*each)
	}
}
