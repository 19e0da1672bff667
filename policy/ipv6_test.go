package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// ratePolicy is a policy with one rate rule of limit 2 per minute, keyed
// by key, with extra fields in its rate_based mapping.
func ratePolicy(t *testing.T, key, extra string) *policy.Policy {
	t.Helper()
	return parse(t, strings.NewReplacer("KEY", key, "EXTRA", extra).Replace(`
version: 1
waf:
  ip_sets: {bad: ["2001:db8:bad::/48", "fe80::bad/128"]}
  rules:
    - {name: bad, ip_set: bad, action: block}
    - {name: per-client, rate_based: {limit: 2, window: 1m, key: KEY EXTRA}, action: block}
`))
}

// TestWAFRateIPv6Prefix: with ipv6_prefix 64, the IPv6 clients of one /64
// share a counter (one host holds a whole /64); other /64s and IPv4
// clients are counted apart, and without ipv6_prefix each address is.
func TestWAFRateIPv6Prefix(t *testing.T) {
	steps := []struct {
		key, extra, peer string
		want             policy.Reason
	}{
		{"ip", ", ipv6_prefix: 64", "[2001:db8:1:2::a]:4000", ""},
		{"ip", ", ipv6_prefix: 64", "[2001:db8:1:2::b]:4000", ""},
		{"ip", ", ipv6_prefix: 64", "2001:db8:1:2:ffff::c", "waf:per-client"}, // third in the /64
		{"ip", ", ipv6_prefix: 64", "[2001:db8:1:3::a]:4000", ""},             // another /64
		{"ip", ", ipv6_prefix: 64", "192.0.2.1:4000", ""},
		{"ip", ", ipv6_prefix: 64", "192.0.2.1:4001", ""},
		{"ip", ", ipv6_prefix: 64", "192.0.2.2:4000", ""}, // IPv4: per address
		{"ip+path", ", ipv6_prefix: 48", "[2001:db8:1:2::a]:4000", ""},
		{"ip+path", ", ipv6_prefix: 48", "[2001:db8:1:ff::a]:4000", ""},
		{"ip+path", ", ipv6_prefix: 48", "[2001:db8:1:ffff::a]:4000", "waf:per-client"},
		{"ip", "", "[2001:db8:1:2::a]:4000", ""},
		{"ip", "", "[2001:db8:1:2::b]:4000", ""},
		{"ip", "", "[2001:db8:1:2::c]:4000", ""}, // per address
	}
	engines := map[string]*engine{}
	for i, st := range steps {
		e := engines[st.key+st.extra]
		if e == nil {
			e = newEngine(ratePolicy(t, st.key, st.extra))
			engines[st.key+st.extra] = e
		}
		if d := e.do(t, t0, anon("GET", "/x", st.peer)); d.Reason != st.want {
			t.Errorf("step %d: %s%s from %s: got %q, want %q", i, st.key, st.extra, st.peer, d.Reason, st.want)
		}
	}
}

// TestWAFRateZonesCountedTogether: fe80::1%eth0 and fe80::1%eth1 are one
// client (the zone names this host's interface, not the client).
func TestWAFRateZonesCountedTogether(t *testing.T) {
	e := newEngine(ratePolicy(t, "ip", ""))
	for i, st := range []struct {
		peer string
		want policy.Reason
	}{
		{"fe80::1%eth0", ""},
		{"[fe80::1%eth1]:4000", ""},
		{"fe80::1", "waf:per-client"},
		{"[fe80::1%eth2]:4000", "waf:per-client"},
		{"fe80::2%eth0", ""},
	} {
		if d := e.do(t, t0, anon("GET", "/x", st.peer)); d.Reason != st.want {
			t.Errorf("step %d: from %s: got %q, want %q", i, st.peer, d.Reason, st.want)
		}
	}
}

// TestIPSetZonedAddressBlocked: a blocklisted address with a zone is
// blocked, from the peer and from a header.
func TestIPSetZonedAddressBlocked(t *testing.T) {
	e := newEngine(ratePolicy(t, "ip", ""))
	hdr := newEngine(parse(t, `
version: 1
clients: {ip: {source: header, header: x-real-ip}}
waf:
  ip_sets: {bad: ["2001:db8:bad::/48", "fe80::bad/128"]}
  rules: [{name: bad, ip_set: bad, action: block}]
`))
	for i, st := range []struct {
		e    *engine
		peer string
		hdr  string
		want policy.Reason
	}{
		{e, "[2001:db8:bad::1%eth0]:4000", "", "waf:bad"},
		{e, "fe80::bad%eth1", "", "waf:bad"},
		{e, "fe80::bad:1%eth1", "", ""},
		{hdr, "192.0.2.1:4000", "fe80::bad%eth0", "waf:bad"},
		{hdr, "192.0.2.1:4000", "[2001:db8:bad::7%eth0]:80", "waf:bad"},
	} {
		r := anon("GET", "/x", st.peer)
		if st.hdr != "" {
			r.Headers["x-real-ip"] = st.hdr
		}
		if d := st.e.do(t, t0, r); d.Reason != st.want {
			t.Errorf("step %d: from %s (header %q): got %q, want %q", i, st.peer, st.hdr, d.Reason, st.want)
		}
	}
}

// TestExamplePerIPRuleCountsIPv6Per64: the payments example's per-IP rule
// counts the addresses of one /64 together.
func TestExamplePerIPRuleCountsIPv6Per64(t *testing.T) {
	e := newEngine(example(t))
	for i := range 1000 {
		if d := e.do(t, t0.Add(time.Duration(i)*time.Millisecond), anon("POST", "/transactions", "[2001:db8:1:2::a]:4000")); d.Verdict != policy.Allow {
			t.Fatalf("step %d: got %s, want allowed", i, d.Reason)
		}
	}
	at := t0.Add(time.Second)
	if d := e.do(t, at, anon("POST", "/transactions", "[2001:db8:1:2::b]:4000")); d.Reason != "waf:transactions-per-ip" {
		t.Errorf("step 1000: another address of the /64: got %q, want waf:transactions-per-ip", d.Reason)
	}
	if d := e.do(t, at, anon("POST", "/transactions", "[2001:db8:1:3::a]:4000")); d.Verdict != policy.Allow {
		t.Errorf("step 1001: another /64: got %q, want allowed", d.Reason)
	}
}
