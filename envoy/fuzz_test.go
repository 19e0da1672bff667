package envoy_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
)

// FuzzCheck drives the whole Check path (translation, evaluation against
// both test policies, translation back) with arbitrary request pieces. It
// must never panic or fail the RPC, must answer 200, 400, 403 or 429, and
// must answer 400 exactly for request:invalid.
func FuzzCheck(f *testing.F) {
	// method, path, host, x-api-key, x-forwarded-for, peer, context extension api, stage
	f.Add("POST", "/transactions", "api.example.com", "", "", "198.51.100.7", "", "")                                        // public route
	f.Add("POST", "/partners/p-17/transactions", "api.example.com", "tg_demo_pro_00000000000000001", "", "10.0.0.1", "", "") // keyed
	f.Add("POST", "/partners/p-17/transactions", "", "tg_demo_nobody_00000000000001", "", "10.0.0.1", "", "")                // unknown key
	f.Add("POST", "/partners/p-17/transactions", "", "short", "", "10.0.0.1", "", "")                                        // malformed key
	f.Add("POST", "/transactions", "api.example.com", "", "", "203.0.113.9", "", "")                                         // blocklisted
	f.Add("GET", "/status", "", "", "", "203.0.113.9:5000", "", "")                                                          // waf: skip, peer with port
	f.Add("GET", "/%2e%2e/status?x=%zz", "", "", "", "[2001:db8::1]:443", "", "")                                            // escapes and dot segments
	f.Add("POST", "/partners/{id}/transactions", "API.EXAMPLE.COM:443", "", "", "::ffff:198.51.100.7", "", "")               // braces in a path, mapped IPv4
	f.Add("GET", "/items/1", "shop.example.com", "", "203.0.113.1, 10.0.0.1", "10.0.0.1", "shop", "prod")                    // tight, named stage
	f.Add("POST", "/orders", "", "tg_test_tiny_000000000000000001", "", "10.0.0.1", "", "shop/beta")                         // tight, stage as api/stage
	f.Add("GET", "/nope", "", "", "", "10.0.0.1", "payments", "staging")                                                     // unknown stage
	f.Add("", "", "", "", "", "", "", "")                                                                                    // nothing at all: 400
	f.Add("GET", "status", "", "", "", "10.0.0.1", "", "")                                                                   // relative path: 400
	f.Add("GET", "/status", "", "", "", "not an ip", "", "")                                                                 // unusable peer: 400
	f.Add("get", "//a//b/../../../c", "\x00", "\xff\xfe", "\xff", "1.2.3.4%eth0", "\x00", "/")                               // odd bytes
	engines := []*engine{newEngine(f, paymentsPolicy), newEngine(f, tightPolicy)}
	f.Fuzz(func(t *testing.T, method, path, host, key, xff, peer, api, stage string) {
		headers := map[string]string{}
		if key != "" {
			headers["x-api-key"] = key
		}
		if xff != "" {
			headers["x-forwarded-for"] = xff
		}
		ext := map[string]string{}
		if api != "" {
			ext["api"] = api
		}
		if stage != "" {
			ext["stage"] = stage
		}
		var addr *corev3.Address
		if peer != "" {
			addr = socketAddr(peer, 443)
		}
		req := checkRequest(method, path, host, headers, addr, ext)
		for i, e := range engines {
			resp, err := (&envoy.AuthzServer{Decider: e}).Check(context.Background(), req)
			if err != nil {
				t.Fatalf("step %d: got error %v, want none", i, err)
			}
			code := codes.Code(resp.GetStatus().GetCode())
			o := outcomeOf(resp)
			switch {
			case code == codes.OK && resp.GetOkResponse() == nil:
				t.Errorf("step %d: got OK without ok_response", i)
			case code != codes.OK && resp.GetDeniedResponse() == nil:
				t.Errorf("step %d: got %v without denied_response", i, code)
			}
			switch o.status {
			case 200, 403, 429:
			case 400:
				if code != codes.InvalidArgument {
					t.Errorf("step %d: got code %v for 400, want InvalidArgument", i, code)
				}
			default:
				t.Errorf("step %d: got status %d, want 200, 400, 403 or 429", i, o.status)
			}
			if (o.status == 400) != (o.reason == string(policy.ReasonInvalid)) {
				t.Errorf("step %d: got status %d with reason %q, want 400 exactly for %s", i, o.status, o.reason, policy.ReasonInvalid)
			}
			if o.status == 429 && o.retryAfter == "" {
				t.Errorf("step %d: got 429 without retry-after", i)
			}
			if err := resp.ValidateAll(); err != nil {
				t.Errorf("step %d: got %v, want a valid CheckResponse", i, err)
			}
		}
	})
}

// FuzzProcess drives an ext_proc stream (request headers, then response
// headers) over real gRPC with arbitrary header names and values, source
// address and metadata, against a policy with a concurrency cap. The stream
// must never fail, the answer must be a valid ImmediateResponse (400, 403,
// 429) or a header mutation with raw values only, and no slot may stay held
// once the stream is done.
func FuzzProcess(f *testing.F) {
	// method, path, authority, header name, header value, source, stage,
	// how the stream ends (0: response headers, 1: CloseSend after the
	// answer, 2: cancelled right after the request)
	f.Add("GET", "/items/7", "shop.example.com", "x-api-key", "tg_test_tiny_000000000000000001", "10.0.0.1:5000", "", byte(0))
	f.Add("POST", "/orders", "shop.example.com", "x-api-key", "tg_test_quota_00000000000000001", "[2001:db8::1]:1", "shop/beta", byte(1))
	f.Add("", "", "", "", "", "", "", byte(2))
	f.Add("GET", "/items/../items/1?q", "\x00", ":path", "/other", "not an address", "shop/prod", byte(0))
	f.Add("DELETE", "/", "SHOP.EXAMPLE.COM", "X-API-KEY", "\xff\xfe", "1.2.3.4", "nope", byte(1))
	f.Add("GET", "/items/7", "shop.example.com", "", "", "10.0.0.1:5000", "", byte(2))
	e := capEngine(f, "1")
	client := serveProc(f, e)
	f.Fuzz(func(t *testing.T, method, path, authority, name, value, source, stage string, end byte) {
		var hs []*corev3.HeaderValue
		for _, p := range [][2]string{{":method", method}, {":path", path}, {":authority", authority}, {name, value}} {
			// Keys are proto strings (valid UTF-8, as Envoy's are); values
			// are raw bytes.
			if p[0] != "" && utf8.ValidString(p[0]) {
				hs = append(hs, &corev3.HeaderValue{Key: p[0], RawValue: []byte(p[1])})
			}
		}
		msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}}}}
		if source != "" && utf8.ValidString(source) {
			msg.Attributes = map[string]*structpb.Struct{"x": {Fields: map[string]*structpb.Value{
				envoy.AttributeSource: structpb.NewStringValue(source)}}}
		}
		md := metadata.MD{}
		if stage != "" && !strings.ContainsFunc(stage, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			md.Set("stage", stage) // gRPC carries printable ASCII only
		}
		if end%3 != 0 {
			s := open(t, client, md)
			if err := s.c.Send(msg); err != nil {
				t.Fatal(err)
			}
			if end%3 == 1 {
				resp, err := s.c.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if err := resp.ValidateAll(); err != nil {
					t.Errorf("got an invalid answer: %v", err)
				}
				s.c.CloseSend()
				s.c.Recv()
			}
			s.cancel()
			waitSlots(t, e, 0)
			return
		}
		got := procSeen(t, client, msg, md)
		switch got.status {
		case 200, 400, 403, 429:
		default:
			t.Errorf("got status %d, want 200, 400, 403 or 429", got.status)
		}
		for _, h := range append(append(got.upstream, got.response...), got.denial...) {
			if strings.HasPrefix(h, "value set beside raw_value") {
				t.Errorf("got %s, want raw_value only", h)
			}
		}
		waitSlots(t, e, 0)
	})
}

// FuzzHTTPAuthz feeds raw HTTP/1.1 requests, parsed by net/http as the
// server would, to the HTTP authorization handler (Envoy's http_service,
// nginx's auth_request, Caddy's forward_auth): it must never panic and
// must answer 200, 400, 403, 404 or 429, with 400 exactly for
// request:invalid and 404 exactly for a path that is not a decision path.
func FuzzHTTPAuthz(f *testing.F) {
	f.Add("GET /forward_auth HTTP/1.1\r\nHost: a\r\nX-Forwarded-Method: POST\r\nX-Forwarded-Uri: /transactions\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
	f.Add("POST /ext_authz/transactions?x=1 HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 1.2.3.4, fe80::1%eth0\r\n\r\n")
	f.Add("GET /forward_auth HTTP/1.1\r\nHost: a\r\nX-Original-Method: GET\r\nX-Original-URI: /status/%2e%2e/status\r\nX-Real-IP: [2001:db8::1]:80\r\n\r\n")
	f.Add("GET http://x/ext_authz/%2F HTTP/1.1\r\nHost: x\r\nX-Tollgate-Stage: payments/prod\r\nX-Api-Key: tg_demo_free_0000000000000001\r\n\r\n")
	f.Add("GET /forward_auth HTTP/1.1\r\nHost: a\r\nX-Forwarded-Uri: http://evil/x\r\nX-Forwarded-Method: GET\r\nX-Forwarded-For: unknown\r\n\r\n")
	f.Add("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
	e := newEngine(f, paymentsPolicy)
	s := &envoy.HTTPServer{Decider: e}
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		r.RemoteAddr = "192.0.2.1:1234"
		var req policy.Request
		isDecision := envoy.RequestFromHTTP(r, &req)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		reason := w.Header().Get("X-Tollgate-Reason")
		switch w.Code {
		case 200, 403, 429:
		case 400:
			if reason != string(policy.ReasonInvalid) {
				t.Errorf("400 with reason %q", reason)
			}
		case 404:
			if isDecision {
				t.Errorf("404 for a decision path %q", r.RequestURI)
			}
		default:
			t.Errorf("status %d", w.Code)
		}
		if reason == string(policy.ReasonInvalid) && w.Code != 400 {
			t.Errorf("request:invalid with %d", w.Code)
		}
	})
}
