package redis

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The circuit breaker opens on evidence that Redis is down, never on a few
// slow calls:
//   - a connection error (refused, reset, closed by Redis) opens it at once,
//     on one Redis (on a cluster it is one primary's: it counts as below);
//   - else it opens when, over the last breakWindow, at least breakMin calls
//     failed (no answer within their budget, a network error) and they
//     carried most of the decisions of the calls made.
//
// A call's budget counts from when it is sent, so time spent waiting in this
// process (a busy host, the queue for a shared call) never counts against
// Redis. An error reply (a key of the wrong type) is the data's fault, not
// Redis's: it counts for neither side.
//
// While the circuit is open, calls fail at once with ErrUnavailable and one
// goroutine pings Redis every probeEvery. When Redis answers, the scripts are
// loaded again (a restarted Redis lost them) and, with Options.Local, what was
// counted locally meanwhile is added to Redis (reconcile.go); then the circuit
// closes.
const (
	breakWindow = time.Second
	breakSlots  = 10 // the window is kept in slots of breakWindow/breakSlots
	breakMin    = 5
	probeEvery  = 50 * time.Millisecond
	probePings  = minIdle + 1
)

// window counts the calls that succeeded and failed in the last breakWindow,
// each weighted by the decisions it carried, and the calls that failed, in
// slots that are reused as time goes by. Counts are atomic: a slot's reset
// may lose a count or two made at the same moment, which a majority vote
// does not mind.
//
// The majority is of decisions, not of calls: on a cluster the calls to a
// primary that refuses fail at once, one decision each, while those to the
// others carry the decisions that waited for them together; counted by
// calls, one primary down of three would be most of them under load.
type window struct {
	slots [breakSlots]struct {
		epoch       atomic.Int64 // the slot's index since the Unix epoch
		ok, failed  atomic.Int64 // decisions
		failedCalls atomic.Int64
	}
}

const slotLen = int64(breakWindow / breakSlots)

// add counts a call of n decisions at now and returns, in the window, the
// calls that failed and the decisions that failed and all of them.
func (w *window) add(now time.Time, ok bool, n int64) (failedCalls, failed, total int64) {
	e := now.UnixNano() / slotLen
	sl := &w.slots[e%breakSlots]
	if old := sl.epoch.Load(); old != e && sl.epoch.CompareAndSwap(old, e) {
		sl.ok.Store(0)
		sl.failed.Store(0)
		sl.failedCalls.Store(0)
	}
	if ok {
		sl.ok.Add(n)
		return 0, 0, 0 // a success never opens the circuit: no need to sum
	}
	sl.failed.Add(n)
	sl.failedCalls.Add(1)
	return w.counts(now)
}

// counts returns the failed calls, and the failed and all decisions, in the
// window that ends at now.
func (w *window) counts(now time.Time) (failedCalls, failed, total int64) {
	e := now.UnixNano() / slotLen
	for i := range w.slots {
		sl := &w.slots[i]
		if e-sl.epoch.Load() < breakSlots {
			f := sl.failed.Load()
			failedCalls += sl.failedCalls.Load()
			failed += f
			total += f + sl.ok.Load()
		}
	}
	return failedCalls, failed, total
}

// reset forgets every count.
func (w *window) reset() {
	for i := range w.slots {
		w.slots[i].epoch.Store(0)
		w.slots[i].ok.Store(0)
		w.slots[i].failed.Store(0)
		w.slots[i].failedCalls.Store(0)
	}
}

// isConnError reports whether err says the connection to Redis is gone or
// was refused: evidence enough that Redis is down.
func isConnError(err error) bool {
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// called counts the outcome of a call of n decisions for the circuit
// breaker: err nil, an error reply of the data's (not counted), a
// connection error (on one Redis the circuit opens) or another failure
// (counted in the window).
func (s *Store) called(err error, n int) {
	if err == nil {
		s.window.add(time.Now(), true, int64(n))
		if s.owed.Load() && s.owed.CompareAndSwap(true, false) {
			// Redis answers again after decisions made locally: their
			// counts go to it now, not at the next beat.
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
		return
	}
	if isDataError(err) {
		return
	}
	if isConnError(err) && !s.spread {
		s.trip(err)
		return
	}
	// On a cluster a refused connection is one primary's (a failover's
	// first seconds): it counts in the window like any failure, so that
	// the other primaries' customers are still decided on Redis; when
	// all are down, their calls fail at once, and it opens once their
	// decisions outnumber the last second's successes (about half a
	// second after a busy one).
	if calls, failed, total := s.window.add(time.Now(), false, int64(n)); calls >= breakMin && 2*failed > total {
		s.trip(err)
	}
}

// isDataError reports whether err is the data's fault, not Redis's health:
// an error reply (a key of the wrong type) that is not one of those that pass
// on their own, or a reply that does not fit.
func isDataError(err error) bool {
	var rerr goredis.Error
	return errors.As(err, &rerr) && !isTransient(rerr) || errors.Is(err, errBadReply)
}

// trip opens the circuit, unless it is open, and starts the prober. The
// change and its report are one step (probeMu), as when the circuit closes,
// so that the reports come in the order of the changes.
func (s *Store) trip(cause error) {
	if s.open.Load() {
		return
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if !s.open.CompareAndSwap(false, true) {
		return
	}
	if o := s.opts.Observer; o != nil {
		o.Circuit(true, cause)
	}
	if !s.stopped {
		s.probing.Go(s.probe)
	}
}

// callsStopped returns why no call is to be made now: the Store closed
// (errClosed), or the circuit is open (ErrUnavailable); nil otherwise.
func (s *Store) callsStopped() error {
	select {
	case <-s.done:
		return s.errClosed
	default:
	}
	if s.open.Load() {
		return ErrUnavailable
	}
	return nil
}

// probe pings Redis every probeEvery until it answers, reconciles, then
// closes the circuit; it stops when the Store closes.
func (s *Store) probe() {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if err := s.recover(); err != nil {
			continue
		}
		s.window.reset()
		s.probeMu.Lock()
		s.open.Store(false)
		if o := s.opts.Observer; o != nil {
			o.Circuit(false, nil)
		}
		s.probeMu.Unlock()
		return
	}
}

// recover makes one attempt to bring the store back: a ping, the scripts,
// and what was counted locally while Redis was away.
func (s *Store) recover() error {
	ctx, cancel := context.WithTimeout(context.Background(), max(s.opts.Timeout, probeEvery))
	defer cancel()
	// Connections opened before an outage fail once each when Redis comes
	// back; a few pings in a row get past them.
	err := s.c.Ping(ctx).Err()
	for i := 0; err != nil && ctx.Err() == nil && i < probePings; i++ {
		err = s.c.Ping(ctx).Err()
	}
	if err != nil {
		return err
	}
	// A restarted Redis has lost the scripts; a call reloads them on
	// NOSCRIPT, but loading them here keeps the first decisions within
	// budget.
	if err := s.loadScripts(ctx); err != nil {
		return err
	}
	if s.local != nil {
		// Before the circuit closes: decisions made on Redis from then on
		// must see what was taken locally.
		return s.reconcile(s.stop)
	}
	return nil
}
