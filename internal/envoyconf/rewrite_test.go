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
func TestRewriteWithOtherFilterName(t *testing.T) {
	kit := strings.ReplaceAll(authzKit(t), "envoy.filters.http.ext_authz:", "tollgate-authz:")
	kit = strings.Replace(kit, "          - name: envoy.filters.http.ext_authz\n", "          - name: tollgate-authz\n", 1)
	kit = strings.Replace(kit, "route: {cluster: api, timeout: 15s}", "route: {cluster: api, timeout: 15s, prefix_rewrite: /v1/}", 1)
	_, problems := Check([]byte(kit))
	if !flagsRewrite(problems) {
		t.Errorf("missed: a rewrite on a route checked by an ext_authz filter named tollgate-authz: %q", problems)
	}
}

// vhAuthzConfig is the kit's virtual host's per-filter config.
const vhAuthzConfig = "              typed_per_filter_config:\n                envoy.filters.http.ext_authz:\n                  \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                  check_settings:\n                    context_extensions: {api: payments, stage: prod}\n"

// Envoy unwraps a FilterConfig's config and hands it to the filter as its
// per-route config: FilterConfig{config: ExtAuthzPerRoute{disabled: true}}
// (is_optional or not) turns ext_authz off on the route, like a bare
// ExtAuthzPerRoute{disabled: true}: the route is not checked.
func TestRewriteFilterConfigWrappingDisabledPerRoute(t *testing.T) {
	for _, optional := range []string{"", "                    is_optional: true\n"} {
		kit := strings.Replace(authzKit(t), "              - match: {prefix: /}\n                route: {cluster: api, timeout: 15s}\n",
			"              - match: {prefix: /static/}\n                route: {cluster: api, prefix_rewrite: /}\n"+
				"                typed_per_filter_config:\n                  envoy.filters.http.ext_authz:\n"+
				"                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n"+optional+
				"                    config:\n                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                      disabled: true\n"+
				"              - match: {prefix: /}\n                route: {cluster: api, timeout: 15s}\n", 1)
		_, problems := Check([]byte(kit))
		if flagsRewrite(problems) {
			t.Errorf("false positive (is_optional %v): the route's FilterConfig holds ExtAuthzPerRoute{disabled: true}: %q", optional != "", problems)
		}
	}
}

// RouteConfiguration.typed_per_filter_config is the least specific level
// (route, then virtual host, then route configuration): a filter off by
// default that the route configuration turns on checks every route that
// does not turn it off: a rewrite there is flagged.
func TestRewriteFilterEnabledAtRouteConfig(t *testing.T) {
	kit := authzKit(t)
	kit = strings.Replace(kit, "          - name: envoy.filters.http.ext_authz\n            typed_config:",
		"          - name: envoy.filters.http.ext_authz\n            disabled: true\n            typed_config:", 1)
	if !strings.Contains(kit, vhAuthzConfig) {
		t.Fatal("no virtual host config")
	}
	kit = strings.Replace(kit, vhAuthzConfig, "", 1)
	// The same config, one level up: on the route configuration.
	kit = strings.Replace(kit, "            name: api\n            virtual_hosts:\n",
		"            name: api\n            typed_per_filter_config:\n              envoy.filters.http.ext_authz:\n"+
			"                \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n"+
			"                check_settings:\n                  context_extensions: {api: payments, stage: prod}\n"+
			"            virtual_hosts:\n", 1)
	kit = strings.Replace(kit, "route: {cluster: api, timeout: 15s}", "route: {cluster: api, timeout: 15s, prefix_rewrite: /v1/}", 1)
	b, problems := Check([]byte(kit))
	if b == nil || len(b.GetStaticResources().GetListeners()) == 0 {
		t.Fatalf("kit does not decode: %q", problems)
	}
	if !flagsRewrite(problems) {
		t.Errorf("missed: ext_authz (disabled by default) is turned on for every route by the route configuration's typed_per_filter_config, and route / rewrites: %q", problems)
	}
}

// The other way: the route configuration turns ext_authz off for all
// routes (FilterConfig{disabled: true}); no virtual host or route turns it
// back on. Envoy does not run it: a rewrite is fine.
func TestRewriteFilterDisabledAtRouteConfig(t *testing.T) {
	kit := strings.Replace(authzKit(t), vhAuthzConfig, "", 1)
	kit = strings.Replace(kit, "            name: api\n            virtual_hosts:\n",
		"            name: api\n            typed_per_filter_config:\n              envoy.filters.http.ext_authz:\n"+
			"                \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                disabled: true\n"+
			"            virtual_hosts:\n", 1)
	kit = strings.Replace(kit, "route: {cluster: api, timeout: 15s}", "route: {cluster: api, timeout: 15s, prefix_rewrite: /v1/}", 1)
	// Route 2 is "/": the /beta/ route has its own config and stays checked.
	_, problems := Check([]byte(kit))
	for _, p := range problems {
		if strings.Contains(p, rewriteProblem) && strings.Contains(p, "route 2") {
			t.Errorf("false positive: ext_authz is off for route / (route configuration's FilterConfig{disabled: true}): %q", p)
		}
	}
}
