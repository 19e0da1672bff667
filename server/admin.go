package server

import (
	"context"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/tollgate/tollgate/admin"
)

// adminHandler returns the admin HTTP API: the process's own routes
// (health, readiness, metrics) and the admin package's /v1 routes, in one
// table that the mux is built from, plus net/http/pprof when asked for.
func (s *Server) adminHandler() http.Handler {
	api := admin.New(admin.Config{
		Keys:        s.store,
		Counters:    s.store,
		Lookup:      s.store,
		Policy:      s.policy.Load,
		Now:         s.now,
		Changes:     &s.adminMu,
		Token:       s.cfg.AdminToken,
		Log:         s.log,
		StoreFailed: func() { s.storeFailed("admin") },
		Forecaster:  s.detector,
	})
	routes := append([]admin.Route{
		{Method: "GET", Path: "/healthz", Handler: http.HandlerFunc(s.healthz)},
		{Method: "GET", Path: "/readyz", Handler: http.HandlerFunc(s.readyz)},
		{Method: "GET", Path: "/metrics", Handler: s.metrics.handler()},
	}, api.Routes()...)
	mux := admin.Mux(routes)
	if s.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		pattern := "/" // refused: counted with the paths of no route
		if !admin.RefuseUnclean(sw, r) {
			mux.ServeHTTP(sw, r)
			pattern = r.Pattern
		}
		s.metrics.adminRequest(pattern, sw.code)
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code    int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.code, w.written = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// healthz is the liveness check: the process answers.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	admin.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyState is the body of /readyz.
type readyState struct {
	Status string `json:"status"` // "ready" or "not ready"
	Policy struct {
		File     string    `json:"file"`
		LoadedAt time.Time `json:"loaded_at"`
		// LastReloadError is the error of the last reload when it failed:
		// the policy loaded at LoadedAt is still served.
		LastReloadError string `json:"last_reload_error,omitempty"`
		// RuntimeKeysError names the run-time keys that did not fit the
		// policy at start (they are refused) until a reload succeeds.
		RuntimeKeysError string `json:"runtime_keys_error,omitempty"`
	} `json:"policy"`
	Store struct {
		Status   string `json:"status"` // "ok" or "unreachable"
		Error    string `json:"error,omitempty"`
		Degraded bool   `json:"degraded"`
		// With Redis: what a decision does while it cannot be reached,
		// and the live replicas that share it (as last seen).
		OnStoreError OnStoreError `json:"on_store_error,omitempty"`
		Replicas     int          `json:"replicas,omitempty"`
	} `json:"store"`
}

// readyz is the readiness check: a policy is loaded and the store answers.
// A failed reload does not make the server unready (it still serves the
// previous policy, and taking every replica out of service for a typo would
// turn a bad edit into an outage), but its error is shown here.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	var st readyState
	ls := s.load.Load()
	st.Policy.File = s.cfg.PolicyFile
	st.Policy.LoadedAt = ls.loadedAt.UTC()
	st.Policy.LastReloadError = ls.err
	st.Policy.RuntimeKeysError = ls.keysErr
	st.Store.Status = "ok"
	st.Store.Degraded = s.degraded.Load()
	if s.replicas != nil {
		st.Store.OnStoreError, st.Store.Replicas = s.cfg.OnStoreError, s.replicas()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	code := http.StatusOK
	st.Status = "ready"
	if s.policy.Load() == nil {
		st.Status, code = "not ready", http.StatusServiceUnavailable
	}
	if err := s.store.Ready(ctx); err != nil {
		s.storeFailed("ready")
		st.Status, code = "not ready", http.StatusServiceUnavailable
		st.Store.Status, st.Store.Error = "unreachable", err.Error()
	}
	admin.WriteJSON(w, code, st)
}
