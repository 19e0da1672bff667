package examples_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/tollgate/tollgate/internal/envoyconf"
	"github.com/tollgate/tollgate/policyfile"
)

const paymentsDir = "payments"

// flagValue returns the value of --name=value or --name value in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// portOf returns the port of a listen address such as ":9001" or
// "0.0.0.0:9002".
func portOf(t *testing.T, addr string) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 32)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return uint32(n)
}

// mountOf returns the host file mounted at target in s.
func mountOf(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target {
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s: mounts %s, which is not there: %v", s.Name, v.Source, err)
			}
			return v.Source
		}
	}
	t.Errorf("service %s: nothing is mounted at %s", s.Name, target)
	return ""
}

// TestComposeMatchesEnvoy loads the payments docker-compose.yaml with
// compose-go (the loader of docker compose itself) and checks it against
// the Envoy config and the policy it mounts: the files exist, Envoy's
// clusters name services of the compose file on the ports those services
// listen on, the published ports are the ones Envoy and tollgate listen on,
// the store URL names the Redis service, and the Dockerfile exposes the
// ports and copies files that exist.
func TestComposeMatchesEnvoy(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join(paymentsDir, "docker-compose.yaml")},
		cli.WithWorkingDirectory(paymentsDir), cli.WithOsEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	svc := func(name string) types.ServiceConfig {
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yaml: no service %q", name)
		}
		return s
	}
	envoySvc, tg, echo, redisSvc := svc("envoy"), svc("tollgate"), svc("echo"), svc("redis")

	// Envoy runs the config this test validates.
	cfgPath := ""
	if i := slices.Index(envoySvc.Command, "-c"); i >= 0 && i+1 < len(envoySvc.Command) {
		cfgPath = envoySvc.Command[i+1]
	}
	src := mountOf(t, envoySvc, cfgPath)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b := envoyconf.Load(t, src, data)

	// tollgate serves the policy it mounts, on the ports compose names.
	policyPath, _ := flagValue(tg.Command, "policy")
	if _, err := policyfile.Load(mountOf(t, tg, policyPath)); err != nil {
		t.Errorf("the mounted policy: %v", err)
	}
	grpcAddr, _ := flagValue(tg.Command, "grpc-addr")
	adminAddr, _ := flagValue(tg.Command, "admin-addr")
	listens := map[string]uint32{"tollgate": portOf(t, grpcAddr), "echo": 0}
	if v := echo.Environment["HTTP_PORT"]; v != nil {
		n, _ := strconv.Atoi(*v)
		listens["echo"] = uint32(n)
	}
	published := func(s types.ServiceConfig) []uint32 {
		var out []uint32
		for _, pc := range s.Ports {
			out = append(out, pc.Target)
		}
		return out
	}
	if !slices.Contains(published(tg), portOf(t, adminAddr)) {
		t.Errorf("tollgate: the admin port %d is not published (%v)", portOf(t, adminAddr), published(tg))
	}
	store, _ := flagValue(tg.Command, "store")
	if !strings.HasPrefix(store, "redis://"+redisSvc.Name+":6379/") {
		t.Errorf("tollgate: --store %q does not name the redis service on 6379", store)
	}

	// Every STRICT_DNS endpoint is a service of the compose file, on the
	// port it listens on; every listener's port is published.
	checkEndpoints(t, b, p, listens)
	for _, l := range b.GetStaticResources().GetListeners() {
		port := l.GetAddress().GetSocketAddress().GetPortValue()
		if !slices.Contains(published(envoySvc), port) {
			t.Errorf("envoy: listener %s on %d is not published (%v)", l.GetName(), port, published(envoySvc))
		}
	}

	// The image: built from the repository with the Dockerfile shipped
	// beside, exposing the ports compose uses.
	if tg.Build == nil {
		t.Fatal("tollgate: no build section")
	}
	dockerfile := filepath.Join(tg.Build.Context, tg.Build.Dockerfile)
	ports := []uint32{listens["tollgate"], portOf(t, adminAddr)}
	if httpAddr, ok := flagValue(tg.Command, "http-addr"); ok {
		ports = append(ports, portOf(t, httpAddr))
	}
	checkDockerfile(t, dockerfile, tg.Build.Context, ports)
}

// checkEndpoints checks that each endpoint of b's clusters is a service of
// p listening on the endpoint's port.
func checkEndpoints(t *testing.T, b *bootstrapv3.Bootstrap, p *types.Project, listens map[string]uint32) {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		for _, le := range c.GetLoadAssignment().GetEndpoints() {
			for _, ep := range le.GetLbEndpoints() {
				sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
				if _, ok := p.Services[sa.GetAddress()]; !ok {
					t.Errorf("cluster %s: endpoint %s is not a service of docker-compose.yaml", c.GetName(), sa.GetAddress())
					continue
				}
				if want, ok := listens[sa.GetAddress()]; ok && want != sa.GetPortValue() {
					t.Errorf("cluster %s: endpoint %s:%d, but the service listens on %d", c.GetName(), sa.GetAddress(), sa.GetPortValue(), want)
				}
			}
		}
	}
}

// checkDockerfile reads a Dockerfile's instructions and checks that it
// builds a static binary in one stage and runs it as a non-root user on a
// minimal image in the last, exposing ports, and that what it copies from
// the context exists.
func checkDockerfile(t *testing.T, path, context string, ports []uint32) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var froms, users, exposed []string
	static := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, strings.Join(fields[1:], " "))
			users = users[:0]
		case "USER":
			users = append(users, fields[1])
		case "EXPOSE":
			exposed = append(exposed, fields[1:]...)
		case "RUN":
			static = static || strings.Contains(sc.Text(), "CGO_ENABLED=0")
		case "COPY":
			if strings.HasPrefix(fields[1], "--from") || strings.HasPrefix(fields[1], "--chown") {
				continue
			}
			for _, src := range fields[1 : len(fields)-1] {
				if _, err := os.Stat(filepath.Join(context, src)); err != nil {
					t.Errorf("%s: COPY %s: not in the build context: %v", path, src, err)
				}
			}
		}
	}
	if len(froms) < 2 || !strings.Contains(froms[len(froms)-1], "distroless/static") {
		t.Errorf("%s: got stages %q, want a build stage and a distroless/static one", path, froms)
	}
	if len(users) == 0 || users[len(users)-1] == "0" || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("%s: the last stage runs as %q, want a non-root user", path, users)
	}
	if !static {
		t.Errorf("%s: no CGO_ENABLED=0 build: the binary would not be static", path)
	}
	for _, p := range ports {
		if !slices.Contains(exposed, strconv.Itoa(int(p))) {
			t.Errorf("%s: EXPOSE %v lacks %d", path, exposed, p)
		}
	}
}

// TestComposeProxyKits loads the payments docker-compose.yaml with its
// nginx and caddy profiles and checks the proxies' kits against it: each
// service runs the kit it mounts, the kit listens on the port the service
// publishes and names tollgate's HTTP port and the echo upstream as compose
// serves them, and those are the addresses the proxy tests replace.
func TestComposeProxyKits(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join(paymentsDir, "docker-compose.yaml")},
		cli.WithWorkingDirectory(paymentsDir), cli.WithOsEnv, cli.WithProfiles([]string{"nginx", "caddy"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, ok := flagValue(p.Services["tollgate"].Command, "http-addr")
	if !ok {
		t.Fatal("tollgate: no --http-addr")
	}
	tollgate := "tollgate:" + strconv.Itoa(int(portOf(t, httpAddr)))
	echo := "echo:"
	if v := p.Services["echo"].Environment["HTTP_PORT"]; v != nil {
		echo += *v
	}
	if tollgate != kitTollgate || echo != kitUpstream {
		t.Errorf("compose serves tollgate's HTTP port at %s and the upstream at %s; the proxy tests replace %s and %s", tollgate, echo, kitTollgate, kitUpstream)
	}
	for _, k := range []struct {
		service, configFlag string
		want                func(port uint32) []string
	}{
		{"nginx", "-c", func(port uint32) []string {
			return []string{fmt.Sprintf("listen %d;", port), "server " + tollgate + ";", "server " + echo + ";"}
		}},
		{"caddy", "--config", func(port uint32) []string {
			return []string{fmt.Sprintf("http://:%d {", port), "reverse_proxy " + tollgate + " {", "reverse_proxy " + echo + "\n"}
		}},
	} {
		s, ok := p.Services[k.service]
		if !ok {
			t.Errorf("docker-compose.yaml: no service %q in profile %s", k.service, k.service)
			continue
		}
		cfg := ""
		if i := slices.Index(s.Command, k.configFlag); i >= 0 && i+1 < len(s.Command) {
			cfg = s.Command[i+1]
		}
		data, err := os.ReadFile(mountOf(t, s, cfg))
		if err != nil {
			t.Errorf("%s: %v", k.service, err)
			continue
		}
		if len(s.Ports) != 1 {
			t.Fatalf("%s: publishes %d ports, want 1", k.service, len(s.Ports))
		}
		for _, w := range k.want(s.Ports[0].Target) {
			if !strings.Contains(string(data), w) {
				t.Errorf("%s: %s has no %q", k.service, cfg, w)
			}
		}
	}
}
