package redis

import (
	"context"
	"time"
)

// decisionCall returns the context of a decision's call: the budget, unless
// the circuit is open.
func (s *Store) decisionCall() (context.Context, context.CancelFunc, error) {
	if s.open.Load() {
		return nil, nil, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	return ctx, cancel, nil
}

// succeeded and failed count a call's outcome for the circuit breaker.
func (s *Store) succeeded() {
	if s.fails.Load() != 0 {
		s.fails.Store(0)
	}
}

func (s *Store) failed() {
	if s.fails.Add(1) < breakAfter || !s.open.CompareAndSwap(false, true) {
		return
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if !s.stopped {
		s.probing.Go(s.probe)
	}
}

// probe pings Redis every probeEvery until it answers, then closes the
// circuit; it stops when the Store closes.
func (s *Store) probe() {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(s.opts.Timeout, probeEvery))
		// Connections opened before an outage fail once each when
		// Redis comes back; a few pings in a row get past them.
		err := s.c.Ping(ctx).Err()
		for i := 0; err != nil && ctx.Err() == nil && i < probePings; i++ {
			err = s.c.Ping(ctx).Err()
		}
		if err == nil {
			// A restarted Redis has lost the scripts; Run reloads them
			// on NOSCRIPT, but loading them here keeps the first
			// decisions within budget.
			err = s.loadScripts(ctx)
		}
		cancel()
		if err == nil {
			s.fails.Store(0)
			s.open.Store(false)
			return
		}
	}
}
