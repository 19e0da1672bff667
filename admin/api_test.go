package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

func TestStatus(t *testing.T) {
	storeErr := errors.New("dial tcp: connection refused")
	for _, c := range []struct {
		err   error
		code  int
		msg   string
		store bool
	}{
		{errorf(ErrInvalid, "body: plan: required"), 400, "body: plan: required", false},
		{errorf(ErrNotFound, "no key with id %q", "x"), 404, `no key with id "x"`, false},
		{errorf(errConflict, "key id %q is taken", "x"), 409, `key id "x" is taken`, false},
		{errorf(errTooLarge, "body: larger than 1 bytes"), 413, "body: larger than 1 bytes", false},
		{errorf(errForbidden, "forbidden"), 403, "forbidden", false},
		{errorf(errOff, "off"), 503, "off", false},
		{fmt.Errorf("page: %w", context.Canceled), 503, "the call was cancelled: the server is stopping or the client went away", false},
		{fmt.Errorf("key x: %w", policy.ErrKeyChanged), 409, "key x: " + policy.ErrKeyChanged.Error() + " while this one ran: read it again and retry", false},
		{storeErr, 503, "store: dial tcp: connection refused", true},
		{errors.Join(storeErr, errors.New("undo: timeout")), 503, "store: dial tcp: connection refused\nundo: timeout", true},
	} {
		code, msg, store := status(c.err)
		if code != c.code || msg != c.msg || store != c.store {
			t.Errorf("%v: got %d %q store %v, want %d %q store %v", c.err, code, msg, store, c.code, c.msg, c.store)
		}
	}
}

func TestMuxFromRoutes(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	mux := Mux([]Route{{"GET", "/a", h}, {"POST", "/a", h}, {"DELETE", "/b/{id}", h}})
	for _, c := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/a", 299, ""},
		{"HEAD", "/a", 299, ""},
		{"POST", "/a", 299, ""},
		{"PUT", "/a", 405, "GET, POST, HEAD"},
		{"DELETE", "/b/x", 299, ""},
		{"GET", "/b/x", 405, "DELETE"},
		{"GET", "/c", 404, ""},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.code || w.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: got %d, Allow %q; want %d, Allow %q", c.method, c.path, w.Code, w.Header().Get("Allow"), c.code, c.allow)
		}
		if c.code >= 400 {
			var e ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Errorf("%s %s: got body %q, want {\"error\": ...}", c.method, c.path, w.Body)
			}
		}
	}
}

func TestRotation(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		expires time.Time
		grace   time.Duration
		want    time.Time // the retired key's expiry
	}{
		{"never expired: the grace ends it", time.Time{}, time.Hour, now.Add(time.Hour)},
		{"expires later: the grace ends it", now.Add(48 * time.Hour), 24 * time.Hour, now.Add(24 * time.Hour)},
		{"expires within the grace: unchanged", now.Add(time.Hour), 24 * time.Hour, now.Add(time.Hour)},
		{"no grace", time.Time{}, 0, now},
	} {
		old := &policy.APIKey{ID: "old", Customer: "acme", Name: "n", Plans: []string{"pro"}, Enabled: true, Expires: c.expires}
		nk, retired := rotation(old, "new", c.grace, now)
		if !retired.Expires.Equal(c.want) || retired.RotatedTo != "new" || old.RotatedTo != "" {
			t.Errorf("%s: retired expires %v rotated to %q (old's %q), want %v, new, none", c.name, retired.Expires, retired.RotatedTo, old.RotatedTo, c.want)
		}
		if nk.ID != "new" || nk.Customer != "acme" || nk.Name != "n" || !nk.Expires.Equal(c.expires) || !nk.Created.Equal(now) || !nk.Enabled {
			t.Errorf("%s: new key %+v, want old's customer, name, plans and expiry, created now", c.name, nk)
		}
		nk.Plans[0] = "changed"
		if old.Plans[0] != "pro" {
			t.Errorf("%s: the new key shares the old key's plans", c.name)
		}
	}
}

func TestCheckIDOneRule(t *testing.T) {
	var bad problems
	bad.checkID("query: after", "a key id or customer", "a/b")
	bad.checkID("body: id", "valid", "..")
	bad.checkID("body: id", "valid", "ok-id")
	want := `query: after: "a/b" is not a key id or customer (` + policy.KeyIDRule + `); body: id: ".." is not valid (` + policy.KeyIDRule + `)`
	if err := bad.err(); err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want %s (ErrInvalid)", err, want)
	}
}
