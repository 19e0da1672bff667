package alerts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Defaults of DeliverOptions.
const (
	// DefaultBackoff is the wait after a first failed delivery; it doubles
	// with each failure up to DefaultMaxBackoff, each wait drawn between
	// its half and itself, so that the deliveries a receiver's outage
	// failed together do not come back together.
	DefaultBackoff    = 10 * time.Second
	DefaultMaxBackoff = time.Hour
	// DefaultGiveUp is how long after an event was seen its delivery is
	// given up (SPEC §9: retries for up to 24 h).
	DefaultGiveUp = 24 * time.Hour
	// DefaultPoll is how often the outbox is asked for due events, besides
	// at once when this process adds one: retries, and events that other
	// replicas added, wait at most this long.
	DefaultPoll = time.Second
	// DefaultLease is how long a claimed event is hidden from other claims:
	// longer than a delivery may take (a sink's timeout is cut to half of
	// it), and the longest a replica that dies mid-delivery delays it.
	DefaultLease = time.Minute
	// DefaultSinkTimeout bounds a delivery to a sink without a timeout.
	DefaultSinkTimeout = 5 * time.Second
	// DefaultQueue is the number of events Enqueue holds for the outbox.
	DefaultQueue = 1024
)

const (
	// claimBatch is the most events claimed, and delivered together, at
	// once.
	claimBatch = 16
	// storeTimeout bounds a call to the outbox.
	storeTimeout = 5 * time.Second
	// drainTimeout bounds the writes of the events still queued when Run
	// stops.
	drainTimeout = 2 * time.Second
	// maxReply is how much of a receiver's reply is read (and dropped), so
	// that its connection can be used again.
	maxReply = 64 << 10
)

// Sink is a webhook that events are delivered to (notifications.sinks).
type Sink struct {
	Name string
	URL  string
	// Secret, when set, signs each delivery (SignatureHeader).
	Secret []byte
	// Timeout bounds a delivery (DefaultSinkTimeout when 0).
	Timeout time.Duration
}

// DeliverOptions configure a Deliverer. Outbox and Sinks are required.
type DeliverOptions struct {
	Outbox Outbox
	// Sinks returns the sink of a name from the policy in force: events
	// are sent where the policy says when they are sent. An event whose
	// sink the policy does not name fails its attempt and is retried
	// until DefaultGiveUp: a newer policy may name it (a replica of a
	// rolling deploy made it), and one that removed the sink for good
	// lets it lapse. It is called from several goroutines at once.
	Sinks func(name string) (Sink, bool)
	// Client sends the deliveries (default: one that follows no
	// redirects: a 3xx is a failure, and a signed body goes only where
	// the policy says).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Backoff, MaxBackoff, GiveUp, Poll, Lease and Queue default to the
	// constants of their names.
	Backoff, MaxBackoff, GiveUp, Poll, Lease time.Duration
	Queue                                    int
	// Logger receives failed deliveries and outbox errors (default: none).
	// Lines name the sink and the event, never the URL, which may hold a
	// token.
	Logger *slog.Logger
}

// Deliverer delivers the events of an outbox to their sinks, at least
// once: an event is added by Enqueue, claimed by one Deliverer of those
// sharing the outbox, POSTed as a CloudEvent, and then done (a 2xx) or
// retried after a backoff (anything else, or no answer within the sink's
// timeout) until DefaultGiveUp after it was seen. A receiver may get an
// event twice (a reply lost, a replica that died before it marked the event
// done), always with the same id.
type Deliverer struct {
	o     DeliverOptions
	queue chan Event
	// wake tells the claims that this process added an event.
	wake chan struct{}
	m    *deliverMetrics

	// claimFailing keeps an outbox that fails on every poll from
	// logging on every poll; only the claim loop uses it.
	claimFailing bool
}

// NewDeliverer returns a Deliverer; Run starts it.
func NewDeliverer(o DeliverOptions) *Deliverer {
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&o.Backoff, DefaultBackoff)
	setDefault(&o.MaxBackoff, DefaultMaxBackoff)
	setDefault(&o.GiveUp, DefaultGiveUp)
	setDefault(&o.Poll, DefaultPoll)
	setDefault(&o.Lease, DefaultLease)
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	d := &Deliverer{o: o, queue: make(chan Event, o.Queue), wake: make(chan struct{}, 1)}
	d.m = newDeliverMetrics(d)
	return d
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Enqueue hands e to the outbox's writer without waiting, and reports
// false when it could not because the queue was full (counted in
// tollgate_events_enqueue_dropped_total). The decision path calls it. An
// event without sinks has nowhere to go: it is not kept.
func (d *Deliverer) Enqueue(e Event) bool {
	if len(e.Sinks) == 0 {
		return true
	}
	select {
	case d.queue <- e:
		return true
	default:
		d.m.enqueueDropped.Inc()
		return false
	}
}

// Run adds the queued events to the outbox and delivers the due ones until
// ctx is done. Deliveries under way then stop unanswered: their lease
// brings them back, to another replica or after a restart; the events
// still queued are added to the outbox (for up to 2s). Call it once.
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { d.write(ctx) })
	t := time.NewTicker(d.o.Poll)
	defer t.Stop()
	for {
		for ctx.Err() == nil && d.claim(ctx) {
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
		case <-d.wake:
		}
	}
}

// write adds the queued events to the outbox, one at a time, until ctx is
// done, and then what is still queued.
func (d *Deliverer) write(ctx context.Context) {
	for {
		select {
		case e := <-d.queue:
			d.add(ctx, e)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
			defer cancel()
			for {
				select {
				case e := <-d.queue:
					if err := d.addOnce(dctx, e); err != nil {
						d.o.Logger.Error("alerts: event lost at shutdown: the outbox failed", "event", e.ID, "error", err)
					}
				default:
					return
				}
			}
		}
	}
}

// add adds e to the outbox, trying again every poll while the outbox fails
// (the events queued behind it wait, as they would fail too).
func (d *Deliverer) add(ctx context.Context, e Event) {
	for {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		err := d.addOnce(actx, e)
		cancel()
		if err == nil {
			return
		}
		d.o.Logger.Warn("alerts: add event to the outbox", "event", e.ID, "error", err)
		select {
		case <-ctx.Done():
			d.o.Logger.Error("alerts: event lost at shutdown: the outbox failed", "event", e.ID, "error", err)
			return
		case <-time.After(d.o.Poll):
		}
	}
}

// addOnce adds e to the outbox, kept as long as its period and the
// retries may last (an id is not added twice within that time), and wakes
// the claims when it is new.
func (d *Deliverer) addOnce(ctx context.Context, e Event) error {
	keep := max(e.Data.PeriodEnd.Sub(e.Time), 0) + d.o.GiveUp
	added, err := d.o.Outbox.Add(ctx, e, keep)
	if added {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	return err
}

// claim claims the due events and delivers them, together, and reports
// whether there may be more due.
func (d *Deliverer) claim(ctx context.Context) bool {
	// A stop does not wait for a claim in flight: an outbox that does not
	// answer (Redis paused: go-redis waits out a read's deadline, not a
	// cancel) would hold it up to storeTimeout. What that claim took comes
	// back after its lease.
	type claimed struct {
		ps  []Pending
		err error
	}
	got := make(chan claimed, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		ps, err := d.o.Outbox.Claim(cctx, d.o.Now(), claimBatch, d.o.Lease)
		got <- claimed{ps, err}
	}()
	var c claimed
	select {
	case c = <-got:
	case <-ctx.Done():
		return false
	}
	ps, err := c.ps, c.err
	switch {
	case err != nil && !d.claimFailing && ctx.Err() == nil:
		d.o.Logger.Error("alerts: claim events from the outbox", "error", err)
		d.claimFailing = true
	case err == nil && d.claimFailing:
		d.o.Logger.Info("alerts: the outbox answers claims again")
		d.claimFailing = false
	}
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { d.deliver(ctx, p) })
	}
	wg.Wait()
	return len(ps) == claimBatch
}

// errNoSink is the failure of an event whose sink the policy in force
// does not name.
var errNoSink = errors.New("the policy names no such sink")

// deliver sends p to its sink and records the outcome in the outbox.
func (d *Deliverer) deliver(ctx context.Context, p Pending) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	log := d.o.Logger.With("event", p.Event.ID, "sink", p.Sink)
	// A sink this process's policy does not name may be one a newer
	// policy does (a replica of a rolling deploy added it, or a reload
	// here is half done): a failed attempt, retried, not a loss.
	var err error
	if s, ok := d.o.Sinks(p.Sink); ok {
		err = d.post(ctx, s, p.Event)
	} else {
		err = errNoSink
	}
	if err == nil {
		d.m.sent.WithLabelValues(p.Sink).Inc()
		d.done(sctx, p, log)
		return
	}
	if ctx.Err() != nil {
		return // stopping, not the sink's failure: the lease brings it back
	}
	d.m.failed.WithLabelValues(p.Sink).Inc()
	now := d.o.Now()
	end := p.Created.Add(d.o.GiveUp)
	if !now.Before(end) {
		d.m.dropped.WithLabelValues(p.Sink).Inc()
		log.Error("alerts: event dropped: delivery failed for too long", "attempts", p.Attempts+1, "error", err)
		d.done(sctx, p, log)
		return
	}
	next := now.Add(backoff(p.Attempts+1, d.o.Backoff, d.o.MaxBackoff, rand.Float64()))
	if next.After(end) {
		next = end // one last attempt when the time is up
	}
	log.Warn("alerts: delivery failed", "attempts", p.Attempts+1, "next", next, "error", err)
	if err := d.o.Outbox.Retry(sctx, p.Event.ID, p.Sink, next); err != nil {
		log.Error("alerts: outbox retry (the lease brings the event back)", "error", err)
	}
}

func (d *Deliverer) done(ctx context.Context, p Pending, log *slog.Logger) {
	if err := d.o.Outbox.Done(ctx, p.Event.ID, p.Sink); err != nil {
		log.Error("alerts: outbox done (the event may be delivered again)", "error", err)
	}
}

// post sends e to s as a CloudEvent; nil when s answered 2xx.
func (d *Deliverer) post(ctx context.Context, s Sink, e Event) error {
	body, err := CloudEvent(e)
	if err != nil {
		return err
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultSinkTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, min(timeout, d.o.Lease/2))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("bad sink url") // never the URL: it may hold a token
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", "tollgate")
	if len(s.Secret) > 0 {
		req.Header.Set(SignatureHeader, Signature(s.Secret, body))
	}
	resp, err := d.o.Client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxReply))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
	return nil
}

// backoff returns the wait after the attempt-th failed delivery (1: the
// first): base doubled attempt-1 times, at most ceiling, scaled into its upper
// half by r in [0, 1).
func backoff(attempt int, base, ceiling time.Duration, r float64) time.Duration {
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + time.Duration(r*float64(d-d/2))
}
