package server

import (
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/policy"
)

// Reasons the decision metrics use beyond policy's.
const (
	// reasonNone labels allowed requests.
	reasonNone = "none"
	// reasonStoreError labels requests allowed because the store could
	// not be reached (fail open).
	reasonStoreError = "store:error"
)

// maxLabelSets bounds the cached label sets of each vector. Every label
// value comes from the policy (api, stage, plan, WAF rule names) or a fixed
// list (outcome, reason), so the sets are few; the bound only guards
// against a long run of reloads that keep renaming things.
const maxLabelSets = 4096

// metrics holds the server's Prometheus collectors, on a registry of its
// own. No label holds a customer, a key id or a key: their number is not
// bounded (usage per customer is the admin API's /v1/usage).
type metrics struct {
	reg *prometheus.Registry

	decisions *labelCache[decisionLabels]
	latency   prometheus.Histogram
	quota     *labelCache[string] // by plan
	wafCount  *labelCache[string] // by rule
	shadow    *labelCache[shadowLabels]
	util      *utilization

	storeErrors *prometheus.CounterVec
	flushes     *prometheus.CounterVec
	flushTime   prometheus.Histogram
	flushed     prometheus.Counter
	lastFlush   prometheus.Gauge
	inFlight    prometheus.Gauge
	storeWait   prometheus.Histogram
	storeTrip   prometheus.Histogram
	local       prometheus.Counter
	down        prometheus.Gauge // Redis Cluster primaries not answering
	reloads     *prometheus.CounterVec
	admin       *prometheus.CounterVec
}

// decisionLabels is one label set of tollgate_decisions_total.
type decisionLabels struct {
	verdict          policy.Verdict
	reason           string
	api, stage, plan string
}

// shadowLabels is one label set of tollgate_shadow_denials_total.
type shadowLabels struct{ reason, api, stage, plan string }

// newShadowDenials registers tollgate_shadow_denials_total on reg.
func newShadowDenials(reg prometheus.Registerer) *labelCache[shadowLabels] {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_shadow_denials_total",
		Help: "Allowed requests that a limit in shadow mode would have denied, by that limit's reason (such as throttle:plan, quota or waf:<rule>), api, stage and plan.",
	}, []string{"reason", "api", "stage", "plan"})
	reg.MustRegister(vec)
	return newLabelCache(vec, func(l shadowLabels) []string { return []string{l.reason, l.api, l.stage, l.plan} })
}

// newMetrics registers the collectors. degraded, reloadOK and loadedAt are
// read at scrape time, and now, the server's clock, to compute the
// utilization.
func newMetrics(degraded, reloadOK func() bool, loadedAt, now func() time.Time) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), util: newUtilization(now)}
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_decisions_total",
		Help: "Decisions made, by outcome (allow, deny), reason (none, store:error or the denial's reason, such as throttle:plan), api, stage and plan.",
	}, []string{"outcome", "reason", "api", "stage", "plan"})
	m.decisions = newLabelCache(decisions, func(l decisionLabels) []string {
		return []string{l.verdict.String(), l.reason, l.api, l.stage, l.plan}
	})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tollgate_decision_duration_seconds",
		Help:    "Time taken to decide a request, store round trip included.",
		Buckets: prometheus.ExponentialBuckets(5e-6, 2, 18), // 5µs to 655ms: past the Redis budget
	})
	quota := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_quota_requests_total",
		Help: "Requests counted against a usage plan's quota, by plan.",
	}, []string{"plan"})
	m.quota = newLabelCache(quota, func(plan string) []string { return []string{plan} })
	waf := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_waf_counted_total",
		Help: "Requests a WAF rule with action count matched (or whose rate it found exceeded), by rule.",
	}, []string{"rule"})
	m.wafCount = newLabelCache(waf, func(rule string) []string { return []string{rule} })
	m.shadow = newShadowDenials(m.reg)
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_store_errors_total",
		Help: "Store calls that failed, by operation (decide, admin, ready, flush: a file store's write of counters, release: of a concurrency slot).",
	}, []string{"op"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_policy_reloads_total",
		Help: "Policy reloads, by result (success, failure).",
	}, []string{"result"})
	m.admin = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_admin_requests_total",
		Help: "Admin API requests, by route pattern and status code.",
	}, []string{"route", "code"})
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	for _, op := range []string{"decide", "admin", "ready", "flush", "release"} {
		m.storeErrors.WithLabelValues(op)
	}
	m.flushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_store_flushes_total",
		Help: "Flushes of the file store (every --flush-interval, writing the counters that changed), by result (ok, error).",
	}, []string{"result"})
	m.flushes.WithLabelValues("ok")
	m.flushes.WithLabelValues("error")
	m.flushTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tollgate_store_flush_duration_seconds",
		Help:    "How long a flush of the file store that wrote counters took.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8), // 0.5ms to 8s
	})
	m.flushed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_store_flushed_counters_total",
		Help: "Quota and usage counters written to disk by the file store.",
	})
	m.lastFlush = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_store_last_flush_timestamp_seconds",
		Help: "When the file store's last successful flush began, in Unix seconds: every count before it is on disk.",
	})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_concurrency_slots_held",
		Help: "Concurrency slots this process holds for ext_proc requests in flight.",
	})
	// A decision's budget is spent waiting for its call (Redis: calls are
	// shared) and on the call's round trip.
	m.storeWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tollgate_store_wait_seconds",
		Help:    "Time a decision waited for its Redis call to be sent (0 when it was sent at once).",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 15), // 25µs to 410ms
	})
	m.storeTrip = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tollgate_store_round_trip_seconds",
		Help:    "Round trip of the Redis call that carried a decision, from sent to answered.",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 15),
	})
	m.local = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_store_local_decisions_total",
		Help: "Decisions made on this replica's own state with its share of each limit, because Redis could not answer in time (--on-store-error local).",
	})
	m.down = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_store_primaries_down",
		Help: "Redis Cluster primaries whose last calls failed (their customers are decided locally, one decision every 50ms trying them) until one answers.",
	})
	m.reg.MustRegister(decisions, m.latency, m.util, m.storeWait, m.storeTrip, m.local, m.down, quota, waf, m.storeErrors, m.flushes, m.flushTime, m.flushed, m.lastFlush, m.inFlight, m.reloads, m.admin,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_store_degraded",
			Help: "1 while the store cannot be reached (Redis: the circuit is open, decisions follow --on-store-error), else 0.",
		}, func() float64 { return b2f(degraded()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_policy_last_reload_successful",
			Help: "1 when the last policy load succeeded, 0 when it failed (the previous policy is still served).",
		}, func() float64 { return b2f(reloadOK()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_policy_loaded_timestamp_seconds",
			Help: "When the policy being served was loaded, in Unix seconds.",
		}, func() float64 { return float64(loadedAt().UnixNano()) / 1e9 }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// decision records one decision that took took; storeErr says the store
// failed and the request was allowed without it.
func (m *metrics) decision(d *policy.Decision, storeErr bool, took time.Duration) {
	l := decisionLabels{verdict: d.Verdict, reason: string(d.Reason), api: d.API, stage: d.Stage, plan: d.Plan}
	switch {
	case storeErr:
		l.reason = reasonStoreError
	case l.reason == "":
		l.reason = reasonNone
	}
	m.decisions.get(l).Inc()
	m.latency.Observe(took.Seconds())
	if d.Verdict == policy.Allow && d.Plan != "" {
		for _, lim := range d.AppliedLimits() {
			if lim.Tier == policy.TierQuota {
				m.quota.get(d.Plan).Inc()
				break
			}
		}
	}
	if d.Counted != "" {
		m.wafCount.get(string(d.Counted[len("waf:"):])).Inc()
	}
	for rest := d.Shadow; rest != ""; {
		var reason string
		reason, rest, _ = strings.Cut(rest, ",")
		m.shadow.get(shadowLabels{reason: reason, api: d.API, stage: d.Stage, plan: d.Plan}).Inc()
	}
}

// storeCall records a decision's wait for its Redis call and the call's
// round trip (0: it failed).
func (m *metrics) storeCall(wait, roundTrip time.Duration) {
	m.storeWait.Observe(wait.Seconds())
	if roundTrip > 0 {
		m.storeTrip.Observe(roundTrip.Seconds())
	}
}

// replicas exports the live replicas' count that a store shared by
// replicas sees.
func (m *metrics) replicas(count func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_replicas",
		Help: "Live replicas sharing the Redis store, as last seen (their heartbeats); during an outage each takes this share of every limit.",
	}, func() float64 { return float64(count()) }))
}

// wafCounters exports the WAF rate counters that the store holds in memory
// and those it dropped to stay within --waf-counters, read at scrape time.
func (m *metrics) wafCounters(read func() (held int, dropped uint64)) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_waf_counters",
			Help: "WAF rate counters held in this process's memory (embedded stores; with Redis, those of local decisions), at most --waf-counters.",
		}, func() float64 { held, _ := read(); return float64(held) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_waf_counters_dropped_total",
			Help: "WAF rate counters dropped before their windows passed, or not kept, to stay within --waf-counters: the ones furthest below their limit, never a blocking one.",
		}, func() float64 { _, dropped := read(); return float64(dropped) }),
	)
}

// flush records one write of a file store's counters: n written, or
// failed with err.
func (m *metrics) flush(n int, took time.Duration, err error) {
	if err != nil {
		m.flushes.WithLabelValues("error").Inc()
		return
	}
	m.flushes.WithLabelValues("ok").Inc()
	m.lastFlush.Set(float64(time.Now().Add(-took).UnixNano()) / 1e9)
	if n > 0 {
		m.flushTime.Observe(took.Seconds())
		m.flushed.Add(float64(n))
	}
}

// handler serves the registry.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// adminRequest counts one admin API answer.
func (m *metrics) adminRequest(route string, code int) {
	m.admin.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

// labelCache finds the counter of a label set without the vector's hashing
// and locking: the counters already made are in a map that is replaced, not
// changed, when one is added, so a lookup is one atomic load and one map
// read.
type labelCache[K comparable] struct {
	vec    *prometheus.CounterVec
	values func(K) []string
	m      atomic.Pointer[map[K]prometheus.Counter]
	mu     sync.Mutex // serializes additions
}

func newLabelCache[K comparable](vec *prometheus.CounterVec, values func(K) []string) *labelCache[K] {
	c := &labelCache[K]{vec: vec, values: values}
	c.m.Store(&map[K]prometheus.Counter{})
	return c
}

func (c *labelCache[K]) get(k K) prometheus.Counter {
	if ctr, ok := (*c.m.Load())[k]; ok {
		return ctr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.m.Load()
	if ctr, ok := old[k]; ok {
		return ctr
	}
	ctr := c.vec.WithLabelValues(c.values(k)...)
	if len(old) < maxLabelSets {
		m := maps.Clone(old)
		m[k] = ctr
		c.m.Store(&m)
	}
	return ctr
}
