package alerts

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statsTimeout bounds the outbox's Stats call of a scrape.
const statsTimeout = time.Second

// deliverMetrics are a Deliverer's Prometheus collectors. The sink label
// holds sink names from the policy: few.
type deliverMetrics struct {
	sent, failed, dropped *prometheus.CounterVec
	enqueueDropped        prometheus.Counter
	stats                 *outboxStats
}

func newDeliverMetrics(d *Deliverer) *deliverMetrics {
	return &deliverMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_events_sent_total",
			Help: "Quota events delivered (a 2xx answer), by sink.",
		}, []string{"sink"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_events_failed_total",
			Help: "Failed deliveries of quota events (not a 2xx, or no answer in time), each retried until the event is 24h old, by sink.",
		}, []string{"sink"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_events_dropped_total",
			Help: "Quota events given up: still failing 24h after they were seen (a sink the policy does not name fails each attempt), by sink.",
		}, []string{"sink"}),
		enqueueDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_events_enqueue_dropped_total",
			Help: "Quota events lost before the outbox because its writer's queue was full.",
		}),
		stats: &outboxStats{
			d: d,
			pending: prometheus.NewDesc("tollgate_events_pending",
				"Deliveries of quota events waiting in the outbox (one per event and sink); replicas sharing Redis all report the shared outbox.", nil, nil),
			oldest: prometheus.NewDesc("tollgate_events_oldest_pending_seconds",
				"Age of the oldest event waiting in the outbox (0 when none).", nil, nil),
		},
	}
}

// Collectors returns the Deliverer's Prometheus collectors, for the
// server's registry: the counters tollgate_events_sent_total,
// tollgate_events_failed_total and tollgate_events_dropped_total (by sink)
// and tollgate_events_enqueue_dropped_total, and the gauges
// tollgate_events_pending and tollgate_events_oldest_pending_seconds, read
// from the outbox at each scrape.
func (d *Deliverer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.m.sent, d.m.failed, d.m.dropped, d.m.enqueueDropped, d.m.stats}
}

// ShowSinks makes the counters of each named sink exist at 0, so that a
// dashboard and a rate() see a sink before its first event, as Prometheus
// advises for labels known in advance. The server calls it with the
// policy's sinks at each load; a sink a reload removed keeps its series
// (its counts happened).
func (d *Deliverer) ShowSinks(names []string) {
	for _, n := range names {
		d.m.sent.WithLabelValues(n)
		d.m.failed.WithLabelValues(n)
		d.m.dropped.WithLabelValues(n)
	}
}

// outboxStats collects the outbox's Stats. A scrape never waits on a store
// that hangs (Redis paused, exactly when an operator looks): it starts a
// Stats call, unless one is still running, and waits for it at most
// statsWait; what it reports is the last answer the outbox gave.
type outboxStats struct {
	d               *Deliverer
	pending, oldest *prometheus.Desc

	mu      sync.Mutex
	running chan struct{} // closed when the call in flight ends; nil: none
	ok      bool          // the last call answered
	n       int
	since   time.Time // the oldest pending event's instant (zero: none)
}

// statsWait is how long a scrape waits for the outbox's answer before it
// reports the last one.
const statsWait = 100 * time.Millisecond

// Describe implements prometheus.Collector.
func (c *outboxStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.oldest
}

// Collect implements prometheus.Collector. An outbox that has not answered
// yet, or whose last call failed, leaves both gauges out of the scrape
// rather than failing it: the store's own metrics tell of its trouble.
func (c *outboxStats) Collect(ch chan<- prometheus.Metric) {
	select {
	case <-c.refresh():
	case <-time.After(statsWait):
	}
	c.mu.Lock()
	ok, n, since := c.ok, c.n, c.since
	c.mu.Unlock()
	if !ok {
		return
	}
	age := 0.0
	if !since.IsZero() {
		age = max(c.d.o.Now().Sub(since).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
}

// refresh starts a Stats call, bounded by statsTimeout, unless one is in
// flight, and returns the channel closed when it ends.
func (c *outboxStats) refresh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running != nil {
		return c.running
	}
	done := make(chan struct{})
	c.running = done
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
		defer cancel()
		n, oldest, err := c.d.o.Outbox.Stats(ctx)
		c.mu.Lock()
		c.ok, c.n, c.since, c.running = err == nil, n, oldest, nil
		c.mu.Unlock()
		close(done)
	}()
	return done
}
