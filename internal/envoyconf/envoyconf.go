// Package envoyconf checks the Envoy bootstrap configurations that tollgate
// ships, for the tests of both modules of the repository: the product's
// (envoy/) and the examples' (examples/, a module of its own so that the
// product does not require what only those tests use). It lives under
// internal/ and is still importable from the examples: the go command
// allows an internal package to every import path under its parent, and
// github.com/tollgate/tollgate/examples is one.
//
//	b, problems := envoyconf.Check(data) // every problem found
//	b := envoyconf.Load(t, "envoy.yaml", data) // each problem fails t
package envoyconf

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Check decodes an Envoy bootstrap in YAML strictly (an unknown
// field or type is an error) and checks it as Envoy would not: every
// message passes its generated validation, every google.protobuf.Any inside
// (ValidateAll does not look in) decodes to a known type and passes too,
// every cluster a route, a gRPC service or a load assignment names exists,
// every cluster named by a gRPC service speaks HTTP/2, and every gRPC
// ext_authz filter sends raw headers (encode_raw_headers: with header values as
// strings, one that is not UTF-8 fails the Check: gRPC refuses to send it).
// It returns the bootstrap and every problem found.
func Check(data []byte) (*bootstrapv3.Bootstrap, []string) {
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return nil, []string{err.Error()}
	}
	js, err := json.Marshal(tree)
	if err != nil {
		return nil, []string{err.Error()}
	}
	b := new(bootstrapv3.Bootstrap)
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, []string{err.Error()}
	}
	var problems []string
	refs := map[string][]string{} // cluster → where it is named
	grpcRefs := map[string]bool{}
	var walk func(m protoreflect.Message, at string)
	walk = func(m protoreflect.Message, at string) {
		if v, ok := m.Interface().(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				problems = append(problems, fmt.Sprintf("%s (%s): %v", at, m.Descriptor().FullName(), err))
			}
		}
		if a, ok := m.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %s: %v", at, a.GetTypeUrl(), err))
				return
			}
			where := at + "<" + string(inner.ProtoReflect().Descriptor().Name()) + ">"
			if ea, ok := inner.(*extauthzv3.ExtAuthz); ok && ea.GetGrpcService() != nil && !ea.GetEncodeRawHeaders() {
				problems = append(problems, where+": encode_raw_headers is not true: a header value that is not UTF-8 would fail the Check")
			}
			walk(inner.ProtoReflect(), where)
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			where := at + "." + string(fd.Name())
			switch {
			case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", where, i))
				}
			case fd.IsMap() && fd.MapValue().Kind() == protoreflect.MessageKind:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), where+"["+k.String()+"]")
					return true
				})
			case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
				walk(v.Message(), where)
			case fd.Kind() == protoreflect.StringKind && !fd.IsList() && (fd.Name() == "cluster" || fd.Name() == "cluster_name"):
				refs[v.String()] = append(refs[v.String()], where)
				if m.Descriptor().Name() == "EnvoyGrpc" {
					grpcRefs[v.String()] = true
				}
			}
			return true
		})
	}
	walk(b.ProtoReflect(), "bootstrap")

	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
		if !grpcRefs[c.GetName()] {
			continue
		}
		opts := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		var hpo upstreamsv3.HttpProtocolOptions
		if opts == nil || opts.UnmarshalTo(&hpo) != nil || hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			problems = append(problems, fmt.Sprintf("cluster %s: named by a gRPC service, but not HTTP/2 (explicit_http_config.http2_protocol_options)", c.GetName()))
		}
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !clusters[n] {
			problems = append(problems, fmt.Sprintf("cluster %q is named at %s but not defined", n, strings.Join(refs[n], ", ")))
		}
	}
	problems = append(problems, routeProblems(b)...)
	return b, problems
}

// askers returns the HTTP filters of hcm that ask tollgate (ext_authz and
// ext_proc, whatever their names), each with whether it is off unless a
// route or virtual host turns it on (disabled: true).
func askers(hcm *hcmv3.HttpConnectionManager) map[string]bool {
	out := map[string]bool{}
	for _, hf := range hcm.GetHttpFilters() {
		tc := hf.GetTypedConfig()
		if tc.MessageIs((*extauthzv3.ExtAuthz)(nil)) || tc.MessageIs((*extprocv3.ExternalProcessor)(nil)) {
			out[hf.GetName()] = hf.GetDisabled()
		}
	}
	return out
}

// asksTollgate reports whether a route whose per-filter configs (its own
// over its virtual host's over its route configuration's, as Envoy looks
// them up) are cfgs is checked by one of the askers: one that is on and
// that cfgs do not turn off, or one off by default that cfgs turn on (any
// config of it but one that turns it off).
func asksTollgate(askers map[string]bool, cfgs map[string]*anypb.Any) bool {
	for name, offByDefault := range askers {
		c := cfgs[name]
		if c == nil && !offByDefault || c != nil && !turnsOff(c) {
			return true
		}
	}
	return false
}

// turnsOff reports whether a per-filter config turns its filter off: an
// ExtAuthzPerRoute or ExtProcPerRoute with disabled: true, or the generic
// FilterConfig with disabled: true or wrapping one of those.
func turnsOff(c *anypb.Any) bool {
	var authz extauthzv3.ExtAuthzPerRoute
	var proc extprocv3.ExtProcPerRoute
	var generic routev3.FilterConfig
	switch {
	case c.UnmarshalTo(&authz) == nil:
		return authz.GetDisabled()
	case c.UnmarshalTo(&proc) == nil:
		return proc.GetDisabled()
	case c.UnmarshalTo(&generic) == nil:
		return generic.GetDisabled() || generic.GetConfig() != nil && turnsOff(generic.GetConfig())
	}
	return false
}

// routeProblems checks the routes of each connection manager:
//   - every typed_per_filter_config of a route or virtual host names an
//     HTTP filter of its connection manager: a typo would silently drop the
//     stage or the disabling it holds;
//   - a route that tollgate checks does not rewrite the path: the filters
//     ask before the router rewrites, so tollgate would match a path (and
//     find its route, key and limits) other than the one the upstream
//     serves: a rewritten key-required route would pass as unknown.
func routeProblems(b *bootstrapv3.Bootstrap) []string {
	var problems []string
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				names := map[string]bool{}
				for _, hf := range hcm.GetHttpFilters() {
					names[hf.GetName()] = true
				}
				askers := askers(&hcm)
				check := func(where string, cfgs map[string]*anypb.Any) {
					for name := range cfgs {
						if !names[name] {
							problems = append(problems, fmt.Sprintf("%s: typed_per_filter_config %q names no HTTP filter of listener %s", where, name, l.GetName()))
						}
					}
				}
				rc := hcm.GetRouteConfig()
				check("route configuration "+rc.GetName(), rc.GetTypedPerFilterConfig())
				for _, vh := range rc.GetVirtualHosts() {
					check("virtual host "+vh.GetName(), vh.GetTypedPerFilterConfig())
					for i, r := range vh.GetRoutes() {
						where := fmt.Sprintf("virtual host %s route %d", vh.GetName(), i)
						check(where, r.GetTypedPerFilterConfig())
						ra := r.GetRoute()
						cfgs := map[string]*anypb.Any{} // the most specific wins
						maps.Copy(cfgs, rc.GetTypedPerFilterConfig())
						maps.Copy(cfgs, vh.GetTypedPerFilterConfig())
						maps.Copy(cfgs, r.GetTypedPerFilterConfig())
						if (ra.GetPrefixRewrite() != "" || ra.GetRegexRewrite() != nil || ra.GetPathRewritePolicy() != nil) &&
							asksTollgate(askers, cfgs) {
							problems = append(problems, where+": rewrites the path of a request tollgate checks: tollgate sees the path before the rewrite, not the one the upstream serves")
						}
					}
				}
			}
		}
	}
	return problems
}

// Load is Check that fails the test on any problem, each reported with
// name, and returns the bootstrap.
func Load(t testing.TB, name string, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, problems := Check(data)
	for _, p := range problems {
		t.Errorf("%s: %s", name, p)
	}
	if b == nil {
		t.FailNow()
	}
	return b
}
