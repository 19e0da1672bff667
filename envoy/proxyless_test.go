package envoy_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
)

// proxylessRequest is the request_headers message grpc-go's ext_proc client
// (gRFC A93, v1.85.0) sends for an RPC: no pseudo-headers and no
// content-type, the metadata as headers in raw_value, and method, path and
// host as the request.* attributes (request_attributes of the filter); no
// source.address. Empty attributes are left out.
func proxylessRequest(method, path, host string, headers ...string) *extprocv3.ProcessingRequest {
	var hs []*corev3.HeaderValue
	for i := 0; i+1 < len(headers); i += 2 {
		hs = append(hs, &corev3.HeaderValue{Key: headers[i], RawValue: []byte(headers[i+1])})
	}
	attrs := map[string]*structpb.Value{}
	for k, v := range map[string]string{envoy.AttributeMethod: method, envoy.AttributePath: path, envoy.AttributeHost: host} {
		if v != "" {
			attrs[k] = structpb.NewStringValue(v)
		}
	}
	return &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}}},
		Attributes: map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: attrs}},
	}
}

// withAttr returns msg with the attribute name set to v in the ext_proc
// namespace (created when msg has none).
func withAttr(msg *extprocv3.ProcessingRequest, name, v string) *extprocv3.ProcessingRequest {
	if msg.Attributes == nil {
		msg.Attributes = map[string]*structpb.Struct{}
	}
	ns := msg.Attributes["envoy.filters.http.ext_proc"]
	if ns == nil {
		ns = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		msg.Attributes["envoy.filters.http.ext_proc"] = ns
	}
	ns.Fields[name] = structpb.NewStringValue(v)
	return msg
}

// envoyRequest is a request_headers message as Envoy sends it: the
// pseudo-headers, then the other headers, all in raw_value, and the
// source.address attribute.
func envoyRequest(method, path, host string, headers ...string) *extprocv3.ProcessingRequest {
	msg := proxylessRequest("", "", "", append([]string{":method", method, ":path", path, ":authority", host}, headers...)...)
	return withAttr(msg, envoy.AttributeSource, "198.51.100.7:1")
}

// TestRequestFromProcessAttributes: method, path and host come from the
// pseudo-headers, else from the request.* attributes; the client address
// from source.address, else from the stream's gRPC peer.
func TestRequestFromProcessAttributes(t *testing.T) {
	grpcPeer := &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4444}}
	cases := []struct {
		name string
		msg  *extprocv3.ProcessingRequest
		peer *peer.Peer
		want policy.Request // Headers: compared by their count
	}{
		{"proxyless: attributes and the gRPC peer",
			proxylessRequest("POST", "/shop.Orders/Create", "shop.example.com", "x-api-key", "k1"), grpcPeer,
			policy.Request{Method: "POST", Path: "/shop.Orders/Create", Host: "shop.example.com", Peer: "10.1.2.3:4444"}},
		{"proxyless without a peer: no address",
			proxylessRequest("POST", "/shop.Orders/Create", "shop.example.com"), nil,
			policy.Request{Method: "POST", Path: "/shop.Orders/Create", Host: "shop.example.com"}},
		{"source.address before the gRPC peer",
			withAttr(proxylessRequest("POST", "/a", "h"), envoy.AttributeSource, "198.51.100.7:1"), grpcPeer,
			policy.Request{Method: "POST", Path: "/a", Host: "h", Peer: "198.51.100.7:1"}},
		{"pseudo-headers before the attributes",
			withAttr(withAttr(envoyRequest("GET", "/items/7", "shop.example.com"), envoy.AttributePath, "/other"), envoy.AttributeMethod, "POST"), grpcPeer,
			policy.Request{Method: "GET", Path: "/items/7", Host: "shop.example.com", Peer: "198.51.100.7:1"}},
		{"Envoy without source.address: no address (the peer is Envoy)",
			func() *extprocv3.ProcessingRequest {
				m := envoyRequest("GET", "/items/7", "shop.example.com")
				m.Attributes = nil
				return m
			}(), grpcPeer,
			policy.Request{Method: "GET", Path: "/items/7", Host: "shop.example.com"}},
		{"host header before the host attribute",
			withAttr(proxylessRequest("POST", "/a", "", "host", "h.example.com"), envoy.AttributeHost, "other"), nil,
			policy.Request{Method: "POST", Path: "/a", Host: "h.example.com"}},
		{"attributes fill only what is missing",
			proxylessRequest("POST", "/a", "attr.example.com", ":path", "/b"), nil,
			policy.Request{Method: "POST", Path: "/b", Host: "attr.example.com"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			if c.peer != nil {
				ctx = peer.NewContext(ctx, c.peer)
			}
			var got policy.Request
			envoy.RequestFromProcess(ctx, c.msg, &got)
			n := len(got.Headers)
			got.Headers = nil
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
			if want := len(c.msg.GetRequestHeaders().GetHeaders().GetHeaders()); n != want {
				t.Errorf("got %d headers, want %d", n, want)
			}
		})
	}
}

// procAnswer is what one ext_proc stream answered to a request: the HTTP status,
// the gRPC status and details of a denial (grpc -1: none), and every header
// mutation as "field name: value" (field value or raw).
type procAnswer struct {
	status  int
	grpc    int
	details string
	headers []string
}

func mutationStrings(hs []*corev3.HeaderValueOption) []string {
	var out []string
	for _, h := range hs {
		switch v := h.GetHeader(); {
		case v.GetValue() != "" && len(v.GetRawValue()) > 0:
			out = append(out, "both "+v.GetKey())
		case v.GetValue() != "":
			out = append(out, "value "+v.GetKey()+": "+v.GetValue())
		default:
			out = append(out, "raw "+v.GetKey()+": "+string(v.GetRawValue()))
		}
	}
	slices.Sort(out)
	return out
}

// streamAnswer runs msg over a stream and, when it is allowed, the response
// headers too.
func streamAnswer(t *testing.T, client extprocv3.ExternalProcessorClient, msg *extprocv3.ProcessingRequest) procAnswer {
	t.Helper()
	s := open(t, client, nil)
	defer s.cancel()
	resp := s.send(msg)
	if err := resp.ValidateAll(); err != nil {
		t.Errorf("got an invalid answer: %v", err)
	}
	if im := resp.GetImmediateResponse(); im != nil {
		a := procAnswer{status: int(im.GetStatus().GetCode()), grpc: -1, details: im.GetDetails(), headers: mutationStrings(im.GetHeaders().GetSetHeaders())}
		if g := im.GetGrpcStatus(); g != nil {
			a.grpc = int(g.GetStatus())
		}
		return a
	}
	hs := mutationStrings(resp.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders())
	resp = s.send(responseHeaders)
	hs = append(hs, mutationStrings(resp.GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders())...)
	return procAnswer{status: 200, grpc: -1, headers: hs}
}

// TestProcessGRPCCallers: over real gRPC, a proxyless client's request (only
// attributes, the client address from the stream's peer) is decided like
// Envoy's; a gRPC request's denial carries grpc_status and the body's
// message in details, an HTTP request's does not; header values go in value
// for a proxyless client (grpc-go reads value) and in raw_value for Envoy
// (Envoy reads raw_value), never both.
func TestProcessGRPCCallers(t *testing.T) {
	const key = "tg_test_tiny_000000000000000001"
	grpcCT := []string{"content-type", "application/grpc+proto"}
	cases := []struct {
		name string
		msg  *extprocv3.ProcessingRequest
		want procAnswer
	}{
		{"proxyless allowed: headers in value",
			proxylessRequest("POST", "/orders", "shop.example.com", "x-api-key", key),
			procAnswer{status: 200, grpc: -1, headers: []string{
				"value x-tollgate-customer: initech", "value x-tollgate-key-id: tiny-1", "value x-tollgate-plan: tiny",
				`value ratelimit-policy: "plan";q=20;w=20000, "stage";q=100;w=1, "account";q=5000;w=1`,
				`value ratelimit: "plan";r=19;t=1000, "stage";r=99;t=1, "account";r=4999;t=1`}}},
		{"proxyless unknown route: PERMISSION_DENIED",
			proxylessRequest("POST", "/shop.Nope/Call", "shop.example.com"),
			procAnswer{status: 403, grpc: int(codes.PermissionDenied), details: "Missing Authentication Token", headers: []string{
				"value content-type: application/json", "value x-tollgate-reason: route:unknown"}}},
		{"proxyless without a path: INVALID_ARGUMENT",
			proxylessRequest("POST", "", "shop.example.com"),
			procAnswer{status: 400, grpc: int(codes.InvalidArgument), details: "Bad Request", headers: []string{
				"value content-type: application/json", "value x-tollgate-reason: request:invalid"}}},
		{"Envoy gRPC denial: grpc_status, raw_value",
			envoyRequest("POST", "/shop.Nope/Call", "shop.example.com", grpcCT...),
			procAnswer{status: 403, grpc: int(codes.PermissionDenied), details: "Missing Authentication Token", headers: []string{
				"raw content-type: application/json", "raw x-tollgate-reason: route:unknown"}}},
		{"Envoy HTTP denial: no grpc_status",
			envoyRequest("POST", "/nope", "shop.example.com"),
			procAnswer{status: 403, grpc: -1, details: "tollgate_route_unknown", headers: []string{
				"raw content-type: application/json", "raw x-tollgate-reason: route:unknown"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			client := serveProc(t, newEngine(t, tightPolicy))
			if got := streamAnswer(t, client, c.msg); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// TestProcessGRPCRateLimited: a proxyless client's requests beyond the
// route's burst of 2 get 429 as RESOURCE_EXHAUSTED "Too Many Requests", with
// Retry-After and the rate-limit headers in value.
func TestProcessGRPCRateLimited(t *testing.T) {
	client := serveProc(t, newEngine(t, tightPolicy))
	msg := proxylessRequest("GET", "/items/7", "shop.example.com")
	for i := range 2 {
		if got := streamAnswer(t, client, msg); got.status != 200 {
			t.Fatalf("request %d: got %+v, want 200", i, got)
		}
	}
	got := streamAnswer(t, client, msg)
	want := procAnswer{status: 429, grpc: int(codes.ResourceExhausted), details: "Too Many Requests", headers: []string{
		"value content-type: application/json",
		`value ratelimit-policy: "route";q=2;w=2, "stage";q=100;w=1, "account";q=5000;w=1`,
		`value ratelimit: "route";r=0;t=2, "stage";r=98;t=1, "account";r=4998;t=1`,
		"value retry-after: 1",
		"value x-tollgate-reason: throttle:route"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
