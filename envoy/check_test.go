package envoy_test

import (
	"context"
	"maps"
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
)

// checkRequest builds a CheckRequest shaped like Envoy's.
func checkRequest(method, path, host string, headers map[string]string, peer *corev3.Address, ext map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: peer},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: host, Headers: headers, Scheme: "https", Protocol: "HTTP/2",
		}},
		ContextExtensions: ext,
	}}
}

func socketAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func TestRequestFromCheck(t *testing.T) {
	hdrs := map[string]string{":method": "POST", "x-api-key": "k", "x-forwarded-for": "198.51.100.7"}
	pipe := &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock"}}}
	rawMap := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/status", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "X-API-Key", RawValue: []byte("raw")},
			{Key: "accept", Value: "a"},
			{Key: "Accept", RawValue: []byte("b")},
			nil,
		}}},
	}}}
	tests := []struct {
		name string
		req  *authv3.CheckRequest
		want policy.Request
	}{
		{"nil request", nil, policy.Request{}},
		{"no attributes", &authv3.CheckRequest{}, policy.Request{}},
		{"no http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, policy.Request{}},
		{"full", checkRequest("POST", "/transactions?x=1", "api.example.com:443", hdrs, socketAddr("10.0.0.1", 5555),
			map[string]string{"api": "payments", "stage": "prod", "other": "x"}),
			policy.Request{Method: "POST", Path: "/transactions?x=1", Host: "api.example.com:443", Headers: hdrs,
				Peer: "10.0.0.1", API: "payments", Stage: "prod"}},
		{"ipv6 peer, stage only", checkRequest("GET", "/status", "", nil, socketAddr("2001:db8::1", 1), map[string]string{"stage": "payments/prod"}),
			policy.Request{Method: "GET", Path: "/status", Peer: "2001:db8::1", Stage: "payments/prod"}},
		{"pipe peer", checkRequest("GET", "/status", "h", nil, pipe, nil),
			policy.Request{Method: "GET", Path: "/status", Host: "h"}},
		{"empty address", checkRequest("GET", "/status", "h", nil, &corev3.Address{}, nil),
			policy.Request{Method: "GET", Path: "/status", Host: "h"}},
		{"raw header map", rawMap,
			policy.Request{Method: "GET", Path: "/status", Headers: map[string]string{"x-api-key": "raw", "accept": "a,b"}}},
	}
	for i, tt := range tests {
		// Start from a dirty Request: every field must be overwritten.
		got := policy.Request{Method: "X", Path: "/x", Host: "x", Headers: map[string]string{"x": "x"}, Peer: "x", API: "x", Stage: "x"}
		envoy.RequestFromCheck(tt.req, &got)
		if got.Method != tt.want.Method || got.Path != tt.want.Path || got.Host != tt.want.Host || got.Peer != tt.want.Peer ||
			got.API != tt.want.API || got.Stage != tt.want.Stage || !maps.Equal(got.Headers, tt.want.Headers) {
			t.Errorf("step %d (%s): got %+v, want %+v", i, tt.name, got, tt.want)
		}
	}
}

// TestRequestFromCheckSharesHeaders guards the no-copy contract: the
// request's header map is Envoy's own.
func TestRequestFromCheckSharesHeaders(t *testing.T) {
	hdrs := map[string]string{"x-api-key": "k"}
	req := checkRequest("GET", "/status", "h", hdrs, socketAddr("10.0.0.1", 1), map[string]string{"api": "payments"})
	var r policy.Request
	envoy.RequestFromCheck(req, &r)
	if got, want := reflect.ValueOf(r.Headers).UnsafePointer(), reflect.ValueOf(hdrs).UnsafePointer(); got != want {
		t.Errorf("step 0: got map %p, want the request's own %p", got, want)
	}
	if got := testing.AllocsPerRun(100, func() { envoy.RequestFromCheck(req, &r) }); got != 0 {
		t.Errorf("step 1: got %v allocations, want 0", got)
	}
}

// fixedDecider answers every request with d and remembers the last request.
type fixedDecider struct {
	d    policy.Decision
	last policy.Request
}

func (f *fixedDecider) Decide(_ context.Context, r *policy.Request) policy.Decision {
	f.last = *r
	return f.d
}

// TestAuthzServerCheckNeverErrs guards the contract that a bad request is a
// 400 answer, not an RPC error.
func TestAuthzServerCheckNeverErrs(t *testing.T) {
	f := &fixedDecider{d: denied(400, policy.ReasonInvalid, policy.BodyBadRequest, policy.HeadersIETF, false)}
	s := &envoy.AuthzServer{Decider: f}
	for i, req := range []*authv3.CheckRequest{nil, {}, checkRequest("", "", "", nil, nil, nil)} {
		resp, err := s.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("step %d: got error %v, want none", i, err)
		}
		if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 400 {
			t.Errorf("step %d: got status %v, want 400", i, got)
		}
		if f.last.Method != "" || f.last.Path != "" || f.last.Peer != "" {
			t.Errorf("step %d: got request %+v, want an empty one", i, f.last)
		}
	}
}
