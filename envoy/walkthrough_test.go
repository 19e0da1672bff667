package envoy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/internal/envoyconf"
)

// walkStep is one request of the walkthrough: how many times it is sent,
// and when shown, the answer the reader is told to expect.
type walkStep struct {
	method, path string
	headers      map[string]string
	times        int
	// until: the step is sent up to times times, until the answer has
	// this status (0: sent times times).
	until int
	want  *walkAnswer // nil: sent, not shown
	block int         // the sh block it is in
}

type walkAnswer struct {
	status  int
	headers [][2]string
	body    string
}

var (
	fence     = regexp.MustCompile("(?s)```(sh|http)\n(.*?)```")
	seqLoop   = regexp.MustCompile(`^for i in \$\(seq (\d+)\); do (curl .*); done$`)
	untilLoop = regexp.MustCompile(`^for i in \$\(seq (\d+)\); do (curl .*) > (\S+); grep -q '\^HTTP/1\.1 (\d+)' (\S+) && break; done; cat (\S+)$`)
	shellWord = regexp.MustCompile(`'[^']*'|"[^"]*"|\S+`)
)

// parseWalkthrough reads the curl commands of the walkthrough (those to
// localhost:8080, the Envoy of docker-compose.yaml) and the answers shown
// after them.
func parseWalkthrough(t *testing.T, text string) []walkStep {
	t.Helper()
	var steps []walkStep
	block := 0
	for _, m := range fence.FindAllStringSubmatch(text, -1) {
		if m[1] == "http" {
			if len(steps) == 0 || steps[len(steps)-1].want != nil {
				t.Fatalf("an http block with no curl before it: %q", m[2])
			}
			steps[len(steps)-1].want = parseAnswer(t, m[2])
			continue
		}
		block++
		for _, line := range strings.Split(strings.TrimSpace(m[2]), "\n") {
			if !strings.Contains(line, "localhost:8080") {
				continue
			}
			times, until := 1, 0
			if lm := untilLoop.FindStringSubmatch(line); lm != nil {
				if lm[3] != lm[5] || lm[3] != lm[6] {
					t.Fatalf("%q: the loop writes %s but reads %s and shows %s", line, lm[3], lm[5], lm[6])
				}
				times, _ = strconv.Atoi(lm[1])
				until, _ = strconv.Atoi(lm[4])
				line = lm[2]
			} else if lm := seqLoop.FindStringSubmatch(line); lm != nil {
				times, _ = strconv.Atoi(lm[1])
				line = lm[2]
			}
			s := parseCurl(t, line, times, block)
			s.until = until
			steps = append(steps, s)
		}
	}
	return steps
}

func parseCurl(t *testing.T, line string, times, block int) walkStep {
	t.Helper()
	s := walkStep{method: "GET", headers: map[string]string{}, times: times, block: block}
	words := shellWord.FindAllString(line, -1)
	for i := 1; i < len(words); i++ {
		w := strings.Trim(words[i], `'"`)
		switch {
		case w == "-X":
			i++
			s.method = words[i]
		case w == "-H":
			i++
			name, value, _ := strings.Cut(strings.Trim(words[i], `'"`), ":")
			s.headers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
		case w == "-o":
			i++
		case strings.HasPrefix(w, "http://localhost:8080"):
			s.path = strings.TrimPrefix(w, "http://localhost:8080")
		}
	}
	if s.path == "" {
		t.Fatalf("curl line without a URL: %s", line)
	}
	return s
}

func parseAnswer(t *testing.T, block string) *walkAnswer {
	t.Helper()
	head, body, _ := strings.Cut(block, "\n\n")
	lines := strings.Split(strings.TrimSpace(head), "\n")
	fields := strings.Fields(lines[0])
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		t.Fatalf("http block without a status line: %q", block)
	}
	a := &walkAnswer{body: strings.TrimSpace(body)}
	a.status, _ = strconv.Atoi(fields[1])
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("header line %q is not name: value", l)
		}
		a.headers = append(a.headers, [2]string{strings.ToLower(name), value})
	}
	return a
}

// filterFor tells which of the payments Envoy's filters checks a request:
// the one its route (or else its virtual host) does not disable. It
// returns "ext_authz" or "ext_proc", and the gRPC metadata ext_proc sends.
func filterFor(t *testing.T, vh *routev3.VirtualHost, method, path string) (string, metadata.MD) {
	t.Helper()
	path, _, _ = strings.Cut(path, "?") // Envoy matches path and prefix without the query
	for _, r := range vh.GetRoutes() {
		m := r.GetMatch()
		switch {
		case m.GetPath() != "" && m.GetPath() != path, m.GetPrefix() != "" && !strings.HasPrefix(path, m.GetPrefix()):
			continue
		case m.GetSafeRegex() != nil && !regexp.MustCompile("^(?:"+m.GetSafeRegex().GetRegex()+")$").MatchString(path):
			continue // RE2, matched against the whole path as Envoy does
		}
		methodOK := true
		for _, h := range m.GetHeaders() {
			if h.GetName() == ":method" && h.GetStringMatch().GetExact() != method {
				methodOK = false
			}
		}
		if !methodOK {
			continue
		}
		disabled := func(name string) bool {
			cfg := r.GetTypedPerFilterConfig()[name]
			if cfg == nil {
				cfg = vh.GetTypedPerFilterConfig()[name]
			}
			if cfg == nil {
				return false
			}
			msg, err := cfg.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			switch c := msg.(type) {
			case *extauthzv3.ExtAuthzPerRoute:
				return c.GetDisabled()
			case *extprocfilterv3.ExtProcPerRoute:
				return c.GetDisabled()
			}
			return false
		}
		authz, proc := !disabled("envoy.filters.http.ext_authz"), !disabled("envoy.filters.http.ext_proc")
		if authz == proc {
			t.Fatalf("%s %s: ext_authz %v and ext_proc %v: want exactly one", method, path, authz, proc)
		}
		if authz {
			return "ext_authz", nil
		}
		md := metadata.MD{}
		cfg, _ := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_proc"].UnmarshalNew()
		for _, hv := range cfg.(*extprocfilterv3.ExtProcPerRoute).GetOverrides().GetGrpcInitialMetadata() {
			md.Set(hv.GetKey(), hv.GetValue())
		}
		return "ext_proc", md
	}
	t.Fatalf("%s %s: no route of envoy.yaml matches", method, path)
	return "", nil
}

// tollgateHeader reports whether tollgate sets the header on answers (the
// walkthrough must show every one of them).
func tollgateHeader(name string) bool {
	return strings.HasPrefix(name, "ratelimit") || strings.HasPrefix(name, "x-ratelimit") || name == "retry-after" ||
		name == "x-tollgate-reason" || name == "content-type"
}

// TestWalkthrough sends every request of examples/payments/README.md, in
// order, through the filter the payments Envoy uses for it (ext_authz or
// ext_proc, over real gRPC), against the payments policy; a person's pause
// of 3 seconds separates the blocks. Every shown answer must match: the
// status, the body, every header shown (… matches anything) and no header
// of tollgate's that is not shown. The loops that send until an answer
// must get there whatever the client's pace: all at one instant, or a
// request every 80ms (12.5 a second, slower than curl on any machine).
func TestWalkthrough(t *testing.T) {
	for _, pace := range []time.Duration{0, 80 * time.Millisecond} {
		t.Run(pace.String(), func(t *testing.T) { walkthrough(t, pace) })
	}
}

func walkthrough(t *testing.T, pace time.Duration) {
	readme, err := os.ReadFile(filepath.Join(paymentsDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps := parseWalkthrough(t, string(readme))
	if len(steps) < 7 {
		t.Fatalf("got %d walkthrough steps, want the whole walkthrough", len(steps))
	}
	hcm := paymentsHCM(t)
	vh := hcm.GetRouteConfig().GetVirtualHosts()[0]
	raw := encodesRawHeaders(t, hcm)
	var ext map[string]string
	if cfg := vh.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]; cfg != nil {
		var per extauthzv3.ExtAuthzPerRoute
		if err := cfg.UnmarshalTo(&per); err != nil {
			t.Fatal(err)
		}
		ext = per.GetCheckSettings().GetContextExtensions()
	}

	e := newEngine(t, paymentsPolicy)
	authz, proc := serve(t, e), serveProc(t, e)
	now, block := t0, 0
	for i, s := range steps {
		if s.block != block {
			now, block = now.Add(3*time.Second), s.block
			e.set(now)
		}
		filter, md := filterFor(t, vh, s.method, s.path)
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "172.18.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}},
			ContextExtensions: ext,
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: s.method, Path: s.path, Host: "localhost:8080", Headers: s.headers}}}}
		var got seen
		for n := range s.times {
			if filter == "ext_authz" {
				sent := req
				if raw {
					sent = withHeaderMap(req)
				}
				resp, err := authz.Check(context.Background(), sent)
				if err != nil {
					t.Fatal(err)
				}
				got = checkSeen(resp)
			} else {
				msg, _ := procFromCheck(req)
				got = procSeen(t, proc, msg, md)
			}
			if s.until != 0 && got.status == s.until {
				break
			}
			if s.until != 0 && n == s.times-1 {
				t.Errorf("step %d: no %d in %d requests at a pace of %v", i, s.until, s.times, pace)
			}
			if s.times > 1 {
				// A loop's requests go at the client's pace.
				now = now.Add(pace)
				e.set(now)
			}
		}
		if s.want == nil {
			continue
		}
		step := fmt.Sprintf("step %d (%s %s, block %d, %s)", i, s.method, s.path, s.block, filter)
		if got.status != s.want.status || got.body != s.want.body {
			t.Errorf("%s: got %d %q, want %d %q", step, got.status, got.body, s.want.status, s.want.body)
		}
		headers := map[string]string{}
		for _, h := range append(got.denial, got.response...) {
			name, value, _ := strings.Cut(h, ": ")
			headers[name] = value
		}
		shown := map[string]bool{}
		for _, h := range s.want.headers {
			shown[h[0]] = true
			pattern := "^" + strings.ReplaceAll(regexp.QuoteMeta(h[1]), "…", ".*") + "$"
			if v, ok := headers[h[0]]; !ok || !regexp.MustCompile(pattern).MatchString(v) {
				t.Errorf("%s: %s: got %q, want %q", step, h[0], v, h[1])
			}
		}
		for name, v := range headers {
			if tollgateHeader(name) && !shown[name] {
				t.Errorf("%s: the answer has %s: %s, which the walkthrough does not show", step, name, v)
			}
		}
	}
}

// encodesRawHeaders reports whether the ext_authz filter of hcm has
// encode_raw_headers: then Envoy sends header values in header_map.
func encodesRawHeaders(t *testing.T, hcm *hcmv3.HttpConnectionManager) bool {
	t.Helper()
	for _, f := range hcm.GetHttpFilters() {
		if f.GetName() != "envoy.filters.http.ext_authz" {
			continue
		}
		var cfg extauthzv3.ExtAuthz
		if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			t.Fatal(err)
		}
		return cfg.GetEncodeRawHeaders()
	}
	t.Fatal("no ext_authz filter")
	return false
}

// withHeaderMap returns req as Envoy sends it with encode_raw_headers: the
// headers in header_map, each value in raw_value.
func withHeaderMap(req *authv3.CheckRequest) *authv3.CheckRequest {
	out := proto.Clone(req).(*authv3.CheckRequest)
	h := out.GetAttributes().GetRequest().GetHttp()
	hm := &corev3.HeaderMap{}
	for k, v := range h.GetHeaders() {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	h.Headers, h.HeaderMap = nil, hm
	return out
}

// paymentsHCM returns the HTTP connection manager of the payments Envoy
// (examples/payments/envoy.yaml), checked like every shipped configuration.
func paymentsHCM(t *testing.T) *hcmv3.HttpConnectionManager {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(paymentsDir, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b := envoyconf.Load(t, "envoy.yaml", data)
	var hcm hcmv3.HttpConnectionManager
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	return &hcm
}
