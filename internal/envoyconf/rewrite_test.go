package envoyconf

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// rewriteProblem is Check's problem of a route that rewrites the path of a
// request tollgate checks. The cases below are a reviewer's: filters turned
// off in Envoy's other ways, and filters of other names.
const rewriteProblem = "rewrites the path of a request tollgate checks"

// authzKit returns the ext_authz kit.
func authzKit(t *testing.T) string {
	data, err := os.ReadFile("../../envoy/ext_authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// flagsRewrite reports whether problems hold rewriteProblem.
func flagsRewrite(problems []string) bool {
	return slices.ContainsFunc(problems, func(e string) bool { return strings.Contains(e, rewriteProblem) })
}

// A route that disables ext_authz with Envoy's generic per-route
// FilterConfig{disabled: true} is not checked by tollgate: its rewrite is fine.
func TestRewriteOnRouteDisabledByFilterConfig(t *testing.T) {
	kit := strings.Replace(authzKit(t), "              - match: {prefix: /}\n                route: {cluster: api, timeout: 15s}\n",
		"              - match: {prefix: /static/}\n                route: {cluster: api, prefix_rewrite: /}\n"+
			"                typed_per_filter_config:\n                  envoy.filters.http.ext_authz:\n"+
			"                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                    disabled: true\n"+
			"              - match: {prefix: /}\n                route: {cluster: api, timeout: 15s}\n", 1)
	_, problems := Check([]byte(kit))
	if flagsRewrite(problems) {
		t.Errorf("false positive on a route that disables ext_authz with FilterConfig: %q", problems)
	}
}

// An ext_authz filter that is disabled by default (http_filters[].disabled:
// true) checks no route that does not enable it: a rewrite there is fine.
func TestRewriteWithFilterDisabledByDefault(t *testing.T) {
	kit := authzKit(t)
	kit = strings.Replace(kit, "          - name: envoy.filters.http.ext_authz\n            typed_config:",
		"          - name: envoy.filters.http.ext_authz\n            disabled: true\n            typed_config:", 1)
	// Any per-filter config of the route or virtual host enables such a
	// filter: drop the virtual host's, so that route "/" does not.
	vh := "              typed_per_filter_config:\n                envoy.filters.http.ext_authz:\n                  \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                  check_settings:\n                    context_extensions: {api: payments, stage: prod}\n"
	if !strings.Contains(kit, vh) {
		t.Fatal("no virtual host config")
	}
	kit = strings.Replace(kit, vh, "", 1)
	kit = strings.Replace(kit, "route: {cluster: api, timeout: 15s}", "route: {cluster: api, timeout: 15s, prefix_rewrite: /v1/}", 1)
	_, problems := Check([]byte(kit))
	if flagsRewrite(problems) {
		t.Errorf("false positive: ext_authz is disabled by default and the route does not enable it: %q", problems)
	}
}

// An ext_authz filter named other than envoy.filters.http.ext_authz (Envoy
// keys filters by their name, any name) is still tollgate's: a rewrite on a
// route it checks must be flagged.
func TestRewriteMissedWithOtherFilterName(t *testing.T) {
	kit := strings.ReplaceAll(authzKit(t), "envoy.filters.http.ext_authz:", "tollgate-authz:")
	kit = strings.Replace(kit, "          - name: envoy.filters.http.ext_authz\n", "          - name: tollgate-authz\n", 1)
	kit = strings.Replace(kit, "route: {cluster: api, timeout: 15s}", "route: {cluster: api, timeout: 15s, prefix_rewrite: /v1/}", 1)
	_, problems := Check([]byte(kit))
	if !flagsRewrite(problems) {
		t.Errorf("missed: a rewrite on a route checked by an ext_authz filter named tollgate-authz: %q", problems)
	}
}
