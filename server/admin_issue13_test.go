package server

import (
	"strings"
	"testing"
	"time"
)

// TestBearerSchemeCaseInsensitive: the Authorization scheme is
// case-insensitive (RFC 7235 §2.1); the token is not.
func TestBearerSchemeCaseInsensitive(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		h.callWith("GET", "/v1/keys", "", map[string]string{"Authorization": scheme + " " + adminToken}).want(t, scheme, 200, "")
	}
	h.callWith("GET", "/v1/keys", "", map[string]string{"Authorization": "bearer " + strings.ToUpper(adminToken)}).
		want(t, "token case", 401, "wrong bearer token")
	h.callWith("GET", "/v1/keys", "", map[string]string{"Authorization": "Bearertoken"}).want(t, "no space", 401, "missing bearer token")
}

// TestKeyIDDotSegments: "." and ".." are not ids or customers (a path
// segment of either names no key: /v1/keys/.. is /v1).
func TestKeyIDDotSegments(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	for i, body := range []string{
		`{"id":".","plans":["free"]}`,
		`{"id":"..","plans":["free"]}`,
		`{"customer":".","plans":["free"]}`,
		`{"customer":"..","plans":["free"]}`,
	} {
		h.call("POST", "/v1/keys", body).want(t, body, 400, `is not valid (1 to 64 letters, digits, "_", "." and "-", not "." or "..")`)
		_ = i
	}
	h.call("POST", "/v1/keys", `{"id":"k","plans":["free"]}`).want(t, "k", 201, "")
	h.call("POST", "/v1/keys/k/rotate", `{"id":".."}`).want(t, "rotate", 400, `body: id: ".." is not valid`)
	h.call("GET", "/v1/usage?plan=free&customer=..&start=2026-11-20&end=2026-11-20", "").want(t, "usage", 400, `customer: ".." is not valid`)
	// Names that merely hold dots are fine.
	h.call("POST", "/v1/keys", `{"id":"...","customer":".a.","plans":["free"]}`).want(t, "dots", 201, "")
}

// TestRotateTwiceKeepsContractExpiry: a retried rotation used to give the
// second new key the old key's grace end as its expiry. A key in its grace
// cannot be rotated again (409); the new key has the old one's contract
// expiry, plans and customer.
func TestRotateTwiceKeepsContractExpiry(t *testing.T) {
	for _, store := range []string{"memory:", "file:"} {
		t.Run(strings.TrimSuffix(store, ":"), func(t *testing.T) {
			if store == "file:" {
				store += t.TempDir()
			}
			h := serve(t, testPolicy(t), func(c *Config) { c.Store = store })
			h.call("POST", "/v1/keys", `{"id":"k1","customer":"acme","plans":["pro"],"expires":"2027-01-01T00:00:00Z"}`).want(t, "1", 201, "")
			a := h.call("POST", "/v1/keys/k1/rotate", `{"grace":"1h","id":"k2"}`).want(t, "2", 201, "")
			if got, want := jsonOf(t, []any{a.json["expires"], a.json["plans"], a.json["customer"]}), `["2027-01-01T00:00:00Z",["pro"],"acme"]`; got != want {
				t.Fatalf("2: got %s, want %s", got, want)
			}
			old := h.call("GET", "/v1/keys/k1", "").want(t, "3", 200, "")
			if old.json["expires"] != "2026-11-20T13:00:00Z" || old.json["rotated_to"] != "k2" {
				t.Fatalf("3: got %s, want expires at the grace end and rotated_to k2", old.raw)
			}
			// The retried call: 409, nothing created.
			h.call("POST", "/v1/keys/k1/rotate", `{"grace":"1h"}`).want(t, "4", 409, `key "k1" was rotated to "k2"`)
			h.clock.Advance(30 * time.Minute)
			h.call("POST", "/v1/keys/k1/rotate", `{"grace":"1h","id":"k3"}`).want(t, "5", 409, "in its grace until 2026-11-20T13:00:00Z")
			h.call("GET", "/v1/keys/k3", "").want(t, "6", 404, "")
			// The new key rotates normally, to the contract expiry.
			a = h.call("POST", "/v1/keys/k2/rotate", `{"grace":"1h","id":"k4"}`).want(t, "7", 201, "")
			if a.json["expires"] != "2027-01-01T00:00:00Z" {
				t.Fatalf("7: got %s, want the contract expiry", a.raw)
			}
		})
	}
}
