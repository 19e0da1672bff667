package server

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/tollgate/tollgate/alerts"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/file"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis"
)

// sinkSet is the webhooks of a policy, their secrets read: what the
// Deliverer sends to, swapped with the policy on a reload.
type sinkSet map[string]alerts.Sink

// readSinks reads the sinks of p, with the secret of each secret_file
// (relative paths from the working directory). A secret that cannot be read
// fails the load like a bad policy file: events signed with nothing, or
// not sent, would be found out only when one is due. Whitespace around
// the secret is not part of it, as with --admin-token-file: the newline that
// echo or an editor ends the file with would otherwise sign every event
// with a key the receiver does not have.
func readSinks(p *policy.Policy) (sinkSet, error) {
	set := sinkSet{}
	for _, sk := range p.Sinks() {
		out := alerts.Sink{Name: sk.Name, URL: sk.URL, Timeout: sk.Timeout}
		if sk.SecretFile != "" {
			raw, err := os.ReadFile(sk.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("notifications.sinks.%s.webhook.secret_file: %w", sk.Name, err)
			}
			secret := bytes.TrimSpace(raw)
			if len(secret) == 0 {
				return nil, fmt.Errorf("notifications.sinks.%s.webhook.secret_file: %s is empty", sk.Name, sk.SecretFile)
			}
			out.Secret = secret
		}
		set[sk.Name] = out
	}
	return set, nil
}

// sink returns the sink of name in the policy being served.
func (s *Server) sink(name string) (alerts.Sink, bool) {
	set := s.sinks.Load()
	if set == nil {
		return alerts.Sink{}, false
	}
	sk, ok := (*set)[name]
	return sk, ok
}

// outboxOf returns the outbox of a store New opened: in its bbolt file, in
// Redis (shared by the replicas), or in memory.
func outboxOf(st Store) alerts.Outbox {
	switch st := st.(type) {
	case *file.Store:
		return st.Outbox()
	case *redis.Store:
		return st.Outbox()
	case *memory.Store:
		return alerts.NewMemoryOutbox()
	}
	return alerts.NewMemoryOutbox()
}

// newAlerting makes the Detector that watches decisions for quota events and
// the Deliverer that sends them from the store's outbox, and registers the
// Deliverer's metrics.
func (s *Server) newAlerting(st Store) {
	s.detector = alerts.NewDetector(alerts.DefaultDetectorSize)
	s.deliverer = alerts.NewDeliverer(alerts.DeliverOptions{Outbox: outboxOf(st), Sinks: s.sink, Now: s.now, Logger: s.log})
	s.metrics.reg.MustRegister(s.deliverer.Collectors()...)
	if set := s.sinks.Load(); set != nil {
		s.deliverer.ShowSinks(slices.Sorted(maps.Keys(*set)))
	}
}

// observe hands the quota events that d, decided at now, makes to the
// Deliverer, without waiting.
func (s *Server) observe(d *policy.Decision, now time.Time, p *policy.Policy) {
	for _, e := range s.detector.Observe(d, now, p) {
		if !s.deliverer.Enqueue(e) {
			// Not lost: the next decision past the threshold makes it again.
			s.detector.Unfire(e)
		}
	}
}

// runDeliverer delivers events until ctx is done.
func (s *Server) runDeliverer(ctx context.Context) {
	if err := s.deliverer.Run(ctx); err != nil {
		s.log.Error("event delivery stopped", "err", err)
	}
}
