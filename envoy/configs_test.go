package envoy_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/tollgate/tollgate/internal/envoyconf"
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

// TestEnvoyConfigsValid: every Envoy configuration tollgate ships decodes
// and validates, nested typed_configs included, and names only clusters it
// defines.
func TestEnvoyConfigsValid(t *testing.T) {
	for _, f := range envoyConfigs(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		envoyconf.Load(t, f, data)
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
	b := envoyconf.Load(t, "ext_authz_mtls.yaml", data)
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
