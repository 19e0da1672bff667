package envoyconf

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestLoadBootstrapCatches: the checker itself finds what it must: an
// unknown field, a bad nested typed_config, a missing cluster and a gRPC
// cluster without HTTP/2.
func TestLoadBootstrapCatches(t *testing.T) {
	data, err := os.ReadFile("../../envoy/ext_authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := string(data)
	for _, c := range []struct{ name, old, new, want string }{
		{"nested typed_config", "stat_prefix: ingress", `stat_prefix: ""`, "HttpConnectionManager"},
		{"nested deeper", "status_on_error: {code: ServiceUnavailable}", "status_on_error: {code: 1}", "ExtAuthz"},
		{"missing cluster", "route: {cluster: api, timeout: 15s}", "route: {cluster: nowhere, timeout: 15s}", `cluster "nowhere" is named`},
		{"no http2", "http2_protocol_options: {}", "http_protocol_options: {}", "not HTTP/2"},
		{"raw headers off", "encode_raw_headers: true", "encode_raw_headers: false", "encode_raw_headers is not true"},
		{"rewrite of a checked route", "route: {cluster: api, timeout: 15s}", "route: {cluster: api, timeout: 15s, prefix_rewrite: /v1/}", "rewrites the path of a request tollgate checks"},
		{"per-filter typo", "                envoy.filters.http.ext_authz:\n                  \"@type\"", "                envoy.filters.http.extauthz:\n                  \"@type\"", `"envoy.filters.http.extauthz" names no HTTP filter`},
	} {
		if !strings.Contains(good, c.old) {
			t.Fatalf("%s: no %q in ext_authz.yaml", c.name, c.old)
		}
		_, problems := Check([]byte(strings.Replace(good, c.old, c.new, 1)))
		if !slices.ContainsFunc(problems, func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s: got %q, want a problem holding %q", c.name, problems, c.want)
		}
	}
	_, problems := Check([]byte(strings.Replace(good, "stat_prefix: ingress", "stat_prefix: ingress\n          no_such_field: 1", 1)))
	if len(problems) == 0 || !strings.Contains(problems[0], "no_such_field") {
		t.Errorf("unknown field: got %q, want it named", problems)
	}
}

// TestMTLSKitCatches: the checker reads inside the transport socket of the
// mTLS kit: a bad value in its UpstreamTlsContext is found.
func TestMTLSKitCatches(t *testing.T) {
	data, err := os.ReadFile("../../envoy/ext_authz_mtls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, old, new, want string }{
		{"san type", "san_type: DNS", "san_type: SAN_TYPE_UNSPECIFIED", "SubjectAltNameMatcher"},
		{"tls field", "sni: tollgate", "sni: tollgate\n        no_such_field: 1", "no_such_field"},
	} {
		if !strings.Contains(string(data), c.old) {
			t.Fatalf("%s: no %q in ext_authz_mtls.yaml", c.name, c.old)
		}
		_, problems := Check([]byte(strings.Replace(string(data), c.old, c.new, 1)))
		if !slices.ContainsFunc(problems, func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s: got %q, want a problem holding %q", c.name, problems, c.want)
		}
	}
}
