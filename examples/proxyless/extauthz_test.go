package proxyless_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// grpcCheckRequest is the CheckRequest the payments example's Envoy
// (examples/payments/envoy.yaml: encode_raw_headers, the context
// extensions api and stage) sends for a gRPC call of method from a client
// at source, with key in x-api-key when it is not empty: an HTTP/2 POST of
// content-type application/grpc, the headers in header_map with raw
// values, the pseudo-headers among them.
func grpcCheckRequest(method, key, source string) *authv3.CheckRequest {
	hs := [][2]string{{":authority", "api.example.com"}, {":method", "POST"}, {":path", method}, {":scheme", "http"},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "grpc-go/1.85.0"},
		{"x-forwarded-proto", "http"}, {"x-request-id", "5f0c6e0e-6c51-4c8e-9d3b-000000000015"}}
	if key != "" {
		hs = append(hs, [2]string{"x-api-key", key})
	}
	hm := &corev3.HeaderMap{}
	for _, h := range hs {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "14523077361148670015", Method: "POST", HeaderMap: hm, Path: method, Host: "api.example.com",
			Scheme: "http", Protocol: "HTTP/2"}},
		ContextExtensions: map[string]string{"api": "payments", "stage": "prod"},
	}}
}

// envoyGRPCLocalReply is what Envoy answers a gRPC call that ext_authz
// denied with resp: a trailers-only response, as a header list. It models
// Envoy's source (envoyproxy/envoy; commits as the search index stores the
// files):
//
//   - source/extensions/filters/common/ext_authz/ext_authz_grpc_impl.cc
//     (0532e028), GrpcClientImpl::onSuccess, lines 127-175: status.code 0
//     allows; any other code denies (the code itself only goes to the
//     logs), with the HTTP status of denied_response.status, 403 when it is
//     unset, its headers (their value field) and its body.
//   - source/extensions/filters/http/ext_authz/ext_authz.cc (008b93a2),
//     Filter::onComplete, case CheckStatus::Denied: sendLocalReply with that
//     status and body, a modify_headers function that first removes each
//     denied header's name, then adds each header, and no gRPC status
//     (absl::nullopt); the newest stored version does the same.
//   - source/common/http/filter_manager.cc, sendLocalReply and
//     sendLocalReplyViaFilterChain: a request is gRPC when its content-type
//     is application/grpc or application/grpc+... (grpc/common.cc,
//     Common::hasGrpcContentType); route headers, then modify_headers.
//   - source/common/http/utility.cc (0075dc33), Utility::prepareLocalReply:
//     modify_headers runs first; for a gRPC request :status becomes 200 and
//     content-type application/grpc; grpc-status is set only when no header
//     set it, from grpc/status.cc (02da7907) httpToGrpcStatus, lines 9-29;
//     a non-empty body becomes grpc-message, percent-encoded
//     (PercentEncoding::encode), replacing any grpc-message header;
//     content-length goes. Utility::encodeLocalReply sends a gRPC reply as
//     headers only, with end of stream.
func envoyGRPCLocalReply(resp *authv3.CheckResponse) [][2]string {
	code := int(resp.GetDeniedResponse().GetStatus().GetCode())
	if code == 0 {
		code = http.StatusForbidden
	}
	h := [][2]string{{":status", strconv.Itoa(code)}}
	for _, o := range resp.GetDeniedResponse().GetHeaders() {
		h = slices.DeleteFunc(h, func(kv [2]string) bool { return kv[0] == o.GetHeader().GetKey() })
	}
	for _, o := range resp.GetDeniedResponse().GetHeaders() {
		h = append(h, [2]string{o.GetHeader().GetKey(), o.GetHeader().GetValue()})
	}
	set := func(k, v string) {
		h = slices.DeleteFunc(h, func(kv [2]string) bool { return kv[0] == k })
		h = append(h, [2]string{k, v})
	}
	set(":status", "200")
	set("content-type", "application/grpc")
	if !slices.ContainsFunc(h, func(kv [2]string) bool { return kv[0] == "grpc-status" }) {
		set("grpc-status", strconv.Itoa(int(httpToGRPCStatus(code))))
	}
	if body := resp.GetDeniedResponse().GetBody(); body != "" {
		set("grpc-message", percentEncode(body))
	}
	h = slices.DeleteFunc(h, func(kv [2]string) bool { return kv[0] == "content-length" })
	return h
}

// httpToGRPCStatus is Envoy's Grpc::Utility::httpToGrpcStatus, the
// mapping of gRPC's doc/http-grpc-status-mapping.md.
func httpToGRPCStatus(code int) codes.Code {
	switch code {
	case 400:
		return codes.Internal
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.Unimplemented
	case 429, 502, 503, 504:
		return codes.Unavailable
	}
	return codes.Unknown
}

// percentEncode is Envoy's PercentEncoding::encode with its default
// reserved set, "%".
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// replay serves reply over HTTP/2 to a real gRPC client (grpc-go) calling
// method, and returns what the client makes of it: the call's status and
// its trailer metadata (a trailers-only answer has no header).
func replay(t *testing.T, reply [][2]string, method string) (*status.Status, metadata.MD) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Protocols: new(http.Protocols), ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			status := http.StatusOK
			for _, kv := range reply {
				if kv[0] == ":status" {
					status, _ = strconv.Atoi(kv[1])
					continue
				}
				w.Header().Add(kv[0], kv[1])
			}
			// No body: net/http ends the stream with the headers, the
			// trailers-only form Envoy sends.
			w.WriteHeader(status)
		})}
	srv.Protocols.SetUnencryptedHTTP2(true)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	defer func() {
		srv.Close()
		if err := <-errc; err != http.ErrServerClosed {
			t.Errorf("replay server: got %v, want %v", err, http.ErrServerClosed)
		}
	}()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var trailer metadata.MD
	err = cc.Invoke(ctx, method, &structpb.Struct{}, &structpb.Struct{}, grpc.Trailer(&trailer))
	return status.Convert(err), trailer
}

// envoyDenial is a denial tollgate answered and what a gRPC caller behind
// Envoy sees of it.
type envoyDenial struct {
	name    string
	resp    *authv3.CheckResponse
	status  int      // denied_response.status
	headers []string // denied_response.headers, "key: value"
	body    string
	client  string   // what the gRPC client sees
	trailer []string // its trailer metadata of tollgate's keys, "key: value", sorted
	readme  bool     // README.md shows what the client sees
}

// check checks the CheckResponse fields Envoy reads, then replays Envoy's
// local reply to a gRPC client and checks what it sees, and that readme
// shows it when it should.
func (c envoyDenial) check(t *testing.T, readme string) {
	t.Helper()
	d := c.resp.GetDeniedResponse()
	if c.resp.GetStatus().GetCode() == 0 || d == nil {
		t.Fatalf("got %v, want a denial", c.resp)
	}
	var hs []string
	for _, o := range d.GetHeaders() {
		hs = append(hs, o.GetHeader().GetKey()+": "+o.GetHeader().GetValue())
	}
	if got := int(d.GetStatus().GetCode()); got != c.status || d.GetBody() != c.body || !slices.Equal(hs, c.headers) {
		t.Errorf("denied_response: got %d %q %q\nwant %d %q %q", got, hs, d.GetBody(), c.status, c.headers, c.body)
	}
	st, trailer := replay(t, envoyGRPCLocalReply(c.resp), partnerMethod)
	if got := st.Err().Error(); got != c.client {
		t.Errorf("the gRPC client: got %s, want %s", got, c.client)
	}
	if c.readme && !strings.Contains(readme, "`"+c.client+"`") {
		t.Errorf("README.md does not show `%s`", c.client)
	}
	if got := strings.FieldsFunc(show(trailer, ""), func(r rune) bool { return r == '\n' }); !slices.Equal(got, c.trailer) {
		t.Errorf("the gRPC client's trailer: got %q, want %q", got, c.trailer)
	}
}

// TestExtAuthzGRPCCaller sends tollgate, over real gRPC, the CheckRequests
// the payments example's Envoy sends for gRPC calls (grpc-go has no
// ext_authz client), checks the CheckResponse fields Envoy reads, and
// replays Envoy's local reply for each denial (envoyGRPCLocalReply) to a
// real grpc-go client: what a gRPC caller behind Envoy sees. tollgate's
// grpc-status header keeps Envoy from mapping the HTTP status (429 would be
// UNAVAILABLE), and its body, the message alone, is the caller's message:
// RESOURCE_EXHAUSTED "Too Many Requests".
func TestExtAuthzGRPCCaller(t *testing.T) {
	g := startTollgate(t, paymentsPolicy, newClock().Now)
	cc, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	authz := authv3.NewAuthorizationClient(cc)
	check := func(req *authv3.CheckRequest) *authv3.CheckResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := authz.Check(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	const client = "198.51.100.7"
	for i := range 20 {
		if resp := check(grpcCheckRequest(partnerMethod, freeKey, client)); resp.GetStatus().GetCode() != 0 {
			t.Fatalf("free key, call %d: got %v, want status OK", i+1, resp)
		}
	}
	limited := check(grpcCheckRequest(partnerMethod, freeKey, client))
	// The rate-limit headers of call 21 (no token left in the plan's bucket).
	const (
		policyHeader = `ratelimit-policy: "plan";q=20;w=2, "quota";q=1000;w=86400, "route";q=2000;w=2, "account";q=5000;w=1, "stage";q=10000;w=2`
		rateHeader   = `ratelimit: "plan";r=0;t=2, "quota";r=980;t=43200, "route";r=1980;t=1, "account";r=4980;t=1, "stage";r=9980;t=1`
	)
	for _, c := range []envoyDenial{
		{"free key, call 21", limited, 429,
			[]string{"grpc-status: 8", "content-type: application/json", "x-tollgate-reason: throttle:plan", "retry-after: 1", policyHeader, rateHeader},
			"Too Many Requests",
			"rpc error: code = ResourceExhausted desc = Too Many Requests",
			[]string{rateHeader, policyHeader, "retry-after: 1", "x-tollgate-reason: throttle:plan"}, true},
		{"no key", check(grpcCheckRequest(partnerMethod, "", client)), 403,
			[]string{"grpc-status: 7", "content-type: application/json"},
			"Forbidden",
			"rpc error: code = PermissionDenied desc = Forbidden", nil, false},
		{"free key, blocklisted address", check(grpcCheckRequest(partnerMethod, freeKey, "203.0.113.7")), 403,
			[]string{"grpc-status: 7", "content-type: application/json", "x-tollgate-reason: waf:blocked-networks"},
			"Forbidden",
			"rpc error: code = PermissionDenied desc = Forbidden", []string{"x-tollgate-reason: waf:blocked-networks"}, false},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t, readme) })
	}
}
