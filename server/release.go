package server

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// Releases that failed are tried again: every releaseRetryEvery, up to
// releaseAttempts times in all, at most releaseBacklog waiting. A slot whose
// release is given up on is freed by its lease running out (Redis).
const (
	releaseRetryEvery = 500 * time.Millisecond
	releaseAttempts   = 20
	releaseBacklog    = 4096
)

// slotRelease is one failed release waiting for another try.
type slotRelease struct {
	slot     policy.Key
	lease    string
	route    string
	attempts int
}

// Release gives back the concurrency slot d took (ext_proc, at the
// request's end). A release that fails is logged, counted and tried again a
// little later.
func (s *Server) Release(d *policy.Decision) {
	if d.Slot.Limit == "" {
		return
	}
	err := s.store.Release(d.Slot, d.Lease)
	s.metrics.inFlight.Dec()
	if err == nil {
		return
	}
	s.metrics.storeErrors.WithLabelValues("release").Inc()
	select {
	case s.retries <- slotRelease{slot: d.Slot, lease: d.Lease, route: d.Route, attempts: 1}:
	default:
		s.log.Warn("concurrency slot not released; too many releases waiting, its lease will run out", "route", d.Route, "err", err)
	}
}

// retryReleases tries the failed releases again until ctx is done.
func (s *Server) retryReleases(ctx context.Context) {
	t := time.NewTicker(releaseRetryEvery)
	defer t.Stop()
	var waiting []slotRelease
	for {
		select {
		case <-ctx.Done():
			if len(waiting) > 0 {
				s.log.Warn("concurrency slots not released at shutdown; their leases will run out", "slots", len(waiting))
			}
			return
		case r := <-s.retries:
			waiting = append(waiting, r)
		case <-t.C:
			kept := waiting[:0]
			for _, r := range waiting {
				err := s.store.Release(r.slot, r.lease)
				if err == nil {
					continue
				}
				if r.attempts++; r.attempts < releaseAttempts {
					kept = append(kept, r)
					continue
				}
				s.log.Warn("concurrency slot not released; its lease will run out", "route", r.route, "err", err)
			}
			clear(waiting[len(kept):])
			waiting = kept
		}
	}
}
