package envoy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// EnvoyConfigs returns the Envoy bootstrap files that tollgate ships: every
// YAML file in envoy/ (testdata aside) and every envoy*.yaml in the
// examples.
func envoyConfigs(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "../examples/*/envoy*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 3 {
		t.Fatalf("got %d Envoy configs (%v), want envoy/ext_authz.yaml, envoy/ext_proc.yaml and the examples'", len(files), files)
	}
	return files
}

// checkBootstrap decodes an Envoy bootstrap in YAML strictly (an unknown
// field or type is an error) and checks it as Envoy would not: every
// message passes its generated validation, every google.protobuf.Any inside
// (ValidateAll does not look in) decodes to a known type and passes too,
// every cluster a route, a gRPC service or a load assignment names exists,
// every cluster named by a gRPC service speaks HTTP/2, and every ext_authz
// filter sends raw headers (encode_raw_headers: with header values as
// strings, one that is not UTF-8 fails the Check: gRPC refuses to send it).
// It returns the bootstrap and every problem found.
func checkBootstrap(data []byte) (*bootstrapv3.Bootstrap, []string) {
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
			if ea, ok := inner.(*extauthzv3.ExtAuthz); ok && !ea.GetEncodeRawHeaders() {
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
	problems = append(problems, perFilterNames(b)...)
	return b, problems
}

// perFilterNames checks that every typed_per_filter_config of a route or
// virtual host names an HTTP filter of its connection manager: a typo would
// silently drop the stage or the disabling it holds.
func perFilterNames(b *bootstrapv3.Bootstrap) []string {
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
				check := func(where string, cfgs map[string]*anypb.Any) {
					for name := range cfgs {
						if !names[name] {
							problems = append(problems, fmt.Sprintf("%s: typed_per_filter_config %q names no HTTP filter of listener %s", where, name, l.GetName()))
						}
					}
				}
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					check("virtual host "+vh.GetName(), vh.GetTypedPerFilterConfig())
					for i, r := range vh.GetRoutes() {
						check(fmt.Sprintf("virtual host %s route %d", vh.GetName(), i), r.GetTypedPerFilterConfig())
					}
				}
			}
		}
	}
	return problems
}

// loadBootstrap is checkBootstrap that fails the test on any problem.
func loadBootstrap(t *testing.T, name string, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, problems := checkBootstrap(data)
	for _, p := range problems {
		t.Errorf("%s: %s", name, p)
	}
	if b == nil {
		t.FailNow()
	}
	return b
}

// TestEnvoyConfigsValid: every Envoy configuration tollgate ships decodes
// and validates, nested typed_configs included, and names only clusters it
// defines.
func TestEnvoyConfigsValid(t *testing.T) {
	for _, f := range envoyConfigs(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		loadBootstrap(t, f, data)
	}
}

// TestLoadBootstrapCatches: the checker itself finds what it must: an
// unknown field, a bad nested typed_config, a missing cluster and a gRPC
// cluster without HTTP/2.
func TestLoadBootstrapCatches(t *testing.T) {
	data, err := os.ReadFile("ext_authz.yaml")
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
		{"per-filter typo", "                envoy.filters.http.ext_authz:\n                  \"@type\"", "                envoy.filters.http.extauthz:\n                  \"@type\"", `"envoy.filters.http.extauthz" names no HTTP filter`},
	} {
		if !strings.Contains(good, c.old) {
			t.Fatalf("%s: no %q in ext_authz.yaml", c.name, c.old)
		}
		_, problems := checkBootstrap([]byte(strings.Replace(good, c.old, c.new, 1)))
		if !slices.ContainsFunc(problems, func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s: got %q, want a problem holding %q", c.name, problems, c.want)
		}
	}
	_, problems := checkBootstrap([]byte(strings.Replace(good, "stat_prefix: ingress", "stat_prefix: ingress\n          no_such_field: 1", 1)))
	if len(problems) == 0 || !strings.Contains(problems[0], "no_such_field") {
		t.Errorf("unknown field: got %q, want it named", problems)
	}
}

// TestMTLSKitCatches: the checker reads inside the transport socket of the
// mTLS kit: a bad value in its UpstreamTlsContext is found.
func TestMTLSKitCatches(t *testing.T) {
	data, err := os.ReadFile("ext_authz_mtls.yaml")
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
		_, problems := checkBootstrap([]byte(strings.Replace(string(data), c.old, c.new, 1)))
		if !slices.ContainsFunc(problems, func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s: got %q, want a problem holding %q", c.name, problems, c.want)
		}
	}
}

// TestMTLSKit: the mTLS kit's tollgate cluster speaks TLS 1.2 or later with
// ALPN h2 (tollgate refuses TLS without it), presents a client
// certificate, trusts a CA and checks that tollgate's certificate names
// the SNI it sends (Envoy checks no name unless told to).
func TestMTLSKit(t *testing.T) {
	data, err := os.ReadFile("ext_authz_mtls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := loadBootstrap(t, "ext_authz_mtls.yaml", data)
	ctx := upstreamTLS(t, b, "tollgate")
	common := ctx.GetCommonTlsContext()
	if !slices.Contains(common.GetAlpnProtocols(), "h2") {
		t.Errorf("alpn_protocols: got %q, want h2", common.GetAlpnProtocols())
	}
	if v := common.GetTlsParams().GetTlsMinimumProtocolVersion(); v < tlsv3.TlsParameters_TLSv1_2 {
		t.Errorf("tls_minimum_protocol_version: got %v, want TLSv1_2 or later", v)
	}
	if certs := common.GetTlsCertificates(); len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() == "" || certs[0].GetPrivateKey().GetFilename() == "" {
		t.Errorf("tls_certificates: got %v, want one client certificate and key from files", certs)
	}
	vc := common.GetValidationContext()
	if vc.GetTrustedCa().GetFilename() == "" {
		t.Error("validation_context.trusted_ca: none, want the CA's file")
	}
	sans := vc.GetMatchTypedSubjectAltNames()
	if ctx.GetSni() == "" || len(sans) != 1 || sans[0].GetMatcher().GetExact() != ctx.GetSni() {
		t.Errorf("sni %q, match_typed_subject_alt_names %v: want the SNI matched exactly", ctx.GetSni(), sans)
	}
}

// upstreamTLS returns the UpstreamTlsContext of cluster name in b.
func upstreamTLS(t *testing.T, b *bootstrapv3.Bootstrap, name string) *tlsv3.UpstreamTlsContext {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != name {
			continue
		}
		var ctx tlsv3.UpstreamTlsContext
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&ctx); err != nil {
			t.Fatalf("cluster %s: transport_socket: %v", name, err)
		}
		return &ctx
	}
	t.Fatalf("no cluster %s", name)
	return nil
}
