package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// KeyPages reads the run-time keys a page at a time.
type KeyPages interface {
	// KeysAfter returns at most limit run-time keys whose ids sort after
	// after ("": from the first), in id order, at a cost of the page, not
	// of every key (see each store's doc). Fewer than limit: the last page.
	KeysAfter(ctx context.Context, after string, limit int) ([]*policy.APIKey, error)
	// CustomerKeysAfter returns at most limit run-time keys that sort after
	// the customer and id given in the order of customer, then id. The id
	// "\x7f" sorts after every valid id: the page starts at the next
	// customer.
	CustomerKeysAfter(ctx context.Context, customer, id string, limit int) ([]*policy.APIKey, error)
}

// KeyStore is what the admin API needs of the run-time keys.
type KeyStore interface {
	KeyPages
	// RuntimeKey returns the run-time key with the id, or nil.
	RuntimeKey(id string) (*policy.APIKey, error)
	// SaveKey creates or replaces (by ID) a run-time key; it is durable
	// when SaveKey returns. prev is the key with that id as the caller read
	// it (from RuntimeKey or a page), nil when the id must be free: when the
	// store holds anything else, nothing changes and the error is
	// policy.ErrKeyChanged.
	SaveKey(k, prev *policy.APIKey) error
	// DeleteKey removes the run-time key with the id and reports whether
	// there was one.
	DeleteKey(id string) (bool, error)
}

// Counters reads the quota and usage-history counters.
type Counters interface {
	// Counter returns the state of a quota or usage-history counter:
	// the requests counted, and the requests granted on top of the limit
	// (quota counters only).
	Counter(k policy.Key) (used, granted int64, err error)
}

// CounterStore is what the admin API needs of the counters.
type CounterStore interface {
	Counters
	// Grant adds n to the grant of the quota counter k, whose period ends
	// at end.
	Grant(k policy.Key, n int64, end time.Time) error
}

// Config is what the admin API is given.
type Config struct {
	Keys     KeyStore
	Counters CounterStore
	// Lookup finds a run-time key by the hash of its value, for /v1/me (the
	// decisions' key lookup).
	Lookup policy.Keys
	// Policy returns the policy being served; Now is the clock.
	Policy func() *policy.Policy
	Now    func() time.Time
	// Token is the bearer token of the /v1 calls; empty: they answer 503.
	Token string
	Log   *slog.Logger
	// Changes serializes the changes to keys and grants, so that a check
	// (is the id taken?) and the change it guards are one step; the server
	// holds it through a policy reload too. nil: the API's own.
	Changes sync.Locker
	// StoreFailed counts a store error of an admin call; may be nil.
	StoreFailed func()
	// Forecaster estimates the recent rate of a customer's use of a
	// quota; nil: forecasts are null.
	Forecaster Forecaster
}

// API is the admin API: the keys, the usage reports and grants, and
// /v1/me. It is safe for concurrent use.
type API struct {
	cfg Config
	log *slog.Logger
	// mu is Config.Changes.
	mu sync.Locker
}

// New returns the admin API of cfg.
func New(cfg Config) *API {
	a := &API{cfg: cfg, log: cfg.Log, mu: cfg.Changes}
	if a.mu == nil {
		a.mu = new(sync.Mutex)
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	return a
}

// Route is one path and method of the admin HTTP API and its handler.
type Route struct {
	Method, Path string
	Handler      http.Handler
}

// Routes returns the /v1 routes of the API.
func (a *API) Routes() []Route {
	return []Route{
		{"GET", "/v1/keys", a.authed(a.listKeys)},
		{"POST", "/v1/keys", a.authed(a.createKey)},
		{"GET", "/v1/keys/{id}", a.authed(a.getKey)},
		{"PATCH", "/v1/keys/{id}", a.authed(a.patchKey)},
		{"DELETE", "/v1/keys/{id}", a.authed(a.deleteKey)},
		{"POST", "/v1/keys/{id}/rotate", a.authed(a.rotateKey)},
		{"GET", "/v1/usage", a.authed(a.usage)},
		{"POST", "/v1/usage/{customer}/grant", a.authed(a.grant)},
		{"GET", "/v1/usage/{customer}/forecast", a.authed(a.forecast)},
		// /v1/me is authenticated by the caller's own API key, not the
		// admin token.
		{"GET", "/v1/me", a.handle(a.me)},
	}
}

// Mux returns a mux of the routes: a path called with a method it has no
// route for answers 405 with an Allow header (GET allows HEAD too), and a
// path with no route 404.
func Mux(routes []Route) *http.ServeMux {
	mux := http.NewServeMux()
	var paths []string
	methods := map[string][]string{}
	for _, r := range routes {
		mux.Handle(r.Method+" "+r.Path, r.Handler)
		if _, ok := methods[r.Path]; !ok {
			paths = append(paths, r.Path)
		}
		methods[r.Path] = append(methods[r.Path], r.Method)
	}
	for _, path := range paths {
		allow := strings.Join(methods[path], ", ")
		if methods[path][0] == "GET" {
			allow += ", HEAD"
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Allow", allow)
			failPlain(w, errorf(errMethod, "method %s is not allowed on %s (allowed: %s)", req.Method, path, allow))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		failPlain(w, errorf(errNoPath, "no such path: %s", r.URL.Path))
	})
	return mux
}

// RefuseUnclean answers a request whose path is not in its clean form (an
// empty, "." or ".." segment) with a JSON 404, and reports whether it did.
// http.ServeMux would redirect it to the clean path with a 307 in HTML, and a
// 307 keeps the method and body: a client that follows it would have
// DELETE /v1/keys/a/../b delete key b.
func RefuseUnclean(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	if p == "" || p[0] != '/' {
		return false // not a path (CONNECT's host): the mux answers
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/" // a trailing slash is part of a path (/debug/pprof/)
	}
	if clean == p {
		return false
	}
	failPlain(w, errorf(errNoPath, "no such path: %s (its clean form is %s)", p, clean))
	return true
}

// failPlain answers a domain error that no API call made.
func failPlain(w http.ResponseWriter, err error) {
	code, msg, _ := status(err)
	WriteJSON(w, code, ErrorBody{Error: msg})
}

// reply is a handler's answer: a status, a body written as JSON (nil: no
// body) and a Location header ("": none).
type reply struct {
	code     int
	body     any
	location string
}

func ok(body any) reply { return reply{code: http.StatusOK, body: body} }

func created(v KeyView) reply {
	return reply{code: http.StatusCreated, body: v, location: "/v1/keys/" + v.ID}
}

// handler is an admin call: it decodes the request, calls a domain
// function, and returns the answer or an error for fail.
type handler func(r *http.Request) (reply, error)

// maxBody bounds an admin request's body.
const maxBody = 64 << 10

// handle turns h into an http.Handler: its errors go to fail, its answer
// is written as JSON.
func (a *API) handle(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		rep, err := h(r)
		if err != nil {
			a.fail(w, err)
			return
		}
		if rep.location != "" {
			w.Header().Set("Location", rep.location)
		}
		if rep.body == nil {
			w.WriteHeader(rep.code)
			return
		}
		WriteJSON(w, rep.code, rep.body)
	})
}

// authed is handle for a call that requires the admin bearer token
// (compared in constant time); with no token configured, the /v1 calls are
// off (503).
func (a *API) authed(h handler) http.Handler {
	var want [sha256.Size]byte
	if a.cfg.Token != "" {
		want = sha256.Sum256([]byte(a.cfg.Token))
	}
	return a.handle(func(r *http.Request) (reply, error) {
		if a.cfg.Token == "" {
			return reply{}, errorf(errOff, "the admin API is off: no admin token is configured (--admin-token-file or TOLLGATE_ADMIN_TOKEN)")
		}
		token, ok := bearerToken(r.Header.Get("Authorization"))
		// Both sides are hashed first, so that the comparison takes the
		// same time whatever the token's length.
		got := sha256.Sum256([]byte(token))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			e := &Error{Kind: ErrUnauthenticated, Msg: "wrong bearer token", Challenge: `Bearer realm="tollgate"`}
			if !ok {
				e.Msg = "missing bearer token (Authorization: Bearer <admin token>)"
			}
			return reply{}, e
		}
		return h(r)
	})
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

// WriteJSON answers code with v as indented JSON, not to be cached.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
