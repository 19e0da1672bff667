package examples_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/tollgate/tollgate/internal/envoyconf"
	"github.com/tollgate/tollgate/policyfile"
)

// manifests is what a multi-document Kubernetes manifest decodes to:
// typed core and apps objects by kind and name, and the raw documents of
// the kinds Kubernetes does not know (Istio's).
type manifests struct {
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	services    map[string]*corev1.Service
	deployments map[string]*appsv1.Deployment
	other       map[string][]byte // "Kind/name" → the document
}

// decoder is Kubernetes' own deserializer for the core and apps groups, in
// strict mode: an unknown or repeated field is an error.
var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := appsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// loadManifests decodes every document of the files.
func loadManifests(t *testing.T, files ...string) *manifests {
	t.Helper()
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{}, other: map[string][]byte{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, gvk, err := decoder.Decode(doc, nil, nil)
			if runtime.IsNotRegisteredError(err) {
				var head struct {
					Kind     string
					Metadata struct{ Name string }
				}
				if err := yaml.Unmarshal(doc, &head); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				m.other[head.Kind+"/"+head.Metadata.Name] = doc
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			switch o := obj.(type) {
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.Secret:
				m.secrets[o.Name] = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *corev1.Namespace:
			default:
				t.Fatalf("%s: %v: not expected here", f, gvk)
			}
		}
	}
	return m
}

// container returns the container of d named name.
func container(t *testing.T, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("deployment %s: no container %s", d.Name, name)
	return corev1.Container{}
}

// mounted returns the content of the file at path in container c of d: a
// key of the ConfigMap volume mounted on path's directory.
func (m *manifests) mounted(t *testing.T, d *appsv1.Deployment, c corev1.Container, path string) string {
	t.Helper()
	dir, key := filepath.Split(path)
	for _, vm := range c.VolumeMounts {
		if filepath.Clean(vm.MountPath) != filepath.Clean(dir) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil {
				cm := m.configMaps[v.ConfigMap.Name]
				if cm == nil {
					t.Fatalf("%s: volume %s: no ConfigMap %s", c.Name, v.Name, v.ConfigMap.Name)
				}
				data, ok := cm.Data[key]
				if !ok {
					t.Fatalf("%s: ConfigMap %s has no %s", c.Name, cm.Name, key)
				}
				return data
			}
		}
	}
	t.Fatalf("%s: nothing from a ConfigMap is mounted at %s", c.Name, dir)
	return ""
}

// volumeAt returns the name of the volume c mounts at dir, or "".
func volumeAt(c corev1.Container, dir string) string {
	for _, vm := range c.VolumeMounts {
		if filepath.Clean(vm.MountPath) == filepath.Clean(dir) {
			return vm.Name
		}
	}
	return ""
}

// containerPort returns the number of c's port named name, or 0.
func containerPort(c corev1.Container, name string) uint32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return uint32(p.ContainerPort)
		}
	}
	return 0
}

// checkSecrets checks that every secret a container's env names exists
// with the key.
func (m *manifests) checkSecrets(t *testing.T, c corev1.Container) {
	t.Helper()
	for _, e := range c.Env {
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
			s := m.secrets[ref.SecretKeyRef.Name]
			if s == nil || (s.StringData[ref.SecretKeyRef.Key] == "" && len(s.Data[ref.SecretKeyRef.Key]) == 0) {
				t.Errorf("%s: env %s: no secret %s with key %s", c.Name, e.Name, ref.SecretKeyRef.Name, ref.SecretKeyRef.Key)
			}
		}
	}
}

// TestSidecarManifests decodes examples/sidecar with Kubernetes' own
// deserializer and checks the pod: Envoy runs the embedded config (valid,
// nested typed_configs and clusters checked), tollgate the embedded policy
// (compiles), Envoy reaches tollgate on the unix socket tollgate listens on,
// through a volume both mount, and the app on its port; the Service, the
// probes and the secret name what exists.
func TestSidecarManifests(t *testing.T) {
	m := loadManifests(t, "sidecar/orders.yaml")
	d := m.deployments["orders"]
	if d == nil {
		t.Fatal("no Deployment orders")
	}
	envoyC, tg, app := container(t, d, "envoy"), container(t, d, "tollgate"), container(t, d, "app")

	cfg := ""
	for i, a := range envoyC.Args {
		if a == "-c" && i+1 < len(envoyC.Args) {
			cfg = envoyC.Args[i+1]
		}
	}
	b := envoyconf.Load(t, "orders.yaml: envoy.yaml", []byte(m.mounted(t, d, envoyC, cfg)))
	policyPath, _ := flagValue(tg.Args, "policy")
	if _, err := policyfile.Parse("orders.yaml: policy.yaml", []byte(m.mounted(t, d, tg, policyPath))); err != nil {
		t.Errorf("the embedded policy: %v", err)
	}

	grpcAddr, _ := flagValue(tg.Args, "grpc-addr")
	socket, ok := strings.CutPrefix(grpcAddr, "unix:")
	if !ok {
		t.Fatalf("tollgate: --grpc-addr %q is not a unix socket", grpcAddr)
	}
	if v := volumeAt(tg, filepath.Dir(socket)); v == "" || v != volumeAt(envoyC, filepath.Dir(socket)) {
		t.Errorf("the socket's directory %s is not one volume mounted by both envoy and tollgate", filepath.Dir(socket))
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		for _, le := range c.GetLoadAssignment().GetEndpoints() {
			for _, ep := range le.GetLbEndpoints() {
				a := ep.GetEndpoint().GetAddress()
				switch c.GetName() {
				case "tollgate":
					if a.GetPipe().GetPath() != socket {
						t.Errorf("cluster tollgate: endpoint %v, want the pipe %s", a, socket)
					}
				case "app":
					if sa := a.GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != containerPort(app, "app") {
						t.Errorf("cluster app: endpoint %v, want 127.0.0.1:%d", a, containerPort(app, "app"))
					}
				}
			}
		}
	}
	listener := b.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue()
	svc := m.services["orders"]
	if svc == nil || containerPort(envoyC, svc.Spec.Ports[0].TargetPort.String()) != listener {
		t.Errorf("Service orders: targets %v, want Envoy's listener port %d", svc.Spec.Ports, listener)
	}
	adminAddr, _ := flagValue(tg.Args, "admin-addr")
	if containerPort(tg, tg.ReadinessProbe.HTTPGet.Port.String()) != portOf(t, adminAddr) {
		t.Errorf("tollgate: the readiness probe's port is not --admin-addr's %d", portOf(t, adminAddr))
	}
	m.checkSecrets(t, tg)
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the pod does not run as non-root")
	}
}

// TestIstioManifests decodes examples/istio: the Kubernetes objects with
// Kubernetes' deserializer, the mesh config and the AuthorizationPolicy with
// Istio's API types (strictly), and checks that the policy compiles, the
// extension provider names the tollgate Service and its gRPC port, the
// AuthorizationPolicy uses that provider, and tollgate's store names the
// Redis Service.
func TestIstioManifests(t *testing.T) {
	m := loadManifests(t, "istio/tollgate.yaml", "istio/mesh-config.yaml", "istio/authorization-policy.yaml")
	d := m.deployments["tollgate"]
	if d == nil {
		t.Fatal("no Deployment tollgate")
	}
	tg := container(t, d, "tollgate")
	policyPath, _ := flagValue(tg.Args, "policy")
	if _, err := policyfile.Parse("tollgate.yaml: policy.yaml", []byte(m.mounted(t, d, tg, policyPath))); err != nil {
		t.Errorf("the policy: %v", err)
	}
	m.checkSecrets(t, tg)
	grpcAddr, _ := flagValue(tg.Args, "grpc-addr")
	// Readiness must not follow Redis: during an outage every replica still
	// decides (locally), and unready replicas would leave Envoy none.
	if p := tg.ReadinessProbe; p == nil || p.GRPC == nil || uint32(p.GRPC.Port) != portOf(t, grpcAddr) {
		t.Errorf("tollgate: the readiness probe %+v is not the gRPC health check on --grpc-addr's port", p)
	}

	mesh := new(meshv1alpha1.MeshConfig)
	js, err := yaml.YAMLToJSON([]byte(m.configMaps["istio"].Data["mesh"]))
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(js, mesh); err != nil {
		t.Fatalf("mesh-config.yaml: %v", err)
	}
	var provider *meshv1alpha1.MeshConfig_ExtensionProvider
	for _, p := range mesh.GetExtensionProviders() {
		if p.GetEnvoyExtAuthzGrpc() != nil {
			provider = p
		}
	}
	if provider == nil {
		t.Fatal("mesh-config.yaml: no envoyExtAuthzGrpc provider")
	}
	svc := m.services["tollgate"]
	ext := provider.GetEnvoyExtAuthzGrpc()
	if want := svc.Name + "." + svc.Namespace + ".svc.cluster.local"; ext.GetService() != want {
		t.Errorf("provider %s: service %q, want %q", provider.GetName(), ext.GetService(), want)
	}
	found := false
	for _, p := range svc.Spec.Ports {
		if uint32(p.Port) == ext.GetPort() && containerPort(tg, p.TargetPort.String()) == portOf(t, grpcAddr) {
			found = true
		}
	}
	if !found {
		t.Errorf("provider %s: port %d is not a port of Service %s that reaches --grpc-addr %s", provider.GetName(), ext.GetPort(), svc.Name, grpcAddr)
	}

	doc := m.other["AuthorizationPolicy/shop-tollgate"]
	var ap struct {
		APIVersion string `json:"apiVersion"`
		Spec       any    `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &ap); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(ap.Spec)
	if err != nil {
		t.Fatal(err)
	}
	js, err = yaml.YAMLToJSON(spec)
	if err != nil {
		t.Fatal(err)
	}
	pol := new(securityv1beta1.AuthorizationPolicy)
	if err := protojson.Unmarshal(js, pol); err != nil {
		t.Fatalf("authorization-policy.yaml: %v", err)
	}
	if !strings.HasPrefix(ap.APIVersion, "security.istio.io/") || pol.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM ||
		pol.GetProvider().GetName() != provider.GetName() {
		t.Errorf("authorization-policy.yaml: %s action %v provider %q, want CUSTOM with provider %q", ap.APIVersion, pol.GetAction(), pol.GetProvider().GetName(), provider.GetName())
	}

	store, _ := flagValue(tg.Args, "store")
	redisSvc := m.services["redis"]
	if want := "redis://" + redisSvc.Name + "." + redisSvc.Namespace + ".svc.cluster.local:6379/"; !strings.HasPrefix(store, want) {
		t.Errorf("tollgate: --store %q, want it to begin %q", store, want)
	}
}
