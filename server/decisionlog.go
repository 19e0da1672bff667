package server

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/decisionlog"
	"github.com/tollgate/tollgate/policy"
)

// openDecisionLog opens the decision log of --decision-log (none when the
// flag is empty) and registers its drop counter.
func (s *Server) openDecisionLog() error {
	s.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tollgate_decision_log_dropped_total",
		Help: "Decision log lines lost: the log's buffer was full (the disk could not keep up) or the file could not be written.",
	}, func() float64 {
		if s.dlog == nil {
			return 0
		}
		return float64(s.dlog.Dropped())
	}))
	if s.cfg.DecisionLog == "" {
		return nil
	}
	w, err := decisionlog.Open(decisionlog.Options{Filename: s.cfg.DecisionLog, MaxSize: s.cfg.DecisionLogMaxSize,
		MaxBackups: s.cfg.DecisionLogMaxBackups, Compress: true, Logger: s.log})
	if err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	s.dlog = w
	return nil
}

// logDecision queues d's line, decided at now, without waiting. The path
// is d's (as routes match it: no query string); nothing of the key but its
// id is written.
func (s *Server) logDecision(r *policy.Request, d *policy.Decision, now time.Time) {
	s.dlog.Log(&decisionlog.Record{Time: now, API: d.API, Stage: d.Stage, Route: d.Route, Method: r.Method,
		Path: d.Path, IP: d.ClientIP, KeyID: d.KeyID, Customer: d.Customer, Plan: d.Plan,
		Status: d.Status, Reason: string(d.Reason), Shadow: d.Shadow})
}

// closeDecisionLog writes the lines queued and closes the log; the
// decisions must have ended.
func (s *Server) closeDecisionLog() error {
	if s.dlog == nil {
		return nil
	}
	if err := s.dlog.Close(); err != nil {
		return fmt.Errorf("close decision log: %w", err)
	}
	return nil
}
