package examples_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/internal/testlog"
	"github.com/tollgate/tollgate/internal/testserve"
	"github.com/tollgate/tollgate/server"
)

// The addresses the kits name (docker-compose.yaml's): the tests put their
// own in their place.
const (
	kitTollgate = "tollgate:9003"
	kitUpstream = "echo:8080"
)

// t0 is the clock of the tollgate the proxies ask: noon UTC, so that the
// free plan's day quota has room on both sides. It moves only when a test
// says, so that what the buckets admit does not depend on the machine's
// speed.
var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// startTollgate serves the policy text with tollgate's HTTP authorization
// port on loopback, a memory store and a test clock, and stops it when the
// test ends. It returns the HTTP port's address.
func startTollgate(t *testing.T, policyText string) (string, *testclock.Clock) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(t0)
	s := testserve.Start(t, server.Config{PolicyFile: file, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "-",
		Store: "memory:", Now: clock.Now})
	return s.HTTPAddr().String(), clock
}

// paymentsPolicy returns examples/payments/policy.yaml with each edits[i]
// replaced by edits[i+1].
func paymentsPolicy(t *testing.T, edits ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(paymentsDir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return replaceAll(t, "policy.yaml", string(data), edits...)
}

// replaceAll replaces each edits[i] of text by edits[i+1], every
// occurrence; one that is not in text fails the test.
func replaceAll(t *testing.T, name, text string, edits ...string) string {
	t.Helper()
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			t.Fatalf("%s has no %q", name, edits[i])
		}
		text = strings.ReplaceAll(text, edits[i], edits[i+1])
	}
	return text
}

// upstream is the API behind the proxy: it answers 200 with no body and no
// content type (so that an answer's content type is tollgate's or none),
// and keeps the headers of every request it gets.
type upstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []http.Header
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.got = append(u.got, r.Header.Clone())
		u.mu.Unlock()
		w.Header()["Content-Type"] = nil
		w.Header().Set("X-Upstream", "echo")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// addr returns the upstream's host:port.
func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// requests returns the headers of the requests the upstream got so far.
func (u *upstream) requests() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.got...)
}

// proxy is one of the proxies tollgate ships a kit for.
type proxy struct {
	name string
	// addr is where the README's walkthrough reaches it.
	addr string
	// start runs it with its kit in front of upstream, asking tollgate,
	// and returns its base URL.
	start func(t *testing.T, tollgate, upstream string) string
}

var proxies = []proxy{
	{name: "nginx", addr: "localhost:8081", start: startNginx},
	{name: "caddy", addr: "localhost:8082", start: startCaddy},
}

// kit returns a kit of examples/payments with tollgate's and the
// upstream's addresses and the listen address replaced as edits say.
func kit(t *testing.T, file string, edits ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(paymentsDir, file))
	if err != nil {
		t.Fatal(err)
	}
	return replaceAll(t, file, string(data), edits...)
}

// startNginx runs nginx with examples/payments/nginx.conf as its own
// process, with its files in a temporary directory (as root too: then its
// workers run as root, which can use that directory).
func startNginx(t *testing.T, tollgate, upstream string) string {
	t.Helper()
	bin := toolBinary(t, "nginx", "nginx-light")
	dir := t.TempDir()
	var temps strings.Builder
	for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "\n    %s_temp_path %s;", p, filepath.Join(dir, p))
	}
	global := "daemon off; pid " + filepath.Join(dir, "nginx.pid") + "; error_log stderr notice;"
	if os.Geteuid() == 0 {
		global += " user root;"
	}
	return runProxy(t, "nginx", func(port int) *exec.Cmd {
		conf := filepath.Join(dir, "nginx.conf")
		text := kit(t, "nginx.conf", kitTollgate, tollgate, kitUpstream, upstream,
			"listen 8081;", "listen 127.0.0.1:"+strconv.Itoa(port)+";", "\nhttp {", "\nhttp {"+temps.String())
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return exec.Command(bin, "-e", "stderr", "-p", dir, "-c", conf, "-g", global)
	})
}

// startCaddy runs caddy with examples/payments/Caddyfile as its own
// process, its data and config directories (the autosaved config) in a
// temporary directory.
func startCaddy(t *testing.T, tollgate, upstream string) string {
	t.Helper()
	bin := toolBinary(t, "caddy", "caddy")
	dir := t.TempDir()
	return runProxy(t, "caddy", func(port int) *exec.Cmd {
		file := filepath.Join(dir, "Caddyfile")
		text := kit(t, "Caddyfile", kitTollgate, tollgate, kitUpstream, upstream,
			"http://:8082 {", "http://:"+strconv.Itoa(port)+" {\n\tbind 127.0.0.1")
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"),
			"XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
		return cmd
	})
}

// runProxy starts the command that command makes for a free loopback
// port, waits until the port takes connections, and stops the process
// when the test ends. The port is free when chosen, not held: when the
// process finds it taken meanwhile, another is tried.
func runProxy(t *testing.T, name string, command func(port int) *exec.Cmd) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		out := &testlog.Buffer{}
		cmd := command(port)
		cmd.Stdout, cmd.Stderr = out, out
		// Its own process group (nginx forks workers), killed with the
		// test binary should it die before its cleanups run.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := waitListening(addr, exited); err != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			if attempt < 3 && strings.Contains(strings.ToLower(out.String()), "address already in use") {
				continue
			}
			t.Fatalf("%s: %v; its output:\n%s", name, err, out)
		}
		t.Cleanup(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
			if t.Failed() {
				t.Logf("%s's output:\n%s", name, out)
			}
		})
		return "http://" + addr
	}
}

// waitListening waits until addr takes TCP connections, or the process
// exits. It only connects, so that no request reaches tollgate.
func waitListening(addr string, exited chan error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("exited before listening on %s: %v", addr, err)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after a minute: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client sends requests to a proxy from a loopback address of its own
// (127.0.0.1 when from is "").
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base, from string) *client {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: base, http: &http.Client{Transport: tr, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// answer is a proxy's answer.
type answer struct {
	status int
	header http.Header
	body   string
}

// do sends one request with headers (name, value, name, value...).
func (c *client) do(method, path string, headers ...string) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// String shows an answer as curl -si would, headers sorted.
func (a answer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\n", a.status, http.StatusText(a.status))
	var buf bytes.Buffer
	a.header.Write(&buf)
	b.WriteString(strings.ReplaceAll(buf.String(), "\r\n", "\n"))
	if a.body != "" {
		b.WriteString("\n" + a.body + "\n")
	}
	return b.String()
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
