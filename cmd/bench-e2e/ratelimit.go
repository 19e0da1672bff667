package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tollgate/tollgate/load"
	"github.com/tollgate/tollgate/policyfile"
)

// The envoyproxy/ratelimit that the ratelimit rows measure (issue 18): a
// pinned version of its module, built from the Go module proxy through a
// wrapper module outside the repository.
const (
	ratelimitModule  = "github.com/envoyproxy/ratelimit"
	ratelimitVersion = "v1.4.1-0.20260122083618-3fb702589d36"
)

// ratelimitMain is the wrapper's main: ratelimit's own service command,
// configured by its environment.
const ratelimitMain = `// Command ratelimit runs envoyproxy/ratelimit's service for tollgate's
// bench-e2e.
package main

import (
	"github.com/envoyproxy/ratelimit/src/service_cmd/runner"
	"github.com/envoyproxy/ratelimit/src/settings"
)

func main() {
	r := runner.NewRunner(settings.NewSettings())
	r.Run()
}
`

// ratelimitBinary returns the path of the ratelimit binary, building it
// first when it is missing: a wrapper module in dir (go.mod requiring the
// pinned version, main.go, go mod tidy, go build) with the go command on
// PATH, outside any workspace. The build writes to a temporary name and
// renames it, so that an interrupted build leaves no binary behind. When a
// step fails, its output goes to stderr and the error holds its last line.
func ratelimitBinary(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "ratelimit")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	gomod := fmt.Sprintf("module tollgate-bench/ratelimit\n\ngo 1.25\n\nrequire %s %s\n", ratelimitModule, ratelimitVersion)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(ratelimitMain), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "building %s@%s in %s (once; a few minutes)\n", ratelimitModule, ratelimitVersion, dir)
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", bin + ".tmp", "."}} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Stderr.Write(out)
			return "", fmt.Errorf("go %s in %s: %v: %s", strings.Join(args, " "), dir, err, lastLine(string(out)))
		}
	}
	return bin, os.Rename(bin+".tmp", bin)
}

// ratelimitDir is where the wrapper module and its binary live: the user's
// cache, one folder per pinned version.
func ratelimitDir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "tollgate-bench", "ratelimit-"+ratelimitVersion), nil
}

// ratelimitServer is a running envoyproxy/ratelimit.
type ratelimitServer struct {
	cmd  *exec.Cmd
	addr string // its gRPC address
	log  string // the file its output goes to
	exit chan error
}

// rlPorts are the loopback ports of ratelimit's listeners.
type rlPorts struct{ grpc, http, debug, metrics int }

// ratelimitEnv is the environment that ratelimit runs in: its gRPC, HTTP,
// debug and Prometheus listeners on loopback at ports, its statistics on
// the Prometheus sink (/metrics, as tollgate serves them) instead of
// statsd, one Redis at redisAddr over tcp, and the configuration files
// under root/ratelimit/config read once (no watching of root), then extra
// (KEY=VALUE, which override). Everything else keeps ratelimit's defaults
// (a pool of 10 Redis connections, no write buffering). Only PATH is taken
// from the bench's own environment.
//
// Prometheus, not the stdout sink that USE_STATSD=false alone selects:
// that one writes a log line for every request's response-time sample,
// which would charge ratelimit for logging that no deployment does.
func ratelimitEnv(ports rlPorts, redisAddr, root string, extra []string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"USE_STATSD=false",
		"USE_PROMETHEUS=true", "PROMETHEUS_ADDR=127.0.0.1:" + strconv.Itoa(ports.metrics),
		"LOG_LEVEL=warn",
		"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(ports.grpc),
		"HOST=127.0.0.1", "PORT=" + strconv.Itoa(ports.http),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + strconv.Itoa(ports.debug),
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + redisAddr,
		"RUNTIME_ROOT=" + root, "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_APPDIRECTORY=config",
		"RUNTIME_WATCH_ROOT=false",
	}, extra...)
}

// startRatelimit writes config to dir's runtime folder and starts bin
// against the Redis at redisAddr, with extra in its environment
// (ratelimitEnv), then waits up to wait for its gRPC
// health service to answer SERVING (ratelimit opens its listeners once the
// configuration has loaded). Its output goes to a file in dir, shown when
// it does not start.
func startRatelimit(ctx context.Context, bin, dir, redisAddr string, config []byte, extra []string, wait time.Duration) (*ratelimitServer, error) {
	root := filepath.Join(dir, "runtime")
	confDir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(confDir, load.RateLimitDomain+".yaml"), config, 0o644); err != nil {
		return nil, err
	}
	var ports rlPorts
	for _, p := range []*int{&ports.grpc, &ports.http, &ports.debug, &ports.metrics} {
		var err error
		if *p, err = freePort(); err != nil {
			return nil, err
		}
	}
	logFile := filepath.Join(dir, "ratelimit.log")
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = ratelimitEnv(ports, redisAddr, root, extra)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &ratelimitServer{cmd: cmd, addr: "127.0.0.1:" + strconv.Itoa(ports.grpc), log: logFile, exit: make(chan error, 1)}
	go func() { s.exit <- cmd.Wait() }()
	if err := s.waitServing(ctx, wait); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w; its log: %s", err, tail(logFile, 2000))
	}
	return s, nil
}

// waitServing polls ratelimit's gRPC health service until it answers
// SERVING, the process exits, or wait passes.
func (s *ratelimitServer) waitServing(ctx context.Context, wait time.Duration) error {
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(wait)
	for {
		select {
		case err := <-s.exit:
			s.exit <- err
			return fmt.Errorf("ratelimit exited: %v", err)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{Service: "ratelimit"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ratelimit on %s not serving within %v: %v", s.addr, wait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM (ratelimit stops gracefully and exits) and waits,
// killing it after 30 s.
func (s *ratelimitServer) Stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exit:
		s.exit <- err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		s.exit <- <-s.exit
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n bytes of the file at path, or why it cannot.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return strings.TrimSpace(string(data))
}

// prepareRatelimit makes what sc's measurements need, or says why this
// machine cannot run it: redis-server, ratelimit's binary (built when
// missing) and its configuration for b's policy and plan.
func (b *bench) prepareRatelimit(ctx context.Context, sc scenario) error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return errors.New("redis-server not found in PATH: install it (apt-get install -y redis-server)")
	}
	p, err := policyfile.Load(b.policyFile)
	if err != nil {
		return err
	}
	if b.rlConfig, err = load.RateLimitConfig(p, sc.keys, b.plan); err != nil {
		return err
	}
	dir, err := ratelimitDir()
	if err != nil {
		return err
	}
	b.ratelimit, err = ratelimitBinary(ctx, dir)
	return err
}

// measureRatelimit starts envoyproxy/ratelimit on rs and measures it under
// the load in ratelimit mode. A call that fails counts as failed open, as
// Envoy's rate limit filter lets it through by default; the measurement
// fails only when every call did.
func (b *bench) measureRatelimit(ctx context.Context, sc scenario, rs *redisNodes) (result, error) {
	res := result{sc: sc}
	dir, err := os.MkdirTemp(b.work, "ratelimit")
	if err != nil {
		return res, err
	}
	srv, err := startRatelimit(ctx, b.ratelimit, dir, rs.nodes[0].Addr(), b.rlConfig, b.rlEnv, time.Minute)
	if err != nil {
		return res, err
	}
	defer srv.Stop()
	if err := b.loadWindow(ctx, sc, srv.addr, srv.cmd.Process.Pid, rs, &res); err != nil {
		return res, err
	}
	if res.r.Requests > 0 {
		res.failedOpen = float64(res.r.Errors) / float64(res.r.Requests)
	}
	if res.r.Requests == 0 || res.r.Errors == res.r.Requests {
		return res, fmt.Errorf("all %d calls failed: %s", res.r.Errors, res.r.FirstError)
	}
	return res, nil
}

// lastLine returns the last line of s that is not blank: where the go
// command says what failed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
