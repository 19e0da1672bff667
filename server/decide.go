package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// Decide evaluates one request against the current policy at the current
// time. It is the one place that reads the clock. With a Redis store it sets
// r.Deadline: the decision's budget.
func (s *Server) Decide(ctx context.Context, r *policy.Request) policy.Decision {
	if s.cfg.Noop {
		return policy.Decision{Verdict: policy.Allow, Status: 200}
	}
	now := s.now()
	start := now
	if !s.realClock {
		start = time.Now()
	}
	p := s.policy.Load()
	if s.budget > 0 {
		r.Deadline = start.Add(s.budget)
	}
	d, err := p.Evaluate(now, r, s.store, s.store)
	if err != nil {
		s.storeFailed("decide")
		s.storeDown(ctx, &d, err)
	}
	if d.Local {
		s.metrics.local.Inc()
	}
	if d.Slot.Limit != "" {
		s.metrics.inFlight.Inc()
	}
	s.observe(&d, now, p)
	// Allowed without the store: counted as reason store:error.
	s.metrics.decision(&d, err != nil && d.Verdict == policy.Allow, time.Since(start))
	s.metrics.util.admitted(p, &d, now)
	if d.Verdict == policy.Deny && s.log.Enabled(ctx, slog.LevelDebug) {
		s.logDenial(ctx, r, &d)
	}
	if s.dlog != nil {
		s.logDecision(r, &d, now)
	}
	return d
}

// clip shortens s, which a client sent, to at most n bytes for a log line.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// logDenial writes the debug line of a denial: the answer, who asked and
// for what (the method and the path as matched, never a query string or a
// key value), and on request:invalid what could not be read.
func (s *Server) logDenial(ctx context.Context, r *policy.Request, d *policy.Decision) {
	attrs := []slog.Attr{
		slog.Int("status", d.Status), slog.String("reason", string(d.Reason)),
		slog.String("method", clip(r.Method, 16)), slog.String("path", clip(d.Path, 256)),
	}
	if d.ClientIP.IsValid() {
		attrs = append(attrs, slog.String("ip", d.ClientIP.String()))
	}
	if d.Invalid != "" {
		attrs = append(attrs, slog.String("invalid", d.Invalid))
	}
	attrs = append(attrs, slog.String("api", d.API), slog.String("stage", d.Stage), slog.String("route", d.Route),
		slog.String("key_id", d.KeyID), slog.String("customer", d.Customer))
	s.log.LogAttrs(ctx, slog.LevelDebug, "denied", attrs...)
}

// storeDown makes d the answer for a request whose decision failed with
// err, d being the decision made without the store; it is the one place
// that decides a store failure. A key that could not be looked up is 503
// whatever the mode (never let through unchecked); a denial found without
// the store (a bad key) stands; the rest is allowed without its limits with
// --on-store-error allow, else 503 (with local, the Redis store decides
// locally and fails only when it cannot: while it closes).
func (s *Server) storeDown(ctx context.Context, d *policy.Decision, err error) {
	outcome := "allowed without limits"
	switch {
	case errors.Is(err, policy.ErrKeys):
		outcome = "denied (503): the key could not be checked" // so Evaluate decided
	case d.Verdict == policy.Deny:
		outcome = "denied: decided without the store"
	case s.cfg.OnStoreError != OnErrorAllow:
		d.DenyUnavailable()
		outcome = "denied (503): --on-store-error " + string(s.cfg.OnStoreError)
	}
	// The store's circuit logs an outage's start and end; one line per
	// request would flood the log.
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("store unavailable; request "+outcome, "err", err, "api", d.API, "stage", d.Stage, "route", d.Route)
	}
}

// storeFailed counts a store error of op ("decide", "admin", "ready").
func (s *Server) storeFailed(op string) {
	s.metrics.storeErrors.WithLabelValues(op).Inc()
}
