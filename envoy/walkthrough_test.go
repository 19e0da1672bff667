package envoy_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
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
	"github.com/tollgate/tollgate/internal/walkthrough"
)

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
		t.Run(pace.String(), func(t *testing.T) { walk(t, pace) })
	}
}

func walk(t *testing.T, pace time.Duration) {
	readme, err := os.ReadFile(filepath.Join(paymentsDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps := walkthrough.Parse(t, string(readme), "localhost:8080")
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
		if s.Block != block {
			now, block = now.Add(3*time.Second), s.Block
			e.set(now)
		}
		filter, md := filterFor(t, vh, s.Method, s.Path)
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "172.18.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}},
			ContextExtensions: ext,
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: s.Method, Path: s.Path, Host: "localhost:8080", Headers: s.Headers}}}}
		var got seen
		for n := range s.Times {
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
			if s.Until != 0 && got.status == s.Until {
				break
			}
			if s.Until != 0 && n == s.Times-1 {
				t.Errorf("step %d: no %d in %d requests at a pace of %v", i, s.Until, s.Times, pace)
			}
			if s.Times > 1 {
				// A loop's requests go at the client's pace.
				now = now.Add(pace)
				e.set(now)
			}
		}
		if s.Want == nil {
			continue
		}
		headers := map[string]string{}
		for _, h := range append(got.denial, got.response...) {
			name, value, _ := strings.Cut(h, ": ")
			headers[name] = value
		}
		for _, d := range s.Want.Check(got.status, got.body, headers, walkthrough.TollgateHeader) {
			t.Errorf("step %d (%s %s, block %d, %s): %s", i, s.Method, s.Path, s.Block, filter, d)
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
