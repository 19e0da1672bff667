package proxyless_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	// protojson resolves the README's "@type"s only for types linked in.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// The README's placeholders, which the tests replace with the addresses of
// what they start: tollgate's gRPC address, the backend's and the
// management server's.
const (
	tollgatePlaceholder = "tollgate.internal:9001"
	backendHost         = "payments.internal"
	backendPort         = "50051"
	xdsPlaceholder      = "xds.internal:18000"
)

// resourcesBlock is the first line of the README's xDS resources block;
// the bootstrap is its only json block.
const resourcesBlock = "# xDS resources (the management server serves these)"

// resources is the README's xDS resources block: what the management
// server serves to a proxyless client.
type resources struct {
	Listeners []json.RawMessage `json:"listeners"`
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
}

// readmeResources decodes the README's xDS resources, with tollgate at
// tollgateAddr and the backend at backendAddr, strictly (an unknown field
// is an error), and checks each with its generated validation, the
// connection manager and its ext_proc filter inside their Anys too.
func readmeResources(t *testing.T, tollgateAddr, backendAddr string) map[resource.Type][]types.Resource {
	t.Helper()
	host, port, err := net.SplitHostPort(backendAddr)
	if err != nil {
		t.Fatal(err)
	}
	text := readmeBlock(t, "yaml", resourcesBlock)
	for _, r := range [][2]string{{tollgatePlaceholder, tollgateAddr}, {backendHost, host},
		{"port_value: " + backendPort, "port_value: " + port}} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("README.md: the xDS resources hold no %q", r[0])
		}
		text = strings.ReplaceAll(text, r[0], r[1])
	}
	var rs resources
	if err := yaml.UnmarshalStrict([]byte(text), &rs); err != nil {
		t.Fatalf("README.md: the xDS resources: %v", err)
	}
	out := map[resource.Type][]types.Resource{}
	decode := func(typ resource.Type, raws []json.RawMessage, newMsg func() types.Resource) {
		for i, raw := range raws {
			m := newMsg()
			if err := protojson.Unmarshal(raw, m); err != nil {
				t.Fatalf("README.md: %s %d: %v", typ, i, err)
			}
			validate(t, m)
			out[typ] = append(out[typ], m)
		}
	}
	decode(resource.ListenerType, rs.Listeners, func() types.Resource { return new(listenerv3.Listener) })
	decode(resource.ClusterType, rs.Clusters, func() types.Resource { return new(clusterv3.Cluster) })
	decode(resource.EndpointType, rs.Endpoints, func() types.Resource { return new(endpointv3.ClusterLoadAssignment) })
	for _, l := range out[resource.ListenerType] {
		hcm := new(hcmv3.HttpConnectionManager)
		if err := l.(*listenerv3.Listener).GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
			t.Fatalf("README.md: listener's api_listener: %v", err)
		}
		validate(t, hcm)
		for _, f := range hcm.GetHttpFilters() {
			inner, err := f.GetTypedConfig().UnmarshalNew()
			if err != nil {
				t.Fatalf("README.md: http filter %s: %v", f.GetName(), err)
			}
			validate(t, inner)
		}
	}
	return out
}

// validate fails t when m does not pass its generated validation.
func validate(t *testing.T, m proto.Message) {
	t.Helper()
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("README.md: %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
		}
	}
}

// managementServer is a go-control-plane xDS server in this process: a
// snapshot cache served over ADS.
type managementServer struct {
	addr  string
	cache cachev3.SnapshotCache
}

// startManagementServer serves an empty snapshot cache on a free loopback
// port until the test ends.
func startManagementServer(t *testing.T) *managementServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	s := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s, serverv3.NewServer(ctx, cache, nil))
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lis) }()
	t.Cleanup(func() {
		cancel()
		s.Stop()
		if err := <-errc; err != nil {
			t.Errorf("management server: got %v, want nil", err)
		}
	})
	return &managementServer{addr: lis.Addr().String(), cache: cache}
}

// serve sets the resources of the node: a complete, consistent snapshot,
// set before the client starts, so that its first requests find them.
func (m *managementServer) serve(t *testing.T, node string, rs map[resource.Type][]types.Resource) {
	t.Helper()
	snap, err := cachev3.NewSnapshot("1", rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatalf("snapshot of %s: %v", node, err)
	}
	if err := m.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// bootstrapFile writes the README's bootstrap for the node, with the
// management server at xdsAddr and tollgate at tollgateAddr, and returns
// its path.
func bootstrapFile(t *testing.T, node, xdsAddr, tollgateAddr string) string {
	t.Helper()
	text := readmeBlock(t, "json", "")
	for _, r := range [][2]string{{xdsPlaceholder, xdsAddr}, {tollgatePlaceholder, tollgateAddr}} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("README.md: the bootstrap holds no %q", r[0])
		}
		text = strings.ReplaceAll(text, r[0], r[1])
	}
	var b map[string]any
	if err := json.Unmarshal([]byte(text), &b); err != nil {
		t.Fatalf("README.md: the bootstrap: %v", err)
	}
	n, ok := b["node"].(map[string]any)
	if !ok {
		t.Fatal("README.md: the bootstrap has no node")
	}
	n["id"] = node
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), node+".json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
