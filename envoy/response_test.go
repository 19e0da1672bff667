package envoy_test

import (
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
)

// answer is a CheckResponse flattened for comparison: header lists as
// "name: value" in order.
type answer struct {
	code     codes.Code
	status   int // denied_response status; 0 when allowed
	body     string
	headers  []string // ok_response.headers or denied_response.headers
	remove   []string // ok_response.headers_to_remove
	response []string // ok_response.response_headers_to_add
}

// flatten checks the shape every answer must have and flattens it.
// appendSet reports whether the deprecated append field is set: it must stay
// unset beside append_action.
func appendSet(h *corev3.HeaderValueOption) bool {
	return h.ProtoReflect().Has(h.ProtoReflect().Descriptor().Fields().ByName("append"))
}

func flatten(t *testing.T, step int, resp *authv3.CheckResponse) answer {
	t.Helper()
	var a answer
	a.code = codes.Code(resp.GetStatus().GetCode())
	opts := func(hs []*corev3.HeaderValueOption) []string {
		var out []string
		for _, h := range hs {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || appendSet(h) {
				t.Errorf("step %d: header %q: got append_action %v append %v, want OVERWRITE_IF_EXISTS_OR_ADD and no append",
					step, h.GetHeader().GetKey(), h.GetAppendAction(), appendSet(h))
			}
			if len(h.GetHeader().GetRawValue()) > 0 {
				t.Errorf("step %d: header %q: got raw_value, want value only", step, h.GetHeader().GetKey())
			}
			out = append(out, h.GetHeader().GetKey()+": "+h.GetHeader().GetValue())
		}
		return out
	}
	switch {
	case resp.GetOkResponse() != nil:
		ok := resp.GetOkResponse()
		a.headers = opts(ok.GetHeaders())
		a.remove = ok.GetHeadersToRemove()
		a.response = opts(ok.GetResponseHeadersToAdd())
	case resp.GetDeniedResponse() != nil:
		dr := resp.GetDeniedResponse()
		a.status = int(dr.GetStatus().GetCode())
		a.body = dr.GetBody()
		a.headers = opts(dr.GetHeaders())
	default:
		t.Errorf("step %d: got no http_response, want ok_response or denied_response", step)
	}
	return a
}

func (a answer) equal(b answer) bool {
	return a.code == b.code && a.status == b.status && a.body == b.body &&
		slices.Equal(a.headers, b.headers) && slices.Equal(a.remove, b.remove) && slices.Equal(a.response, b.response)
}

// withLimits returns d with limits set.
func withLimits(d policy.Decision, ls ...policy.Limit) policy.Decision {
	d.NLimits = copy(d.Limits[:], ls)
	return d
}

// The limits behind the example headers of the rate-limit header draft as
// tollgate writes them: RateLimit-Policy: "plan";q=200;w=2,
// "quota";q=100000;w=86400.
var (
	planLimit  = policy.Limit{Tier: policy.TierPlan, Quota: 200, Window: 2 * time.Second, Remaining: 57, Reset: 430 * time.Millisecond}
	quotaLimit = policy.Limit{Tier: policy.TierQuota, Quota: 100000, Window: 24 * time.Hour, Remaining: 98123, Reset: 41233*time.Second + 200*time.Millisecond}
	routeLimit = policy.Limit{Tier: policy.TierRoute, Quota: 4000, Window: 2 * time.Second, Remaining: 3999, Reset: 500 * time.Microsecond}
	acctLimit  = policy.Limit{Tier: policy.TierAccount, Quota: 5000, Window: 500 * time.Millisecond, Remaining: 4999, Reset: 100 * time.Microsecond}
	emptyPlan  = policy.Limit{Tier: policy.TierPlan, Quota: 20, Window: 2 * time.Second, Remaining: 0, Reset: 2 * time.Second, Wait: 100 * time.Millisecond}
	stopLimit  = policy.Limit{Tier: policy.TierStage, Quota: 0, Window: 0, Remaining: 0, Reset: 0, Wait: time.Hour}
)

const (
	ietfPlanQuotaPolicy = `ratelimit-policy: "plan";q=200;w=2, "quota";q=100000;w=86400`
	ietfPlanQuota       = `ratelimit: "plan";r=57;t=1, "quota";r=98123;t=41234`
	jsonType            = "content-type: application/json"
)

var upstreamAcme = []string{"x-tollgate-customer: acme", "x-tollgate-key-id: acme-2026a", "x-tollgate-plan: pro"}
var removeAnon = []string{"x-tollgate-customer", "x-tollgate-key-id", "x-tollgate-plan", "x-tollgate-shadow"}

// removeShadow is what an allow with a key and no shadow denial removes.
var removeShadow = []string{"x-tollgate-shadow"}

// shadowed is d with shadow limits that would have denied it.
func shadowed(d policy.Decision, reasons string) policy.Decision {
	d.Shadow = reasons
	return d
}

func allowed(mode policy.HeaderMode) policy.Decision {
	return policy.Decision{Verdict: policy.Allow, Status: 200, KeyHeader: "x-api-key", Headers: mode}
}

func keyed(mode policy.HeaderMode) policy.Decision {
	d := allowed(mode)
	d.Customer, d.KeyID, d.Plan = "acme", "acme-2026a", "pro"
	return d
}

func denied(status int, reason policy.Reason, body string, mode policy.HeaderMode, explain bool) policy.Decision {
	return policy.Decision{Verdict: policy.Deny, Status: status, Reason: reason, Body: body,
		KeyHeader: "x-api-key", Headers: mode, Explain: explain}
}

func throttled(reason policy.Reason, body string, retry time.Duration, mode policy.HeaderMode, ls ...policy.Limit) policy.Decision {
	d := withLimits(denied(429, reason, body, mode, false), ls...)
	d.RetryAfter = retry
	return d
}

func stripped(d policy.Decision) policy.Decision {
	d.StripKey = true
	return d
}

// unavailable is d after DenyUnavailable.
func unavailable(d policy.Decision) policy.Decision {
	d.DenyUnavailable()
	return d
}

func TestCheckResponse(t *testing.T) {
	ietf, legacy, both, none := policy.HeadersIETF, policy.HeadersLegacy, policy.HeadersBoth, policy.HeadersNone
	forbidden := func(reason string) answer {
		a := answer{code: codes.PermissionDenied, status: 403, body: policy.BodyForbidden, headers: []string{jsonType}}
		if reason != "" {
			a.headers = append(a.headers, "x-tollgate-reason: "+reason)
		}
		return a
	}
	wafCustom := denied(403, "waf:transactions-per-ip", `{"message":"slow down"}`, ietf, false)
	waf429 := denied(429, "waf:burst", policy.BodyTooManyRequests, ietf, false)
	waf429.RetryAfter = 5 * time.Minute
	tests := []struct {
		name string
		d    policy.Decision
		want answer
	}{
		// Allowed.
		{"anonymous, no limits", allowed(ietf),
			answer{code: codes.OK, remove: removeAnon}},
		{"anonymous, route and account", withLimits(allowed(ietf), acctLimit, routeLimit),
			answer{code: codes.OK, remove: removeAnon, response: []string{
				`ratelimit-policy: "account";q=5000;w=1, "route";q=4000;w=2`,
				`ratelimit: "account";r=4999;t=1, "route";r=3999;t=1`}}},
		{"keyed ietf", withLimits(keyed(ietf), planLimit, quotaLimit),
			answer{code: codes.OK, headers: upstreamAcme, remove: removeShadow, response: []string{ietfPlanQuotaPolicy, ietfPlanQuota}}},
		{"keyed, shadow denials", withLimits(shadowed(keyed(ietf), "waf:watch,throttle:plan,quota"), planLimit),
			answer{code: codes.OK, headers: append(slices.Clone(upstreamAcme), "x-tollgate-shadow: waf:watch,throttle:plan,quota"),
				response: []string{`ratelimit-policy: "plan";q=200;w=2`, `ratelimit: "plan";r=57;t=1`}}},
		{"anonymous, shadow denial", shadowed(allowed(none), "throttle:route"),
			answer{code: codes.OK, headers: []string{"x-tollgate-shadow: throttle:route"}, remove: removeAnon[:3]}},
		{"keyed legacy", withLimits(keyed(legacy), planLimit, quotaLimit),
			answer{code: codes.OK, headers: upstreamAcme, remove: removeShadow, response: []string{
				"x-ratelimit-limit: 200", "x-ratelimit-remaining: 57", "x-ratelimit-reset: 1"}}},
		{"keyed both", withLimits(keyed(both), planLimit, quotaLimit),
			answer{code: codes.OK, headers: upstreamAcme, remove: removeShadow, response: []string{ietfPlanQuotaPolicy, ietfPlanQuota,
				"x-ratelimit-limit: 200", "x-ratelimit-remaining: 57", "x-ratelimit-reset: 1"}}},
		{"keyed none", withLimits(keyed(none), planLimit, quotaLimit),
			answer{code: codes.OK, headers: upstreamAcme, remove: removeShadow}},
		{"keyed, no limits", keyed(both),
			answer{code: codes.OK, headers: upstreamAcme, remove: removeShadow}},
		{"keyed, strip key", stripped(withLimits(keyed(legacy), planLimit)),
			answer{code: codes.OK, headers: upstreamAcme, remove: []string{"x-tollgate-shadow", "x-api-key"}, response: []string{
				"x-ratelimit-limit: 200", "x-ratelimit-remaining: 57", "x-ratelimit-reset: 1"}}},
		{"anonymous, strip key", stripped(allowed(ietf)),
			answer{code: codes.OK, remove: append(slices.Clone(removeAnon), "x-api-key")}},
		{"stop switch limit: w at least 1", withLimits(allowed(ietf), stopLimit),
			answer{code: codes.OK, remove: removeAnon, response: []string{
				`ratelimit-policy: "stage";q=0;w=1`, `ratelimit: "stage";r=0;t=0`}}},

		// WAF.
		{"waf block", denied(403, "waf:blocked-networks", policy.BodyForbidden, ietf, false),
			forbidden("waf:blocked-networks")},
		{"waf custom body", wafCustom,
			answer{code: codes.PermissionDenied, status: 403, body: `{"message":"slow down"}`,
				headers: []string{jsonType, "x-tollgate-reason: waf:transactions-per-ip"}}},
		{"waf custom 429", waf429,
			answer{code: codes.ResourceExhausted, status: 429, body: policy.BodyTooManyRequests,
				headers: []string{jsonType, "x-tollgate-reason: waf:burst", "retry-after: 300"}}},
		{"waf custom 401", denied(401, "waf:auth", `{"message":"Unauthorized"}`, ietf, false),
			answer{code: codes.PermissionDenied, status: 401, body: `{"message":"Unauthorized"}`,
				headers: []string{jsonType, "x-tollgate-reason: waf:auth"}}},
		{"deny without status", denied(0, "waf:x", policy.BodyForbidden, ietf, false),
			forbidden("waf:x")},

		// Route.
		{"route unknown", denied(403, policy.ReasonRouteUnknown, policy.BodyMissingToken, ietf, false),
			answer{code: codes.PermissionDenied, status: 403, body: policy.BodyMissingToken,
				headers: []string{jsonType, "x-tollgate-reason: route:unknown"}}},

		// Keys: the reason only with explain.
		{"key missing", denied(403, policy.ReasonKeyMissing, policy.BodyForbidden, ietf, false), forbidden("")},
		{"key missing explain", denied(403, policy.ReasonKeyMissing, policy.BodyForbidden, ietf, true), forbidden("key:missing")},
		{"key unknown", denied(403, policy.ReasonKeyUnknown, policy.BodyForbidden, ietf, false), forbidden("")},
		{"key unknown explain", denied(403, policy.ReasonKeyUnknown, policy.BodyForbidden, ietf, true), forbidden("key:unknown")},
		{"key disabled", denied(403, policy.ReasonKeyDisabled, policy.BodyForbidden, ietf, false), forbidden("")},
		{"key disabled explain", denied(403, policy.ReasonKeyDisabled, policy.BodyForbidden, ietf, true), forbidden("key:disabled")},
		{"key expired", denied(403, policy.ReasonKeyExpired, policy.BodyForbidden, ietf, false), forbidden("")},
		{"key expired explain", denied(403, policy.ReasonKeyExpired, policy.BodyForbidden, ietf, true), forbidden("key:expired")},
		{"key no plan", denied(403, policy.ReasonKeyNoPlan, policy.BodyForbidden, ietf, false), forbidden("")},
		{"key no plan explain", denied(403, policy.ReasonKeyNoPlan, policy.BodyForbidden, ietf, true), forbidden("key:no-plan")},
		{"waf reason with explain", denied(403, "waf:blocked-networks", policy.BodyForbidden, ietf, true),
			forbidden("waf:blocked-networks")},

		// Throttles and quota.
		{"throttle plan ietf", throttled(policy.ReasonThrottlePlan, policy.BodyTooManyRequests, 100*time.Millisecond, ietf, emptyPlan, quotaLimit),
			answer{code: codes.ResourceExhausted, status: 429, body: policy.BodyTooManyRequests, headers: []string{
				jsonType, "x-tollgate-reason: throttle:plan", "retry-after: 1",
				`ratelimit-policy: "plan";q=20;w=2, "quota";q=100000;w=86400`,
				`ratelimit: "plan";r=0;t=2, "quota";r=98123;t=41234`}}},
		{"throttle route legacy", throttled(policy.ReasonThrottleRoute, policy.BodyTooManyRequests, 2*time.Second, legacy,
			policy.Limit{Tier: policy.TierRoute, Quota: 4000, Window: 2 * time.Second, Remaining: 0, Reset: 2 * time.Second, Wait: 2 * time.Second}, acctLimit),
			answer{code: codes.ResourceExhausted, status: 429, body: policy.BodyTooManyRequests, headers: []string{
				jsonType, "x-tollgate-reason: throttle:route", "retry-after: 2",
				"x-ratelimit-limit: 4000", "x-ratelimit-remaining: 0", "x-ratelimit-reset: 2"}}},
		{"throttle stage both", throttled(policy.ReasonThrottleStage, policy.BodyTooManyRequests, 1500*time.Millisecond, both,
			policy.Limit{Tier: policy.TierStage, Quota: 10000, Window: 2 * time.Second, Remaining: 0, Reset: 1999 * time.Millisecond}),
			answer{code: codes.ResourceExhausted, status: 429, body: policy.BodyTooManyRequests, headers: []string{
				jsonType, "x-tollgate-reason: throttle:stage", "retry-after: 2",
				`ratelimit-policy: "stage";q=10000;w=2`, `ratelimit: "stage";r=0;t=2`,
				"x-ratelimit-limit: 10000", "x-ratelimit-remaining: 0", "x-ratelimit-reset: 2"}}},
		{"throttle account none", throttled(policy.ReasonThrottleAccount, policy.BodyTooManyRequests, 0, none, acctLimit),
			answer{code: codes.ResourceExhausted, status: 429, body: policy.BodyTooManyRequests, headers: []string{
				jsonType, "x-tollgate-reason: throttle:account", "retry-after: 1"}}},
		{"quota", throttled(policy.ReasonQuota, policy.BodyLimitExceeded, 41233*time.Second+200*time.Millisecond, ietf,
			policy.Limit{Tier: policy.TierQuota, Quota: 1000, Window: 24 * time.Hour, Remaining: 0, Reset: 41233*time.Second + 200*time.Millisecond}, planLimit),
			answer{code: codes.ResourceExhausted, status: 429, body: policy.BodyLimitExceeded, headers: []string{
				jsonType, "x-tollgate-reason: quota", "retry-after: 41234",
				`ratelimit-policy: "quota";q=1000;w=86400, "plan";q=200;w=2`,
				`ratelimit: "quota";r=0;t=41234, "plan";r=57;t=1`}}},
		{"concurrency", throttled(policy.ReasonConcurrency, policy.BodyTooManyRequests, time.Second, ietf),
			answer{code: codes.ResourceExhausted, status: 429, body: policy.BodyTooManyRequests, headers: []string{
				jsonType, "x-tollgate-reason: concurrency", "retry-after: 1"}}},

		// A store that could not be reached, on the fail-closed path.
		{"store unavailable", unavailable(keyed(both)),
			answer{code: codes.Unavailable, status: 503, body: policy.BodyUnavailable, headers: []string{
				jsonType, "x-tollgate-reason: store:error", "retry-after: 1"}}},

		// Unreadable request.
		{"request invalid", denied(400, policy.ReasonInvalid, policy.BodyBadRequest, both, false),
			answer{code: codes.InvalidArgument, status: 400, body: policy.BodyBadRequest, headers: []string{
				jsonType, "x-tollgate-reason: request:invalid"}}},
	}
	for i, tt := range tests {
		got := flatten(t, i, envoy.CheckResponse(&tt.d))
		if !got.equal(tt.want) {
			t.Errorf("step %d (%s): got %+v, want %+v", i, tt.name, got, tt.want)
		}
	}
}

// TestCheckResponseValid guards against answers Envoy would reject: every
// answer for a status in Envoy's StatusCode enum passes the generated
// validation.
func TestCheckResponseValid(t *testing.T) {
	ds := []policy.Decision{
		withLimits(keyed(policy.HeadersBoth), planLimit, quotaLimit),
		stripped(allowed(policy.HeadersIETF)),
		throttled(policy.ReasonQuota, policy.BodyLimitExceeded, time.Hour, policy.HeadersBoth, quotaLimit),
		denied(400, policy.ReasonInvalid, policy.BodyBadRequest, policy.HeadersIETF, false),
		denied(403, policy.ReasonKeyUnknown, policy.BodyForbidden, policy.HeadersIETF, true),
	}
	for i := range ds {
		if err := envoy.CheckResponse(&ds[i]).ValidateAll(); err != nil {
			t.Errorf("step %d: got %v, want a valid CheckResponse", i, err)
		}
	}
}

// TestCheckResponseAppendDoesNotClobber guards the shared backing arrays
// of one answer: appending to one header list must not overwrite another.
func TestCheckResponseAppendDoesNotClobber(t *testing.T) {
	d := withLimits(keyed(policy.HeadersIETF), planLimit)
	resp := envoy.CheckResponse(&d)
	ok := resp.GetOkResponse()
	ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-extra", Value: "1"}})
	if got := ok.GetResponseHeadersToAdd()[0].GetHeader().GetKey(); got != envoy.HeaderRateLimitPolicy {
		t.Errorf("step 0: got %q, want %q", got, envoy.HeaderRateLimitPolicy)
	}
}

func TestCheckResponseAllocs(t *testing.T) {
	tests := []struct {
		d    policy.Decision
		want float64
	}{
		{allowed(policy.HeadersIETF), 1},
		// 8 headers: more than a reply has room for, one more allocation.
		{withLimits(keyed(policy.HeadersBoth), planLimit, quotaLimit), 3},
		{withLimits(keyed(policy.HeadersIETF), planLimit, quotaLimit), 2},
		{throttled(policy.ReasonThrottlePlan, policy.BodyTooManyRequests, time.Second, policy.HeadersIETF, emptyPlan, quotaLimit), 2},
		{denied(403, policy.ReasonKeyUnknown, policy.BodyForbidden, policy.HeadersIETF, true), 1},
	}
	for i, tt := range tests {
		got := testing.AllocsPerRun(100, func() { envoy.CheckResponse(&tt.d) })
		if got > tt.want {
			t.Errorf("step %d: got %v allocations, want at most %v", i, got, tt.want)
		}
	}
}

// BenchmarkCheckResponse measures the translation of a decision alone.
func BenchmarkCheckResponse(b *testing.B) {
	cases := []struct {
		name string
		d    policy.Decision
	}{
		{"allow-anonymous", withLimits(allowed(policy.HeadersIETF), acctLimit, routeLimit)},
		{"allow-keyed-both", withLimits(keyed(policy.HeadersBoth), planLimit, quotaLimit, routeLimit)},
		{"deny-429", throttled(policy.ReasonThrottlePlan, policy.BodyTooManyRequests, time.Second, policy.HeadersIETF, emptyPlan, quotaLimit)},
		{"deny-403", denied(403, "waf:blocked-networks", policy.BodyForbidden, policy.HeadersIETF, false)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				envoy.CheckResponse(&c.d)
			}
		})
	}
}
