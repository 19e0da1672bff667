package envoy_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
)

// serve starts AuthzServer with d on a loopback listener and returns a
// client connected to it, both stopped at the end of the test.
func serve(t *testing.T, d envoy.Decider) authv3.AuthorizationClient {
	t.Helper()
	return authv3.NewAuthorizationClient(serveGRPC(t, func(srv *grpc.Server) {
		authv3.RegisterAuthorizationServer(srv, &envoy.AuthzServer{Decider: d})
	}))
}

// serveGRPC starts a gRPC server with what register adds on a loopback
// listener and returns a connection to it, both stopped at the end of the
// test.
func serveGRPC(t testing.TB, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// outcome is what a client sees of an answer: the HTTP status, the reason
// header and the Retry-After header.
type outcome struct {
	status     int
	reason     string
	retryAfter string
}

func outcomeOf(resp *authv3.CheckResponse) outcome {
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return outcome{status: 200}
	}
	o := outcome{status: int(resp.GetDeniedResponse().GetStatus().GetCode())}
	if o.status == 0 {
		o.status = 403 // Envoy's default
	}
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		switch h.GetHeader().GetKey() {
		case envoy.HeaderReason:
			o.reason = h.GetHeader().GetValue()
		case envoy.HeaderRetryAfter:
			o.retryAfter = h.GetHeader().GetValue()
		}
	}
	return o
}

// TestCheckGRPCGolden sends every golden request over gRPC and expects the
// golden response: every 403, 429 and 400 reason and the headers of every
// mode, as Envoy would receive them.
func TestCheckGRPCGolden(t *testing.T) {
	if *update {
		t.Skip("-update rewrites the goldens in TestCheckGolden")
	}
	for name, c := range goldenCases {
		t.Run(name, func(t *testing.T) {
			client := serve(t, newEngine(t, c.policy, c.edits...))
			req := readCheckRequest(t, filepath.Join(goldenDir, name+".request.json"))
			var resp *authv3.CheckResponse
			for i := 0; i <= c.warmup; i++ {
				var err error
				if resp, err = client.Check(context.Background(), req); err != nil {
					t.Fatalf("step %d: got error %v, want none", i, err)
				}
			}
			want := readCheckResponse(t, filepath.Join(goldenDir, name+".response.json"))
			if !proto.Equal(resp, want) {
				t.Errorf("step %d: got\n%s\nwant\n%s", c.warmup, formatResponse(t, resp), formatResponse(t, want))
			}
		})
	}
}

// TestCheckGRPCClock follows the limits of testdata/tight.yaml over fixed
// instants: the Retry-After a 429 announces is when the request passes.
func TestCheckGRPCClock(t *testing.T) {
	e := newEngine(t, tightPolicy)
	client := serve(t, e)
	tiny := checkRequest("POST", "/orders", "shop.example.com", map[string]string{"x-api-key": "tg_test_tiny_000000000000000001"},
		socketAddr("198.51.100.7", 40000), nil)
	quota := checkRequest("POST", "/orders", "shop.example.com", map[string]string{"x-api-key": "tg_test_quota_00000000000000001"},
		socketAddr("198.51.100.7", 40000), nil)
	route := checkRequest("GET", "/items/7", "shop.example.com", nil, socketAddr("198.51.100.7", 40000), nil)
	// Groups in time order, so that no bucket sees the clock go back.
	tb := t0.Add(10 * time.Second)   // tiny key
	tq := t0.Add(2000 * time.Second) // quota key: 41200 s before midnight
	midnight := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at   time.Time
		req  *authv3.CheckRequest
		n    int // sent n times; the last answer is checked
		want outcome
	}{
		{t0, route, 2, outcome{status: 200}},
		{t0, route, 1, outcome{429, "throttle:route", "1"}},
		{t0.Add(500 * time.Millisecond), route, 1, outcome{429, "throttle:route", "1"}},
		{t0.Add(time.Second), route, 1, outcome{status: 200}},
		{t0.Add(time.Second), route, 1, outcome{429, "throttle:route", "1"}},

		{tb, tiny, 20, outcome{status: 200}},
		{tb, tiny, 1, outcome{429, "throttle:plan", "1000"}},
		{tb.Add(999 * time.Second), tiny, 1, outcome{429, "throttle:plan", "1"}},
		{tb.Add(999*time.Second + 999*time.Millisecond), tiny, 1, outcome{429, "throttle:plan", "1"}},
		{tb.Add(1000 * time.Second), tiny, 1, outcome{status: 200}},
		{tb.Add(1000 * time.Second), tiny, 1, outcome{429, "throttle:plan", "1000"}},

		{tq, quota, 2, outcome{status: 200}},
		{tq, quota, 1, outcome{429, "quota", "41200"}},
		{midnight.Add(-time.Second), quota, 1, outcome{429, "quota", "1"}},
		{midnight, quota, 2, outcome{status: 200}},
		{midnight, quota, 1, outcome{429, "quota", "86400"}},
	}
	for i, s := range steps {
		e.set(s.at)
		var got outcome
		for range s.n {
			resp, err := client.Check(context.Background(), s.req)
			if err != nil {
				t.Fatalf("step %d: got error %v, want none", i, err)
			}
			got = outcomeOf(resp)
		}
		if got != s.want {
			t.Errorf("step %d: got %+v, want %+v", i, got, s.want)
		}
	}
}

// TestCheckGRPCConcurrent sends 40 requests at once with one key of a plan
// with burst 20 at a fixed instant: exactly 20 pass, the rest are
// throttle:plan 429s.
func TestCheckGRPCConcurrent(t *testing.T) {
	client := serve(t, newEngine(t, tightPolicy))
	req := checkRequest("POST", "/orders", "shop.example.com", map[string]string{"x-api-key": "tg_test_tiny_000000000000000001"},
		socketAddr("198.51.100.7", 40000), nil)
	const n = 40
	got := make([]outcome, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := client.Check(context.Background(), req)
			errs[i] = err
			if err == nil {
				got[i] = outcomeOf(resp)
			}
		})
	}
	close(start)
	wg.Wait()
	counts := map[outcome]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("step %d: got error %v, want none", i, errs[i])
		}
		counts[got[i]]++
	}
	want := map[outcome]int{{status: 200}: 20, {429, "throttle:plan", "1000"}: 20}
	if len(counts) != len(want) || counts[outcome{status: 200}] != 20 || counts[outcome{429, "throttle:plan", "1000"}] != 20 {
		t.Errorf("step 0: got %v, want %v", counts, want)
	}
}

// headerDecider allows every request and keeps the value of one header of
// the last one.
type headerDecider struct {
	name string
	mu   sync.Mutex
	got  string
}

func (d *headerDecider) Decide(_ context.Context, r *policy.Request) policy.Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = r.Headers[d.name]
	return policy.Decision{Verdict: policy.Allow, Status: 200}
}

// TestCheckNonUTF8Header: a header value that is not UTF-8 cannot travel
// in the headers map (gRPC refuses the string, so Envoy would answer its
// status_on_error), and reaches the decision whole in header_map's
// raw_value, as Envoy sends it with encode_raw_headers: true.
func TestCheckNonUTF8Header(t *testing.T) {
	d := &headerDecider{name: "x-api-key"}
	client := serve(t, d)
	value := "tg_\xff\xfe"
	req := func(h *authv3.AttributeContext_HttpRequest) *authv3.CheckRequest {
		h.Method, h.Path = "GET", "/status"
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Check(ctx, req(&authv3.AttributeContext_HttpRequest{Headers: map[string]string{"x-api-key": value}})); err == nil {
		t.Fatal("headers map: the call went through, want gRPC to refuse a string that is not UTF-8")
	}
	raw := req(&authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-api-key", RawValue: []byte(value)}}}})
	if _, err := client.Check(ctx, raw); err != nil {
		t.Fatalf("header_map: %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.got != value {
		t.Errorf("header_map: the decision saw %q, want %q", d.got, value)
	}
}
