package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/internal/testlog"
)

// adminToken is the admin token of the test servers.
const adminToken = "test-admin-token-0123456789"

// t0 is the test clock's start: noon UTC, so that day quotas have room on
// both sides.
var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// clock is the tests' settable clock.
type clock = testclock.Clock

// harness is a served tollgate on loopback: gRPC, the admin API, a memory
// store, a test clock and a policy file of its own in a temporary
// directory.
type harness struct {
	t      *testing.T
	s      *Server
	clock  *clock
	logs   *testlog.Buffer
	policy string // the policy file's path
	base   string // the admin API's base URL
	authz  authv3.AuthorizationClient
	http   *http.Client
	stop   func() error
}

// testPolicy returns the payments example with each edits[i] replaced by
// edits[i+1].
func testPolicy(t testing.TB, edits ...string) string {
	t.Helper()
	data, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			t.Fatalf("edit %q: not in %s", edits[i], examplePolicy)
		}
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	return text
}

// smallFreeQuota makes the free plan's quota 8 a day, small enough to spend
// in a test.
var smallFreeQuota = []string{"quota: {limit: 1000, period: day}", "quota: {limit: 8, period: day}"}

// serve starts a server on the policy text with the config changes of
// edit, and stops it when the test ends.
func serve(t *testing.T, policyText string, edit func(*Config)) *harness {
	t.Helper()
	return serveWrapped(t, policyText, edit, nil)
}

// serveWrapped is serve with the store wrapped by wrap (when not nil)
// before anything is served.
func serveWrapped(t *testing.T, policyText string, edit func(*Config), wrap func(Store) Store) *harness {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, clock: testclock.New(t0), logs: &testlog.Buffer{}, policy: file, http: &http.Client{Timeout: 10 * time.Second}}
	cfg := Config{PolicyFile: file, GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: "memory:",
		AdminToken: adminToken, Now: h.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	if wrap != nil {
		s.store = wrap(s.store)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	conn, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.authz = authv3.NewAuthorizationClient(conn)
	if a := s.AdminAddr(); a != nil {
		h.base = "http://" + a.String()
	}
	var once sync.Once
	var serveErr error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			serveErr = <-errc
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
		conn.Close()
		h.http.CloseIdleConnections()
	})
	if h.base != "" {
		// Serve has set up the file watch before it serves the admin API.
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := h.http.Get(h.base + "/healthz")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("admin API not up: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return h
}

// answer is an admin API answer.
type answer struct {
	status int
	header http.Header
	raw    string
	json   map[string]any // the body when it is a JSON object
}

// call makes an admin API call with the admin token; body "" sends none.
func (h *harness) call(method, path, body string) answer {
	h.t.Helper()
	return h.callWith(method, path, body, map[string]string{"Authorization": "Bearer " + adminToken})
}

// callWith makes an admin API call with exactly the headers given.
func (h *harness) callWith(method, path, body string, headers map[string]string) answer {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 {
		json.Unmarshal(raw, &a.json)
	}
	return a
}

// want fails the test unless the answer has the status; an error answer
// must also be JSON {"error": "..."} naming what was wrong (holding
// contains).
func (a answer) want(t *testing.T, step string, status int, contains string) answer {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: got status %d, want %d (body %s)", step, a.status, status, a.raw)
	}
	if status >= 400 {
		msg, ok := a.json["error"].(string)
		if !ok || len(a.json) != 1 || msg == "" {
			t.Fatalf(`%s: got body %s, want {"error": "..."}`, step, a.raw)
		}
		if !strings.Contains(msg, contains) {
			t.Fatalf("%s: got error %q, want it to hold %q", step, msg, contains)
		}
		if ct := a.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: got content-type %q, want application/json", step, ct)
		}
	}
	return a
}

// request is a CheckRequest for the keyed route of the example.
func request(key string) *authv3.CheckRequest {
	headers := map[string]string{}
	if key != "" {
		headers["x-api-key"] = key
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/partners/p-1/transactions", Host: "api.example.com", Headers: headers}},
	}}
}

// decision is what Envoy would do with a CheckResponse.
type decision struct {
	status  int // 200 when allowed
	headers map[string]string
	// upstream holds the headers an allowed request gets upstream.
	upstream map[string]string
}

// check sends one keyed request over gRPC.
func (h *harness) check(key string) decision {
	h.t.Helper()
	return h.checkRequest(request(key))
}

// checkRequest sends req over gRPC and returns what Envoy would do: the
// status and the client's headers.
func (h *harness) checkRequest(req *authv3.CheckRequest) decision {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.authz.Check(ctx, req)
	if err != nil {
		h.t.Fatal(err)
	}
	d := decision{status: 200, headers: map[string]string{}, upstream: map[string]string{}}
	for _, hv := range resp.GetOkResponse().GetHeaders() {
		d.upstream[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
	}
	hs := resp.GetOkResponse().GetResponseHeadersToAdd()
	if resp.GetStatus().GetCode() != 0 {
		d.status = int(resp.GetDeniedResponse().GetStatus().GetCode())
		hs = resp.GetDeniedResponse().GetHeaders()
	}
	for _, hv := range hs {
		d.headers[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
	}
	return d
}

// checks sends n keyed requests and returns how many were allowed.
func (h *harness) checks(key string, n int) int {
	h.t.Helper()
	ok := 0
	for range n {
		if h.check(key).status == 200 {
			ok++
		}
	}
	return ok
}

// keyList returns GET /v1/keys's raw body, to compare before and after.
func (h *harness) keyList() string {
	h.t.Helper()
	a := h.call("GET", "/v1/keys", "")
	if a.status != 200 {
		h.t.Fatalf("list keys: got %d %s", a.status, a.raw)
	}
	return a.raw
}

// metric returns the value of the Prometheus sample whose line starts with
// series (name and labels as exposed), or -1 when there is none.
func (h *harness) metric(series string) float64 {
	h.t.Helper()
	a := h.callWith("GET", "/metrics", "", nil)
	for _, line := range strings.Split(a.raw, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				h.t.Fatalf("metric %s: %q: %v", series, rest, err)
			}
			return v
		}
	}
	return -1
}
