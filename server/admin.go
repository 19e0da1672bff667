package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// maxBody bounds an admin request's body.
const maxBody = 64 << 10

// routes lists the admin API's paths and their methods; a path called with
// another method answers 405 with an Allow header.
var routes = []struct {
	path    string
	methods []string
}{
	{"/healthz", []string{"GET"}},
	{"/readyz", []string{"GET"}},
	{"/metrics", []string{"GET"}},
	{"/v1/keys", []string{"GET", "POST"}},
	{"/v1/keys/{id}", []string{"GET", "PATCH", "DELETE"}},
	{"/v1/keys/{id}/rotate", []string{"POST"}},
	{"/v1/usage", []string{"GET"}},
	{"/v1/usage/{customer}/grant", []string{"POST"}},
	{"/v1/me", []string{"GET"}},
}

// adminHandler returns the admin API (SPEC §6).
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /v1/keys", s.authed(s.listKeys))
	mux.HandleFunc("POST /v1/keys", s.authed(s.createKey))
	mux.HandleFunc("GET /v1/keys/{id}", s.authed(s.getKey))
	mux.HandleFunc("PATCH /v1/keys/{id}", s.authed(s.patchKey))
	mux.HandleFunc("DELETE /v1/keys/{id}", s.authed(s.deleteKey))
	mux.HandleFunc("POST /v1/keys/{id}/rotate", s.authed(s.rotateKey))
	mux.HandleFunc("GET /v1/usage", s.authed(s.usage))
	mux.HandleFunc("POST /v1/usage/{customer}/grant", s.authed(s.grant))
	// /v1/me is authenticated by the caller's own API key, not the admin
	// token.
	mux.HandleFunc("GET /v1/me", s.me)
	if s.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	for _, r := range routes {
		allow := strings.Join(r.methods, ", ")
		if r.methods[0] == "GET" {
			allow += ", HEAD"
		}
		mux.HandleFunc(r.path, func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Allow", allow)
			fail(w, http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", req.Method, r.path, allow)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no such path: %s", r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(sw, r)
		s.metrics.adminRequest(r.Pattern, sw.code)
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

// authed requires the admin bearer token (compared in constant time); with
// no token configured, the /v1 calls are off (503).
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	var want [sha256.Size]byte
	if s.cfg.AdminToken != "" {
		want = sha256.Sum256([]byte(s.cfg.AdminToken))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminToken == "" {
			fail(w, http.StatusServiceUnavailable, "the admin API is off: no admin token is configured (--admin-token-file or TOLLGATE_ADMIN_TOKEN)")
			return
		}
		token, ok := bearerToken(r.Header.Get("Authorization"))
		// Both sides are hashed first, so that the comparison takes the
		// same time whatever the token's length.
		got := sha256.Sum256([]byte(token))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate"`)
			if !ok {
				fail(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <admin token>)")
			} else {
				fail(w, http.StatusUnauthorized, "wrong bearer token")
			}
			return
		}
		h(w, r)
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header. The scheme is case-insensitive (RFC 7235 §2.1: "bearer" is
// "Bearer"); the token is taken as it is.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimLeft(token, " "), true
}

// writeJSON answers code with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// errorBody is the body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// fail answers code with {"error": message}.
func fail(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, errorBody{Error: fmt.Sprintf(format, args...)})
}

// httpError is an error with its HTTP status.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// failWith answers err: its status when it is an *httpError, else 503 (the
// store failed, which is also counted).
func (s *Server) failWith(w http.ResponseWriter, err error) {
	var he *httpError
	if errors.As(err, &he) {
		fail(w, he.code, "%s", he.msg)
		return
	}
	if errors.Is(err, context.Canceled) {
		// The request's context: the client went away, or the server is
		// stopping (Serve cancels the admin calls in flight).
		fail(w, http.StatusServiceUnavailable, "the call was cancelled: the server is stopping or the client went away")
		return
	}
	if errors.Is(err, policy.ErrKeyChanged) {
		fail(w, http.StatusConflict, "%v while this one ran: read it again and retry", err)
		return
	}
	s.storeFailed("admin")
	s.log.Error("admin: store", "err", err)
	fail(w, http.StatusServiceUnavailable, "store: %v", err)
}

// decodeBody decodes the request's JSON object body into v, strictly: an
// unknown field, a second value after the object or a body over maxBody is
// an error. An empty body decodes as {} when emptyOK.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return errorf(http.StatusRequestEntityTooLarge, "body: larger than %d bytes", maxBody)
		case errors.Is(err, io.EOF):
			if emptyOK {
				return nil
			}
			return errorf(http.StatusBadRequest, "body: empty (want a JSON object)")
		case errors.As(err, &syntax):
			return errorf(http.StatusBadRequest, "body: malformed JSON at byte %d: %v", syntax.Offset, err)
		case errors.As(err, &typ):
			if typ.Field != "" {
				return errorf(http.StatusBadRequest, "body: %s: got a JSON %s, want %s", typ.Field, typ.Value, jsonKind(typ.Type.Kind().String()))
			}
			return errorf(http.StatusBadRequest, "body: got a JSON %s, want a JSON object", typ.Value)
		default:
			// Unknown fields ("json: unknown field \"x\""), truncated
			// bodies (io.ErrUnexpectedEOF) and the rest.
			return errorf(http.StatusBadRequest, "body: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "body: larger than %d bytes", maxBody)
		}
		return errorf(http.StatusBadRequest, "body: unexpected data after the JSON object")
	}
	return nil
}

// jsonKind names a Go kind as a JSON type, for messages.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "a list"
	case "struct", "map", "ptr":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number"
	default:
		return "a number"
	}
}

// healthz is the liveness check: the process answers.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
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
	writeJSON(w, code, st)
}
