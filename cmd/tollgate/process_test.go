package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/tollgate/tollgate/internal/testclock"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// These tests run the real binary, built once, on a real data directory,
// and stop it with real signals.

const (
	procToken = "process-test-admin-token"
	// freeKey is the payments example's free key (customer initech).
	freeKey = "tg_demo_free_0000000000000001"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds bin/tollgate into a temporary directory once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tollgate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a running tollgate process.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	grpc  string // its gRPC address
	admin string // its admin API's base URL
	http  string // its HTTP authorization address (--http-addr), or ""
	authz authv3.AuthorizationClient
	conn  *grpc.ClientConn
	logs  *lockedBuffer
	exit  chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startProc starts `tollgate serve` on free loopback ports with the store
// and extra flags, and waits until it serves.
func startProc(t *testing.T, policyFile, store string, extra ...string) *proc {
	t.Helper()
	return startProcEnv(t, nil, policyFile, store, extra...)
}

// startProcEnv is startProc with env added to the process's environment.
func startProcEnv(t *testing.T, env []string, policyFile, store string, extra ...string) *proc {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(procToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--policy", policyFile, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--store", store, "--admin-token-file", tokenFile}, extra...)
	p := &proc{t: t, cmd: exec.Command(binary(t), args...), logs: &lockedBuffer{}, exit: make(chan error, 1)}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "serving" {
				serving <- rec
			}
		}
		p.exit <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.exit
		}
	})
	select {
	case rec := <-serving:
		p.grpc, _ = rec["grpc"].(string)
		admin, _ := rec["admin"].(string)
		p.admin = "http://" + admin
		p.http, _ = rec["http"].(string)
	case err := <-p.exit:
		t.Fatalf("tollgate exited before serving: %v\n%s", err, p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("tollgate did not serve within 30s\n%s", p.logs.String())
	}
	if p.conn, err = grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close() })
	p.authz = authv3.NewAuthorizationClient(p.conn)
	return p
}

// stop sends sig and waits for the process to exit, returning its error.
func (p *proc) stop(sig syscall.Signal) error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case err := <-p.exit:
		return err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("tollgate did not exit within 30s of %v\n%s", sig, p.logs.String())
		return nil
	}
}

// checkRequest is a CheckRequest as Envoy sends it, from ip for method and
// path, with the API key when not empty.
func checkRequest(ip, method, path, key string) *authv3.CheckRequest {
	headers := map[string]string{}
	if key != "" {
		headers["x-api-key"] = key
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "api.example.com", Headers: headers}},
	}}
}

// decide sends req and returns the HTTP status Envoy would answer (200
// when allowed); safe to call from any goroutine.
func (p *proc) decide(req *authv3.CheckRequest) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := p.authz.Check(ctx, req)
	if err != nil {
		return 0, err
	}
	if resp.GetStatus().GetCode() == 0 {
		return 200, nil
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), nil
}

// check sends one request for the keyed route with key and reports whether
// it was allowed.
func (p *proc) check(key string) bool {
	p.t.Helper()
	status, err := p.decide(checkRequest("198.51.100.7", "POST", "/partners/p-1/transactions", key))
	if err != nil {
		p.t.Fatal(err)
	}
	return status == 200
}

// checks sends n requests and returns how many were allowed.
func (p *proc) checks(key string, n int) int {
	p.t.Helper()
	allowed := 0
	for range n {
		if p.check(key) {
			allowed++
		}
	}
	return allowed
}

// get calls the admin API (with the token) and decodes its JSON answer.
func (p *proc) get(path string, headers map[string]string, out any) int {
	p.t.Helper()
	req, err := http.NewRequest("GET", p.admin+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+procToken)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatalf("GET %s: %v: %s", path, err, raw)
		}
	}
	return resp.StatusCode
}

// used returns the free key's quota use in the current period, from
// /v1/me.
func (p *proc) used() int64 {
	p.t.Helper()
	var me struct {
		Plans []struct {
			Quota struct{ Used, Remaining int64 }
		}
	}
	if code := p.get("/v1/me", map[string]string{"x-api-key": freeKey}, &me); code != 200 || len(me.Plans) != 1 {
		p.t.Fatalf("/v1/me: got %d %+v, want 200 with one plan", code, me)
	}
	return me.Plans[0].Quota.Used
}

// metric returns the value of a series of /metrics, or -1.
func (p *proc) metric(series string) float64 {
	p.t.Helper()
	resp, err := http.Get(p.admin + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return -1
}

// TestRestartAfterSIGTERM: stopped with SIGTERM after N admitted requests,
// tollgate comes back on the same data directory with exactly N used, and
// the quota holds across the restart.
func TestRestartAfterSIGTERM(t *testing.T) {
	testclock.AwayFromMidnight(t)
	// A flush interval far longer than the test: only the graceful
	// stop's own write can bring the counts to disk.
	dir := t.TempDir()
	p := startProc(t, example, "file:"+dir, "--flush-interval", "1h")
	const n = 17
	if got := p.checks(freeKey, n); got != n {
		t.Fatalf("step 1: got %d allowed, want %d", got, n)
	}
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("step 1: SIGTERM: exit %v, want status 0\n%s", err, p.logs.String())
	}
	if !strings.Contains(p.logs.String(), `"msg":"stopped"`) {
		t.Fatalf("step 1: no stopped line in the logs:\n%s", p.logs.String())
	}

	p = startProc(t, example, "file:"+dir, "--flush-interval", "1h")
	if got := p.used(); got != n {
		t.Fatalf("step 2: got %d used after the restart, want exactly %d", got, n)
	}
	if got := p.checks(freeKey, 3); got != 3 {
		t.Fatalf("step 3: got %d allowed, want 3", got)
	}
	if got := p.used(); got != n+3 {
		t.Fatalf("step 3: got %d used, want %d", got, n+3)
	}
	if err := p.stop(syscall.SIGINT); err != nil {
		t.Fatalf("step 4: SIGINT: exit %v, want status 0", err)
	}
	p = startProc(t, example, "file:"+dir, "--flush-interval", "1h")
	if got := p.used(); got != n+3 {
		t.Fatalf("step 4: got %d used after SIGINT and a restart, want %d", got, n+3)
	}
}

// TestRestartAfterSIGKILL: killed with SIGKILL, tollgate loses no more than
// the counts of its last flush interval: every count that a completed flush
// wrote is there after the restart.
func TestRestartAfterSIGKILL(t *testing.T) {
	testclock.AwayFromMidnight(t)
	dir := t.TempDir()
	const interval = 200 * time.Millisecond
	p := startProc(t, example, "file:"+dir, "--flush-interval", interval.String())
	const n, m = 12, 6
	if got := p.checks(freeKey, n); got != n {
		t.Fatalf("step 1: got %d allowed, want %d", got, n)
	}
	// Two more completed flushes: the second began after the n requests.
	flushes := p.metric(`tollgate_store_flushes_total{result="ok"}`)
	deadline := time.Now().Add(30 * time.Second)
	for p.metric(`tollgate_store_flushes_total{result="ok"}`) < flushes+2 {
		if time.Now().After(deadline) {
			t.Fatalf("step 1: no flush within 30s\n%s", p.logs.String())
		}
		time.Sleep(interval / 4)
	}
	// m more, then a kill before the next flush can run.
	if got := p.checks(freeKey, m); got != m {
		t.Fatalf("step 2: got %d allowed, want %d", got, m)
	}
	if err := p.stop(syscall.SIGKILL); err == nil {
		t.Fatal("step 2: SIGKILL: got exit status 0")
	}

	p = startProc(t, example, "file:"+dir, "--flush-interval", interval.String())
	got := p.used()
	t.Logf("admitted %d, flushed %d, then %d in the last interval; after the kill: %d used", n+m, n, m, got)
	if got < n || got > n+m {
		t.Fatalf("step 3: got %d used after SIGKILL, want between %d (all that was flushed) and %d", got, n, n+m)
	}
}

// TestSIGHUPReloads: SIGHUP reloads the policy even when the file did not
// change (the watcher only reloads changed content), and a bad file sent
// with SIGHUP keeps the old policy, with its errors in /readyz.
func TestSIGHUPReloads(t *testing.T) {
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, policyFile, "file:"+t.TempDir())
	reloads := func(result string) float64 {
		return p.metric(`tollgate_policy_reloads_total{result="` + result + `"}`)
	}
	// waitMetric waits until there have been at least want reloads
	// with the result.
	waitMetric := func(step, result string, want float64) {
		deadline := time.Now().Add(30 * time.Second)
		for reloads(result) < want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %v %s reloads, want %v\n%s", step, reloads(result), result, want, p.logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetric("step 1", "success", 1)

	// A bad edit: the watcher or the SIGHUP (whichever comes first)
	// rejects it; the old policy keeps serving.
	bad := strings.Replace(string(data), "period: day", "period: fortnight", 1)
	if err := os.WriteFile(policyFile, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitMetric("step 2", "failure", 1)
	var ready struct {
		Policy struct {
			LastReloadError string `json:"last_reload_error"`
		}
	}
	p.get("/readyz", nil, &ready)
	if !strings.Contains(ready.Policy.LastReloadError, `"fortnight" is not one of day, week, month`) {
		t.Fatalf("step 2: /readyz: got last_reload_error %q, want the period error", ready.Policy.LastReloadError)
	}
	if !p.check(freeKey) {
		t.Fatal("step 2: the old policy should still serve the free key")
	}
}

// TestEveryLogLineIsJSON: the libraries' own lines (gRPC's, go-redis's) go
// through the server's JSON log too (issue 13 found go-redis's plain
// "redis: ... pool.go:770" lines between the JSON ones). gRPC's own logger is
// asked for its info lines, as an operator debugging a connection would.
func TestEveryLogLineIsJSON(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "redis://" + l.Addr().String() // nothing answers there
	l.Close()
	p := startProcEnv(t, []string{"GRPC_GO_LOG_SEVERITY_LEVEL=info", "GRPC_GO_LOG_VERBOSITY_LEVEL=2"},
		"../../examples/payments/policy.yaml", closed, "--log-level", "debug")
	// A connection that is not HTTP/2: gRPC logs its bogus greeting.
	c, err := net.Dial("tcp", p.grpc)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	io.Copy(io.Discard, c)
	c.Close()
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("stop: %v", err)
	}
	libs := map[string]int{}
	for i, line := range strings.Split(strings.TrimSpace(p.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("line %d is not JSON: %q", i, line)
			continue
		}
		if lib, ok := rec["library"].(string); ok {
			libs[lib]++
		}
	}
	if libs["grpc"] == 0 || libs["go-redis"] == 0 {
		t.Errorf("got library lines %v, want some of grpc and go-redis", libs)
	}
}
