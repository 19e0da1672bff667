package envoy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
)

// serveHTTP starts HTTPServer with d on a loopback listener, stopped at the
// end of the test, and returns its base URL.
func serveHTTP(t testing.TB, d envoy.Decider) string {
	t.Helper()
	srv := httptest.NewServer(&envoy.HTTPServer{Decider: d})
	t.Cleanup(srv.Close)
	return srv.URL
}

// httpForms are the ways a proxy asks: Envoy's http_service (the original
// request behind /ext_authz, the client in X-Real-IP as the kit sets it),
// nginx's auth_request (X-Original-*, the original Host, X-Forwarded-For
// with a client's own entry before the one nginx appended, as the kit's
// $proxy_add_x_forwarded_for makes it) and Caddy's forward_auth
// (X-Forwarded-*, the client in X-Forwarded-For).
var httpForms = []string{"envoy", "nginx", "caddy"}

// httpFromCheck builds the subrequest a proxy of form sends for the request
// that req describes; false when that request cannot be sent in this form
// (no HTTP attributes, a pipe peer, a path Envoy's prefix cannot precede).
func httpFromCheck(t *testing.T, base, form string, req *authv3.CheckRequest) (*http.Request, bool) {
	t.Helper()
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	peer := attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()
	if h == nil || peer == "" {
		return nil, false
	}
	method := h.GetMethod()
	if form != "envoy" {
		method = http.MethodGet
	}
	hr, err := http.NewRequest(method, base+envoy.ForwardAuthPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h.GetHeaders() {
		if !strings.HasPrefix(k, ":") && k != "content-length" {
			hr.Header.Set(k, v)
		}
	}
	if ext := attrs.GetContextExtensions(); len(ext) > 0 {
		hr.Header.Set(envoy.HeaderStage, ext[envoy.ExtensionAPI]+"/"+ext[envoy.ExtensionStage])
	}
	switch form {
	case "envoy":
		if !strings.HasPrefix(h.GetPath(), "/") {
			return nil, false
		}
		// Sent as it is, escapes and query untouched.
		p, q, _ := strings.Cut(h.GetPath(), "?")
		hr.URL.Opaque, hr.URL.RawQuery = envoy.HTTPPathPrefix+p, q
		hr.Host = h.GetHost()
		hr.Header.Set("X-Real-IP", peer)
	case "nginx":
		hr.Header.Set("X-Original-Method", h.GetMethod())
		hr.Header.Set("X-Original-URI", h.GetPath())
		hr.Host = h.GetHost()
		hr.Header.Set("X-Forwarded-For", "192.0.2.66, "+peer)
	case "caddy":
		hr.Header.Set("X-Forwarded-Method", h.GetMethod())
		hr.Header.Set("X-Forwarded-Uri", h.GetPath())
		hr.Header.Set("X-Forwarded-Host", h.GetHost())
		hr.Header.Set("X-Forwarded-For", peer)
	}
	return hr, true
}

// upstreamHeader reports whether an allowed answer's header goes upstream
// (the proxy copies it to the request) rather than to the client.
func upstreamHeader(name string) bool {
	return name == envoy.HeaderCustomer || name == envoy.HeaderKeyID || name == envoy.HeaderPlan || name == envoy.HeaderShadow
}

// httpSeen sends hr and returns what its client sees, in the form
// checkSeen gives: an allowance's headers split into upstream, removed and
// response headers; a denial's status, body and headers.
func httpSeen(t *testing.T, hr *http.Request) seen {
	t.Helper()
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	s := seen{status: resp.StatusCode, body: string(body)}
	for k, vs := range resp.Header {
		name := strings.ToLower(k)
		if name == "date" || name == "content-length" {
			continue
		}
		if len(vs) != 1 {
			t.Errorf("header %s sent %d times, want once", name, len(vs))
		}
		line := name + ": " + vs[0]
		switch {
		case resp.StatusCode != 200:
			s.denial = append(s.denial, line)
		case name == envoy.HeaderHeadersToRemove:
			s.remove = strings.Split(vs[0], ",")
		case upstreamHeader(name):
			s.upstream = append(s.upstream, line)
		default:
			s.response = append(s.response, line)
		}
	}
	if resp.StatusCode == 200 && len(body) > 0 {
		t.Errorf("allowed with a body %q, want none", body)
	}
	slices.Sort(s.denial)
	slices.Sort(s.upstream)
	slices.Sort(s.response)
	slices.Sort(s.remove)
	return s
}

// TestHTTPMatchesCheck: every golden request, asked over HTTP in each
// proxy's form (the same warm-up first), gets the answer its golden
// CheckResponse gives: a denial's status, body and headers as they are; an
// allowance's upstream headers, headers to remove and rate-limit headers as
// 200's headers.
func TestHTTPMatchesCheck(t *testing.T) {
	for _, name := range goldenNames() {
		for _, form := range httpForms {
			t.Run(name+"/"+form, func(t *testing.T) {
				c := goldenCases[name]
				e := newEngine(t, c.policy, c.edits...)
				base := serveHTTP(t, e)
				req := readCheckRequest(t, filepath.Join(goldenDir, name+".request.json"))
				if _, ok := httpFromCheck(t, base, form, req); !ok {
					t.Skipf("%s cannot be sent in the %s form", name, form)
				}
				var got seen
				for range c.warmup + 1 {
					hr, _ := httpFromCheck(t, base, form, req)
					got = httpSeen(t, hr)
				}
				want := checkSeen(readCheckResponse(t, filepath.Join(goldenDir, name+".response.json")))
				if got.status == 200 && want.status == 200 {
					// Two rate-limit lists, sorted alike.
					slices.Sort(want.response)
				}
				if !equalSeen(got, want) {
					t.Errorf("got  %+v\nwant %+v", got, want)
				}
				if n := e.errs.Load(); n != 0 {
					t.Errorf("got %d evaluation errors, want 0", n)
				}
			})
		}
	}
}

func equalSeen(a, b seen) bool {
	return a.status == b.status && a.body == b.body && slices.Equal(a.denial, b.denial) &&
		slices.Equal(a.upstream, b.upstream) && slices.Equal(a.remove, b.remove) && slices.Equal(a.response, b.response)
}

// recorder is a Decider that allows and keeps the requests it was given.
type recorder struct {
	mu  sync.Mutex
	got []policy.Request
}

func (r *recorder) Decide(_ context.Context, req *policy.Request) policy.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, *req)
	return policy.Decision{Verdict: policy.Allow, Status: 200}
}

// take returns the requests decided since the last call.
func (r *recorder) take() []policy.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// TestRequestFromHTTP: what each form reads where, the client address
// rules and the stage header.
func TestRequestFromHTTP(t *testing.T) {
	cases := []struct {
		name    string
		method  string
		target  string
		host    string
		headers map[string]string
		want    policy.Request // Headers not compared
	}{
		{name: "envoy form", method: "POST", target: "/ext_authz/partners/p%2D1/transactions?x=1", host: "api.example.com",
			headers: map[string]string{"X-Forwarded-For": "203.0.113.9"},
			want:    policy.Request{Method: "POST", Path: "/partners/p%2D1/transactions?x=1", Host: "api.example.com", Peer: "203.0.113.9"}},
		{name: "envoy form, root path", method: "GET", target: "/ext_authz/", host: "h",
			want: policy.Request{Method: "GET", Path: "/", Host: "h", Peer: "127.0.0.1"}},
		{name: "forward form, Caddy", method: "GET", target: "/forward_auth", host: "tollgate:9003",
			headers: map[string]string{"X-Forwarded-Method": "PUT", "X-Forwarded-Uri": "/a?b", "X-Forwarded-Host": "api.example.com",
				"X-Forwarded-For": "192.0.2.1, 198.51.100.7", "X-Tollgate-Stage": "payments/prod"},
			want: policy.Request{Method: "PUT", Path: "/a?b", Host: "api.example.com", Peer: "198.51.100.7", Stage: "payments/prod"}},
		{name: "forward form, nginx", method: "GET", target: "/forward_auth", host: "api.example.com",
			headers: map[string]string{"X-Original-Method": "DELETE", "X-Original-URI": "/b", "X-Real-IP": "2001:db8::1"},
			want:    policy.Request{Method: "DELETE", Path: "/b", Host: "api.example.com", Peer: "2001:db8::1"}},
		{name: "X-Forwarded-* before X-Original-*", method: "GET", target: "/forward_auth", host: "h",
			headers: map[string]string{"X-Forwarded-Method": "PUT", "X-Original-Method": "DELETE", "X-Forwarded-Uri": "/f", "X-Original-URI": "/o",
				"X-Forwarded-For": "198.51.100.7", "X-Real-IP": "192.0.2.1"},
			want: policy.Request{Method: "PUT", Path: "/f", Host: "h", Peer: "198.51.100.7"}},
		{name: "one convention, never a mix", method: "GET", target: "/forward_auth", host: "h",
			headers: map[string]string{"X-Forwarded-Method": "PUT", "X-Original-Method": "DELETE", "X-Original-URI": "/o",
				"X-Forwarded-Host": "api.example.com", "X-Real-IP": "192.0.2.1"},
			want: policy.Request{Method: "DELETE", Path: "/o", Host: "api.example.com", Peer: "192.0.2.1"}},
		{name: "X-Forwarded-Uri without its method", method: "GET", target: "/forward_auth", host: "h",
			headers: map[string]string{"X-Forwarded-Uri": "/f", "X-Original-Method": "DELETE", "X-Original-URI": "/o"},
			want:    policy.Request{Path: "/f", Host: "h", Peer: "127.0.0.1"}},
		{name: "forward form without the original request", method: "POST", target: "/forward_auth", host: "h",
			want: policy.Request{Host: "h", Peer: "127.0.0.1"}},
		{name: "empty last X-Forwarded-For entry", method: "GET", target: "/forward_auth", host: "h",
			headers: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/", "X-Forwarded-For": "198.51.100.7, "},
			want:    policy.Request{Method: "GET", Path: "/", Host: "h", Peer: "127.0.0.1"}},
	}
	rec := &recorder{}
	base := serveHTTP(t, rec)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hr, err := http.NewRequest(c.method, base+c.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			hr.URL.Opaque, hr.URL.RawQuery, _ = strings.Cut(c.target, "?")
			hr.Host = c.host
			for k, v := range c.headers {
				hr.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			decided := rec.take()
			if resp.StatusCode != 200 || len(decided) != 1 {
				t.Fatalf("got %d and %d decisions, want 200 and 1", resp.StatusCode, len(decided))
			}
			got := decided[0]
			if got.Headers["x-tollgate-stage"] != c.headers["X-Tollgate-Stage"] {
				t.Errorf("headers: got %v, want the request's, lower case", got.Headers)
			}
			got.Headers = nil
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// TestHTTPNotADecision: paths that are neither form are 404, and nothing is
// decided.
func TestHTTPNotADecision(t *testing.T) {
	rec := &recorder{}
	base := serveHTTP(t, rec)
	for _, p := range []string{"/healthz", "/", "/ext_authz", "/ext_authzfoo/bar", "/forward_auth/x", "/metrics",
		"/ext%5Fauthz/partners/p-1", "/forward%5Fauth", "/%65xt_authz/a"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: got %d %s %q, want 404 JSON", p, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if n := len(rec.take()); n != 0 {
		t.Errorf("got %d decisions, want none", n)
	}
}

// TestHTTPRepeatedHeaders: a header sent twice reaches the decision joined
// with ",", as Envoy sends it.
func TestHTTPRepeatedHeaders(t *testing.T) {
	rec := &recorder{}
	base := serveHTTP(t, rec)
	hr, _ := http.NewRequest("GET", base+"/ext_authz/a", nil)
	hr.Header.Add("X-Api-Key", "one")
	hr.Header.Add("X-Api-Key", "two")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := rec.take()[0].Headers["x-api-key"]; got != "one,two" {
		t.Errorf("got %q, want one,two", got)
	}
}

// TestHTTPAbsoluteTarget: a request line in absolute form (as to a proxy)
// is read like its origin form.
func TestHTTPAbsoluteTarget(t *testing.T) {
	rec := &recorder{}
	base := serveHTTP(t, rec)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST http://api.example.com/ext_authz/a%2Db?c=d HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := rec.take()
	if resp.StatusCode != 200 || len(got) != 1 || got[0].Method != "POST" || got[0].Path != "/a%2Db?c=d" || got[0].Host != "api.example.com" {
		t.Errorf("got %d %+v, want 200 and POST /a%%2Db?c=d for api.example.com", resp.StatusCode, got)
	}
}

// TestHTTPGRPCDenial: a gRPC request's denial over HTTP is CheckResponse's
// for a gRPC request: grpc-status and the message alone; an HTTP request's
// and a grpc-web request's keep the JSON body.
func TestHTTPGRPCDenial(t *testing.T) {
	e := newEngine(t, paymentsPolicy)
	base := serveHTTP(t, e)
	for _, c := range []struct{ contentType, status, body string }{
		{"application/grpc", "7", "Forbidden"},
		{"application/grpc+proto", "7", "Forbidden"},
		{"application/grpc-web", "", `{"message":"Forbidden"}`},
		{"application/json", "", `{"message":"Forbidden"}`},
	} {
		hr, _ := http.NewRequest("POST", base+"/ext_authz/partners/p-1/transactions", nil)
		hr.Host = "api.example.com"
		hr.Header.Set("Content-Type", c.contentType)
		s := httpSeen(t, hr)
		status := ""
		for _, l := range s.denial {
			if v, ok := strings.CutPrefix(l, "grpc-status: "); ok {
				status = v
			}
		}
		if s.status != 403 || status != c.status || s.body != c.body {
			t.Errorf("%s: got %d grpc-status %q %q, want 403 %q %q", c.contentType, s.status, status, s.body, c.status, c.body)
		}
	}
}
