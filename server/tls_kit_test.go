package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// The mTLS kit: envoy/ext_authz_mtls.yaml and envoy/mtls-certs.sh.
const (
	kitEnvoy   = "../envoy/ext_authz_mtls.yaml"
	kitScript  = "../envoy/mtls-certs.sh"
	kitCertDir = "/etc/envoy/certs/"
)

// TestMTLSKit makes the certificates with the kit's script, serves tollgate
// with them as the script says, and connects the way the kit's Envoy
// cluster does: its SNI, ALPN, minimum version, client certificate, trusted
// CA and subject-name match, read from the YAML. The connection must
// negotiate h2 and get decisions and health answers.
func TestMTLSKit(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed (Debian: apt-get install openssl); envoy/mtls-certs.sh needs it")
	}
	up := kitUpstreamTLS(t)
	dir := t.TempDir()
	if out, err := exec.Command("sh", kitScript, dir, up.GetSni()).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", kitScript, err, out)
	}
	h := serve(t, testPolicy(t), func(c *Config) {
		c.GRPCTLSCert, c.GRPCTLSKey = filepath.Join(dir, "tollgate.pem"), filepath.Join(dir, "tollgate.key")
		c.GRPCClientCA = filepath.Join(dir, "ca.pem")
	})
	cfg := kitClientConfig(t, up, dir)
	addr := h.s.Addr().String()

	c, err := (&tls.Dialer{Config: cfg}).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("handshake with the kit's settings: %v", err)
	}
	if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("negotiated %q, want h2", p)
	}
	c.Close()

	// gRPC over connections made exactly as the kit says (not by grpc's
	// own TLS credentials, which would add what the kit may lack).
	conn, err := grpc.NewClient("passthrough:///tollgate",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, request(freeKey))
	if err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("check over the kit's TLS: got %v, %v; want allowed", resp.GetStatus(), err)
	}
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over the kit's TLS: got %v, %v; want SERVING", hr.GetStatus(), err)
	}
}

// kitUpstreamTLS returns the UpstreamTlsContext of the kit's tollgate
// cluster.
func kitUpstreamTLS(t *testing.T) *tlsv3.UpstreamTlsContext {
	t.Helper()
	data, err := os.ReadFile(kitEnvoy)
	if err != nil {
		t.Fatal(err)
	}
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("%s: %v", kitEnvoy, err)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == "tollgate" {
			var up tlsv3.UpstreamTlsContext
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
				t.Fatalf("%s: cluster tollgate: %v", kitEnvoy, err)
			}
			return &up
		}
	}
	t.Fatalf("%s: no cluster tollgate", kitEnvoy)
	return nil
}

// kitClientConfig is the client side of up as Envoy applies it, with the
// files of /etc/envoy/certs/ taken from dir.
func kitClientConfig(t *testing.T, up *tlsv3.UpstreamTlsContext, dir string) *tls.Config {
	t.Helper()
	common := up.GetCommonTlsContext()
	file := func(name string) string {
		rel, ok := strings.CutPrefix(name, kitCertDir)
		if !ok {
			t.Fatalf("%s: %s is not under %s", kitEnvoy, name, kitCertDir)
		}
		return filepath.Join(dir, rel)
	}
	cfg := &tls.Config{ServerName: up.GetSni(), NextProtos: common.GetAlpnProtocols()}
	switch v := common.GetTlsParams().GetTlsMinimumProtocolVersion(); v {
	case tlsv3.TlsParameters_TLSv1_2:
		cfg.MinVersion = tls.VersionTLS12
	case tlsv3.TlsParameters_TLSv1_3:
		cfg.MinVersion = tls.VersionTLS13
	default:
		t.Fatalf("%s: tls_minimum_protocol_version %v", kitEnvoy, v)
	}
	for _, c := range common.GetTlsCertificates() {
		pair, err := tls.LoadX509KeyPair(file(c.GetCertificateChain().GetFilename()), file(c.GetPrivateKey().GetFilename()))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	vc := common.GetValidationContext()
	caPEM, err := os.ReadFile(file(vc.GetTrustedCa().GetFilename()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RootCAs = x509.NewCertPool()
	if !cfg.RootCAs.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s: no certificate", vc.GetTrustedCa().GetFilename())
	}
	// Envoy checks the names of match_typed_subject_alt_names (and no
	// other): Go checks ServerName as well, which the kit sets to the same.
	sans := vc.GetMatchTypedSubjectAltNames()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		leaf := cs.PeerCertificates[0]
		for _, m := range sans {
			if m.GetSanType() == tlsv3.SubjectAltNameMatcher_DNS && slices.Contains(leaf.DNSNames, m.GetMatcher().GetExact()) {
				return nil
			}
		}
		return fmt.Errorf("no subject alt name of %q matches %v", leaf.DNSNames, sans)
	}
	return cfg
}
