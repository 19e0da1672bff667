package envoy_test

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
)

// TestTrailingSlashDodgesNoLimit replays issue 13's finding on the payments
// example: 1,100 Checks from one address to "POST /transactions/" were all
// allowed, since no route matched. Spelled any way its upstream serves as
// the same path, the route's per-IP WAF rule applies: 1,000 allowed, then
// 403 waf:transactions-per-ip.
func TestTrailingSlashDodgesNoLimit(t *testing.T) {
	spellings := []string{"/transactions/", "/transactions;x=1", "//transactions", "/transactions/?a=1"}
	for _, path := range spellings {
		e := newEngine(t, paymentsPolicy)
		s := &envoy.AuthzServer{Decider: e}
		allowed, waf := 0, 0
		for i := range 1100 {
			resp, err := s.Check(context.Background(), checkRequest("POST", path, "api.example.com", nil, socketAddr("198.51.100.7", 40000), nil))
			if err != nil {
				t.Fatalf("%s: check %d: %v", path, i, err)
			}
			switch code := resp.GetDeniedResponse().GetStatus().GetCode(); {
			case resp.GetOkResponse() != nil:
				allowed++
			case code == 403 && reasonOf(resp) == "waf:transactions-per-ip":
				waf++
			default:
				t.Fatalf("%s: check %d: got status %v, reason %q", path, i, code, reasonOf(resp))
			}
		}
		if allowed != 1000 || waf != 100 {
			t.Errorf("%s: got %d allowed and %d × 403 waf, want 1000 and 100", path, allowed, waf)
		}
	}
}

// reasonOf returns the x-tollgate-reason header of a denial, or "".
func reasonOf(resp *authv3.CheckResponse) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "x-tollgate-reason" {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// TestKitRoutesEverySpelling: the payments Envoy sends POST /transactions
// to ext_proc, where its in-flight cap applies (package policy's doc, "The decision", step 6). Every
// spelling that tollgate reads as that route must take the same Envoy
// route, or the cap is dodged through the catch-all ext_authz route
// (issue 13's review found "/transactions/" going there). The spellings
// are as Envoy's normalize_path and merge_slashes leave them.
func TestKitRoutesEverySpelling(t *testing.T) {
	vh := paymentsHCM(t).GetRouteConfig().GetVirtualHosts()[0]
	e := newEngine(t, paymentsPolicy)
	for _, path := range []string{"/transactions", "/transactions/", "/transactions;x=1", "/transactions;x=1/",
		"/transactions/;x", "/transactions/;a/;b", "/transactions?a=1", "/transactions/?a=1"} {
		d := e.Decide(context.Background(), &policy.Request{Method: "POST", Path: path, Peer: "198.51.100.7"})
		if d.Route != "POST /transactions" {
			t.Fatalf("%s: tollgate reads route %q, want POST /transactions", path, d.Route)
		}
		if filter, _ := filterFor(t, vh, "POST", path); filter != "ext_proc" {
			t.Errorf("POST %s: Envoy sends it to %s, want ext_proc (its in-flight cap)", path, filter)
		}
	}
	// Other paths stay with ext_authz.
	for _, path := range []string{"/transactionsx", "/transactions/x", "/partners/p-1/transactions"} {
		if filter, _ := filterFor(t, vh, "POST", path); filter != "ext_authz" {
			t.Errorf("POST %s: Envoy sends it to %s, want ext_authz", path, filter)
		}
	}
}
