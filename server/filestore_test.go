package server

import (
	"strings"
	"testing"
	"time"
)

// TestFileStoreRestart: with the file store, a graceful stop and a new
// server on the same directory keep run-time keys, quota use, grants and
// usage history; buckets start full again.
func TestFileStoreRestart(t *testing.T) {
	store := "file:" + t.TempDir()
	policyText := testPolicy(t, smallFreeQuota...)
	h := serve(t, policyText, func(c *Config) { c.Store = store })
	a := h.call("POST", "/v1/keys", `{"id":"acme-rt","customer":"acme","plans":["free"]}`).want(t, "1 create", 201, "")
	value, _ := a.json["value"].(string)
	if n := h.checks(value, 5); n != 5 {
		t.Fatalf("1: got %d allowed, want 5", n)
	}
	h.call("POST", "/v1/usage/acme/grant", `{"plan":"free","requests":2}`).want(t, "1 grant", 200, "")
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}

	// 2. Same day: 5 used of 8 + 2.
	h = serve(t, policyText, func(c *Config) { c.Store = store })
	a = h.callWith("GET", "/v1/me", "", map[string]string{"x-api-key": value}).want(t, "2 me", 200, "")
	if got, want := jsonOf(t, a.json["plans"]), `"granted":2,"limit":8,`; !strings.Contains(got, want) || !strings.Contains(got, `"used":5`) {
		t.Fatalf("2: got %s, want 5 used, 2 granted", got)
	}
	if n := h.checks(value, 10); n != 5 {
		t.Fatalf("2: got %d allowed, want 5 (8 + 2 granted − 5 used)", n)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}

	// 3. Two days on, the day is history: read from disk.
	h = serve(t, policyText, func(c *Config) { c.Store = store })
	h.clock.Advance(48 * time.Hour)
	a = h.call("GET", "/v1/usage?plan=free&customer=acme&start=2026-11-20&end=2026-11-22", "").want(t, "3", 200, "")
	if got, want := jsonOf(t, a.json["items"]), `{"acme":[[10,0],[0,8],[0,8]]}`; got != want {
		t.Fatalf("3: got %s, want %s", got, want)
	}
	if n := h.checks(value, 3); n != 3 {
		t.Fatalf("3: a new day: got %d allowed, want 3", n)
	}
	if got := h.metric(`tollgate_store_flushes_total{result="error"}`); got != 0 {
		t.Errorf("3: got %v failed flushes, want 0", got)
	}
}

// TestFileStoreInUse: a second server on a directory another one holds
// fails to start, naming the file.
func TestFileStoreInUse(t *testing.T) {
	dir := t.TempDir()
	serve(t, testPolicy(t), func(c *Config) { c.Store = "file:" + dir })
	_, err := New(Config{PolicyFile: examplePolicy, GRPCAddr: "127.0.0.1:0", AdminAddr: "-", Store: "file:" + dir})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("got %v, want the store in use", err)
	}
}
