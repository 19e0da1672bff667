package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const examplePolicy = "../examples/payments/policy.yaml"

// start serves the example policy on addr and returns a connected client
// and a stop function that stops the server and waits for Serve to return.
func start(t *testing.T, addr string) (*grpc.ClientConn, *Server, func() error) {
	t.Helper()
	s, err := New(Config{PolicyFile: examplePolicy, GRPCAddr: addr, Store: "memory:", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	target := s.Addr().String()
	if s.Addr().Network() == "unix" {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-errc
		})
		return serveErr
	}
	// The client outlives the server, so that calls made after a stop see
	// the server gone (Unavailable), not their own connection closing.
	t.Cleanup(func() { stop(); conn.Close() })
	return conn, s, stop
}

func check(method, path, ip string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "api.example.com", Headers: headers}},
	}}
}

func TestServeCheckAndHealthOverTCP(t *testing.T) {
	conn, _, stop := start(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: got %v %v, want SERVING", hc, err)
	}
	c := authv3.NewAuthorizationClient(conn)
	cases := []struct {
		name   string
		req    *authv3.CheckRequest
		code   codes.Code
		status int32
	}{
		{"allowed", check("POST", "/transactions", "198.51.100.7", nil), codes.OK, 0},
		{"blocklisted", check("POST", "/transactions", "203.0.113.5", nil), codes.PermissionDenied, 403},
		{"missing key", check("POST", "/partners/1/transactions", "198.51.100.7", nil), codes.PermissionDenied, 403},
		{"keyed", check("POST", "/partners/1/transactions", "198.51.100.7", map[string]string{"x-api-key": "tg_demo_pro_00000000000000001"}), codes.OK, 0},
		{"unreadable", &authv3.CheckRequest{}, codes.InvalidArgument, 400},
	}
	for _, tc := range cases {
		resp, err := c.Check(ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if codes.Code(resp.GetStatus().GetCode()) != tc.code || int32(resp.GetDeniedResponse().GetStatus().GetCode()) != tc.status {
			t.Errorf("%s: got %v / %d, want %v / %d", tc.name, codes.Code(resp.GetStatus().GetCode()), resp.GetDeniedResponse().GetStatus().GetCode(), tc.code, tc.status)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("serve returned %v, want nil after a graceful stop", err)
	}
}

func TestServeOverUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "tollgate.sock")
	conn, _, stop := start(t, "unix:"+sock)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, check("GET", "/status", "198.51.100.7", nil))
	if err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("got %v %v, want OK", resp, err)
	}
	// A sidecar Envoy of the pod's group may connect.
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: got %v, %v, want 0660", fi.Mode(), err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestStopUnderLoad: a stop while calls are being made returns nil from
// Serve, and every call ends with an answer or Unavailable, never a hang.
func TestStopUnderLoad(t *testing.T) {
	conn, _, stop := start(t, "127.0.0.1:0")
	c := authv3.NewAuthorizationClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, check("GET", "/status", "198.51.100.7", nil)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var answered atomic.Int64
	for range 20 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := c.Check(ctx, check("GET", "/status", "198.51.100.7", nil))
				if err != nil {
					if code := status.Code(err); code != codes.Unavailable {
						t.Errorf("call: got %v, want an answer or Unavailable", err)
					}
					return
				}
				answered.Add(1)
			}
		})
	}
	for answered.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("calls hung until the test deadline")
	}
}

func TestNewReportsBadInput(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"missing policy", Config{PolicyFile: "nope.yaml", GRPCAddr: "127.0.0.1:0", Store: "memory:", AdminAddr: "-"}},
		{"bad store", Config{PolicyFile: examplePolicy, GRPCAddr: "127.0.0.1:0", Store: "carrier-pigeon:", AdminAddr: "-"}},
		{"bad address", Config{PolicyFile: examplePolicy, GRPCAddr: "127.0.0.1:99999", Store: "memory:", AdminAddr: "-"}},
		{"bad admin address", Config{PolicyFile: examplePolicy, GRPCAddr: "127.0.0.1:0", Store: "memory:", AdminAddr: "127.0.0.1:99999"}},
	}
	for _, c := range cases {
		if _, err := New(c.cfg); err == nil {
			t.Errorf("%s: got no error", c.name)
		}
	}
}

// TestPprofAndNoop: --pprof serves the profiles on the admin address (and
// only then); --noop allows what the policy would deny.
func TestPprofAndNoop(t *testing.T) {
	off := serve(t, testPolicy(t), nil)
	off.callWith("GET", "/debug/pprof/", "", nil).want(t, "pprof off", 404, "no such path")
	on := serve(t, testPolicy(t), func(c *Config) { c.Pprof, c.Noop = true, true })
	if a := on.callWith("GET", "/debug/pprof/", "", nil); a.status != 200 || !strings.Contains(a.raw, "goroutine") {
		t.Fatalf("pprof on: got %d %.100s, want the index", a.status, a.raw)
	}
	if d := on.check("tg_not_a_key_at_all_00000000"); d.status != 200 {
		t.Fatalf("noop: got %d for an unknown key, want 200", d.status)
	}
	if d := off.check("tg_not_a_key_at_all_00000000"); d.status != 403 {
		t.Fatalf("not noop: got %d for an unknown key, want 403", d.status)
	}
}

// TestDenialLogLine guards issue 13's finding that a denial's debug line
// did not say who asked for what, and that request:invalid did not say what
// was invalid. The path is logged as matched: never its query string.
func TestDenialLogLine(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	steps := []struct {
		edit func(*authv3.AttributeContext_HttpRequest, *corev3.SocketAddress)
		want []string
	}{
		{func(r *authv3.AttributeContext_HttpRequest, _ *corev3.SocketAddress) {
			r.Path = "/partners/p-1/transactions/?token=s3cret"
		}, []string{`"reason":"key:missing","method":"POST","path":"/partners/p-1/transactions","ip":"198.51.100.7"`}},
		{func(_ *authv3.AttributeContext_HttpRequest, a *corev3.SocketAddress) { a.Address = "bogus" },
			[]string{`"reason":"request:invalid","method":"POST","path":"/partners/p-1/transactions","invalid":"client address \"bogus\" is not an IP address"`}},
		{func(r *authv3.AttributeContext_HttpRequest, _ *corev3.SocketAddress) { r.Path = "/a%2Fb?token=s3cret" },
			[]string{`"reason":"request:invalid","method":"POST","path":"","invalid":"path \"/a%2Fb\" holds an escaped slash (%2F)"`}},
		{func(r *authv3.AttributeContext_HttpRequest, _ *corev3.SocketAddress) { r.Method = "" },
			[]string{`"invalid":"no method"`}},
		{func(r *authv3.AttributeContext_HttpRequest, _ *corev3.SocketAddress) {
			r.Path = "/partners/" + strings.Repeat("p", 10000) + "/transactions"
		},
			[]string{`"path":"/partners/` + strings.Repeat("p", 246) + `..."`}}, // a client's path, clipped
	}
	for i, s := range steps {
		req := request("")
		s.edit(req.Attributes.Request.Http, req.Attributes.Source.Address.GetSocketAddress())
		before := len(h.logs.String())
		if _, err := h.authz.Check(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		line := h.logs.String()[before:]
		for _, want := range s.want {
			if !strings.Contains(line, want) {
				t.Errorf("step %d: got log %s, want it to hold %s", i, line, want)
			}
		}
		if strings.Contains(line, "s3cret") {
			t.Errorf("step %d: the query string was logged: %s", i, line)
		}
	}
}
