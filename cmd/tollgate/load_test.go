package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/load"
)

// TestLoadAgainstRealServer seeds a data directory with 200 load keys
// (tollgate load prepare), serves it with the real binary, and runs
// tollgate load in each mode (HTTP on --http-addr): every answer is
// counted, none fails, and the mix shows in the answers (keyed requests
// allowed, blocked addresses, IPv6 among them, and invalid keys 403).
func TestLoadAgainstRealServer(t *testing.T) {
	dir := t.TempDir()
	out, errOut, status := runArgs(t, "load", "prepare", "--store", "file:"+dir, "--keys", "200", "--plan", "enterprise")
	if status != 0 {
		t.Fatalf("prepare: exit %d: %s%s", status, out, errOut)
	}
	p := startProc(t, example, "file:"+dir, "--http-addr", "127.0.0.1:0")
	for _, mode := range []string{"authz", "proc", "http"} {
		target := p.grpc
		if mode == "http" {
			target = p.http
		}
		out, errOut, status := runArgs(t, "load", "--target", target, "--mode", mode, "--policy", example, "--keys", "200",
			"--workers", "8", "--conns", "2", "--requests", "2000", "--warmup", "100ms", "--json")
		if status != 0 {
			t.Fatalf("%s: exit %d: %s", mode, status, errOut)
		}
		var r load.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: %v: %s", mode, err, out)
		}
		t.Logf("%s: %.0f/s p50 %v p99 %v; 200: %d 403: %d 429: %d other %v", mode, r.PerSecond, r.P50, r.P99, r.Allowed, r.Forbidden, r.TooMany, r.OtherStatuses)
		if r.Requests != 2000 || r.Errors != 0 || r.Other != 0 {
			t.Errorf("%s: got %d requests, %d errors, %d other, want 2000, 0, 0 (%s)", mode, r.Requests, r.Errors, r.Other, r.FirstError)
		}
		// The partner route's bucket (burst 2,000) is shared by every
		// key: 429s are the policy's, not the load's.
		if r.Allowed < 500 || r.Forbidden < 100 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("%s: got %+v, want many allowed, the blocked and invalid ones 403, sane percentiles", mode, r)
		}
	}
	// The table form.
	out, _, status = runArgs(t, "load", "--target", p.grpc, "--policy", example, "--keys", "200", "--workers", "2", "--requests", "50", "--warmup", "0s")
	if status != 0 || !containsAll(out, "requests", "p99", "200:", "coordinated omission") {
		t.Errorf("table: exit %d: %s", status, out)
	}
}

// TestLoadHTTPFloor: serve --noop with --http-addr answers every HTTP
// authorization request 200 without a decision, blocked addresses and
// invalid keys included: the floor HTTP mode is measured against. Without
// --conns, HTTP mode opens one connection per worker.
func TestLoadHTTPFloor(t *testing.T) {
	p := startProc(t, example, "file:"+t.TempDir(), "--noop", "--http-addr", "127.0.0.1:0")
	out, errOut, status := runArgs(t, "load", "--target", p.http, "--mode", "http", "--policy", example, "--keys", "10",
		"--workers", "6", "--requests", "500", "--warmup", "0s", "--mix", "keyed=1,blocked=1,invalid=1", "--json")
	if status != 0 {
		t.Fatalf("exit %d: %s", status, errOut)
	}
	var r load.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Requests != 500 || r.Allowed != 500 || r.Conns != 6 {
		t.Errorf("got %d requests, %d allowed, 403: %d, other %v, errors %d (%s), %d connections; want 500 allowed, 6 connections",
			r.Requests, r.Allowed, r.Forbidden, r.OtherStatuses, r.Errors, r.FirstError, r.Conns)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
