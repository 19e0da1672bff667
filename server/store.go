package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate/tollgate/admin"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/file"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis"
)

// Store is what the server needs of a state store: the decision's state
// (buckets, WAF counters, quota and usage counters) and the keys created at
// run time, plus what the admin API does with them. store/memory keeps it all
// in memory; store/file keeps what must survive a restart in an embedded
// database; store/redis shares it all between replicas.
// Implementations are safe for concurrent use.
type Store interface {
	policy.State
	policy.Keys
	// admin.KeyStore: the run-time keys' changes and pages;
	// admin.CounterStore: the quota and usage counters, and grants.
	admin.KeyStore
	admin.CounterStore

	// WAFCounters returns the WAF rate counters held in this process's
	// memory and the number dropped so far, before their windows passed,
	// to keep them within --waf-counters.
	WAFCounters() (held int, dropped uint64)

	// Ready reports whether the store can be reached.
	Ready(ctx context.Context) error
	// Close writes what is still in memory and releases the store.
	Close() error
}

// DefaultStore is the state store when Config.Store is empty.
const DefaultStore = "file:./tollgate-data"

// openStore opens the state store named by url: "memory:", "file:DIR" or a
// Redis URL.
func (s *Server) openStore(url string) (Store, error) {
	switch {
	case url == "memory:" || url == "memory":
		return memory.New(memory.WithMaxCounters(s.cfg.WAFCounters)), nil
	case strings.HasPrefix(url, "file:"):
		dir := strings.TrimPrefix(url, "file:")
		if dir == "" {
			return nil, fmt.Errorf("--store %q: want file:DIR, such as %s", url, DefaultStore)
		}
		return file.Open(dir, file.Options{FlushInterval: s.cfg.FlushInterval, Now: s.now, OnFlush: s.flushed,
			MaxCounters: s.cfg.WAFCounters})
	case redis.IsURL(url):
		st, err := redis.Open(url, redis.Options{Timeout: s.cfg.StoreTimeout, Local: s.cfg.OnStoreError == OnErrorLocal,
			LocalMaxCounters: s.cfg.WAFCounters, Observer: storeEvents{s}})
		if err != nil {
			return nil, err
		}
		s.metrics.replicas(st.Replicas)
		s.replicas, s.budget = st.Replicas, st.Budget()
		return st, nil
	default:
		return nil, fmt.Errorf("--store %q: unsupported store (supported: file:DIR, memory:, redis://, rediss://, redis-sentinel://, redis-cluster://)", redis.Redact(url))
	}
}

// flushed records one write of a file store's counters, which the store
// attempts every flush interval whether or not requests come. A failed
// write makes the store degraded (decisions go on from memory; the counts
// wait for the next write), a write that works ends it: the degraded gauge
// and /readyz follow each write, and the log has a line per change.
func (s *Server) flushed(n int, took time.Duration, err error) {
	s.metrics.flush(n, took, err)
	if err != nil {
		s.metrics.storeErrors.WithLabelValues("flush").Inc()
	}
	switch was := s.degraded.Swap(err != nil); {
	case err != nil && !was:
		s.log.Error("store: counters not written; they stay in memory for the next flush", "counters", n, "err", err)
	case err == nil && was:
		s.log.Info("store: counters written again", "counters", n)
	}
}

// storeEvents takes what a Redis store reports: its measurements go to the
// metrics, the changes of its circuit to the degraded state and the log (a
// line per change, not per decision).
type storeEvents struct{ s *Server }

func (e storeEvents) Decision(wait, roundTrip time.Duration) { e.s.metrics.storeCall(wait, roundTrip) }

// Primary takes a Redis Cluster primary's changes: its customers are
// decided locally while it does not answer (the others' are not), so it is
// not the store's degraded state, but the gauge and the log say so.
func (e storeEvents) Primary(addr string, answering bool, cause error) {
	s := e.s
	if answering {
		s.metrics.down.Dec()
		s.log.Info("store primary answers again; its customers are decided on Redis", "store", s.storeShown, "primary", addr)
		return
	}
	s.metrics.down.Inc()
	s.log.Warn("store primary not answering; its customers are decided locally until it answers", "store", s.storeShown,
		"primary", addr, "err", cause)
}

func (e storeEvents) Circuit(open bool, cause error) {
	s := e.s
	s.degraded.Store(open)
	if !open {
		s.log.Info("store reachable again; decisions are shared", "store", s.storeShown)
		return
	}
	how := map[OnStoreError]string{
		OnErrorLocal: "decided locally with this replica's share of each limit",
		OnErrorAllow: "allowed without limits",
		OnErrorDeny:  "denied (503)",
	}[s.cfg.OnStoreError]
	s.log.Warn("store unreachable; requests are "+how+" until it answers", "store", s.storeShown, "err", cause,
		"on_store_error", string(s.cfg.OnStoreError))
}
