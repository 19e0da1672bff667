package envoy_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/internal/envoyconf"
)

// httpKit is the ext_authz filter of envoy/ext_authz_http.yaml, with what
// Envoy does with it (source/extensions/filters/common/ext_authz/
// ext_authz_http_impl.cc): the auth request is the original method, the
// path behind path_prefix, Host, the headers allowed_headers matches (and
// Authorization), and headers_to_add; a 200 copies the answer's headers
// that allowed_upstream_headers matches to the upstream request, removes
// those x-envoy-auth-headers-to-remove names, and adds those that
// allowed_client_headers_on_success matches to the client's answer; any
// other status is the client's answer, with the headers that
// allowed_client_headers matches.
type httpKit struct {
	filter *extauthzv3.ExtAuthz
	svc    *extauthzv3.HttpService
}

func loadHTTPKit(t *testing.T) *httpKit {
	t.Helper()
	data, err := os.ReadFile("ext_authz_http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := envoyconf.Load(t, "ext_authz_http.yaml", data)
	var hcm hcmv3.HttpConnectionManager
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	k := &httpKit{filter: new(extauthzv3.ExtAuthz)}
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(k.filter); err != nil {
		t.Fatal(err)
	}
	k.svc = k.filter.GetHttpService()
	if k.svc == nil {
		t.Fatal("the kit's ext_authz filter has no http_service")
	}
	// A route's own http_service replaces the whole of the filter's: it
	// must differ in the stage only.
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		cfg := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
		if cfg == nil {
			continue
		}
		var per extauthzv3.ExtAuthzPerRoute
		if err := cfg.UnmarshalTo(&per); err != nil {
			t.Fatal(err)
		}
		own := per.GetCheckSettings().GetHttpService()
		if own == nil {
			continue
		}
		a, b := proto.Clone(own).(*extauthzv3.HttpService), proto.Clone(k.svc).(*extauthzv3.HttpService)
		a.AuthorizationRequest.HeadersToAdd, b.AuthorizationRequest.HeadersToAdd = nil, nil
		if !proto.Equal(a, b) {
			t.Errorf("route %s: its http_service differs from the filter's in more than the stage:\n%v\n%v", r.GetMatch(), a, b)
		}
	}
	return k
}

// match reports whether name is matched by m, which the kit writes with
// exact and prefix patterns only.
func match(t *testing.T, m *matcherv3.ListStringMatcher, name string) bool {
	t.Helper()
	for _, p := range m.GetPatterns() {
		switch {
		case p.GetExact() != "":
			if name == p.GetExact() {
				return true
			}
		case p.GetPrefix() != "":
			if strings.HasPrefix(name, p.GetPrefix()) {
				return true
			}
		default:
			t.Fatalf("pattern %v: this model knows exact and prefix", p)
		}
	}
	return false
}

// ask sends the auth request Envoy makes for a request from peer (headers
// with lower-case names) to base and returns what the client and the
// upstream get.
//
// For a policy other than the payments example, the kit is pasted as its
// comments say: without the stage (the policy's hosts decide) and with the
// headers its WAF rules read (extra) allowed.
func (k *httpKit) ask(t *testing.T, base, method, path, host, peer string, headers map[string]string, payments bool, extra ...string) seen {
	t.Helper()
	hr, err := http.NewRequest(method, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, q, _ := strings.Cut(path, "?")
	hr.URL.Opaque, hr.URL.RawQuery = k.svc.GetPathPrefix()+p, q
	hr.Host = host
	for name, v := range headers {
		if name == "authorization" || match(t, k.filter.GetAllowedHeaders(), name) || slices.Contains(extra, name) {
			hr.Header.Set(name, v)
		}
	}
	for _, h := range k.svc.GetAuthorizationRequest().GetHeadersToAdd() {
		v := h.GetValue()
		switch {
		case v == "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%":
			v = peer
		case strings.Contains(v, "%"):
			t.Fatalf("headers_to_add %s: %s: this model knows one formatter", h.GetKey(), v)
		}
		if payments || h.GetKey() != envoy.HeaderStage {
			hr.Header.Set(h.GetKey(), v)
		}
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	ar := k.svc.GetAuthorizationResponse()
	s := seen{status: resp.StatusCode}
	for name, vs := range resp.Header {
		name = strings.ToLower(name)
		line := name + ": " + vs[0]
		switch {
		case resp.StatusCode != 200:
			if match(t, ar.GetAllowedClientHeaders(), name) {
				s.denial = append(s.denial, line)
			}
		case name == envoy.HeaderHeadersToRemove:
			s.remove = strings.Split(vs[0], ",")
		case match(t, ar.GetAllowedUpstreamHeaders(), name):
			s.upstream = append(s.upstream, line)
		case match(t, ar.GetAllowedClientHeadersOnSuccess(), name):
			s.response = append(s.response, line)
		}
	}
	if resp.StatusCode != 200 {
		s.body = string(body)
	}
	for _, l := range [][]string{s.denial, s.upstream, s.response, s.remove} {
		slices.Sort(l)
	}
	return s
}

// TestHTTPKit: the requests of the golden cases, sent through the
// http_service kit as Envoy would (only the headers it lists, the stage it
// adds), reach the client and the upstream as the gRPC answers do: every
// header tollgate reads is sent, every one it answers is copied. The
// requests of testdata/tight.yaml go through the kit as its comments say to
// paste it for that policy: no stage header (payments/prod is not one of
// its stages), x-client allowed (a WAF rule reads it).
func TestHTTPKit(t *testing.T) {
	k := loadHTTPKit(t)
	for _, name := range goldenNames() {
		c := goldenCases[name]
		payments := c.policy == paymentsPolicy
		t.Run(name, func(t *testing.T) {
			req := readCheckRequest(t, filepath.Join(goldenDir, name+".request.json"))
			attrs := req.GetAttributes()
			h := attrs.GetRequest().GetHttp()
			peer := attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()
			if ext := attrs.GetContextExtensions(); h == nil || peer == "" || !strings.HasPrefix(h.GetPath(), "/") ||
				(len(ext) > 0 && (!payments || ext[envoy.ExtensionStage] != "prod")) {
				t.Skip("not a request this kit can send: no HTTP, no peer, a relative path or another stage")
			}
			headers := map[string]string{}
			for k, v := range h.GetHeaders() {
				headers[k] = v
			}
			// A client's own say on its address, which must not count.
			headers["x-forwarded-for"] = "192.0.2.66"
			headers["x-real-ip"] = "192.0.2.67"
			e := newEngine(t, c.policy, c.edits...)
			base := serveHTTP(t, e)
			var got seen
			for range c.warmup + 1 {
				got = k.ask(t, base, h.GetMethod(), h.GetPath(), h.GetHost(), peer, headers, payments, "x-client")
			}
			want := checkSeen(readCheckResponse(t, filepath.Join(goldenDir, name+".response.json")))
			slices.Sort(want.response)
			if !equalSeen(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}
