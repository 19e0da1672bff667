// Package redistest starts real redis-server processes for tests, each on a
// free loopback port with nothing kept on disk, and stops them when the test
// ends. A test whose machine has no redis-server binary is skipped with a
// message that says how to install it.
//
//	srv := redistest.Start(t)
//	st, err := redis.Open(srv.URL(), redis.Options{})
//	srv.Stop()    // Redis goes away under the store
//	srv.Restart() // and comes back on the same port
//	srv.Pause()   // Redis hangs (SIGSTOP)
//	srv.Resume()  // and goes on (SIGCONT)
//
// A Server's methods are safe for concurrent use.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server process on 127.0.0.1.
type Server struct {
	t    testing.TB // nil outside tests
	bin  string
	dir  string
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts a redis-server on a free port and stops it when the test
// ends. It skips the test when redis-server is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not found in PATH: install it (apt-get install -y redis-server; .ci/run does) to run the Redis tests")
	}
	s, err := Launch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.t = t
	t.Cleanup(s.Stop)
	return s
}

// Launch starts a redis-server on a free port with dir as its directory,
// outside tests (make bench-e2e); the caller stops it.
func Launch(dir string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found in PATH: install it (apt-get install -y redis-server)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{bin: bin, dir: dir, port: port}
	return s, s.start()
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Restart starts the server again (on the same port, empty) when it is
// stopped, and waits until it answers.
func (s *Server) Restart() {
	if s.t != nil {
		s.t.Helper()
	}
	if err := s.start(); err != nil {
		if s.t == nil {
			panic(err)
		}
		s.t.Fatal(err)
	}
}

// start starts the process unless it runs, and waits until it answers.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(s.Addr())
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s does not answer: %w", s.Addr(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill() // SIGKILL ends a paused process too
	s.cmd.Wait()
	s.cmd = nil
}

// Pause stops the server with SIGSTOP: it keeps its connections and its
// data, and answers nothing (connections still open, as for a host that
// hangs) until Resume.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT): it then runs what it was
// sent meanwhile.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil && s.t != nil {
		s.t.Fatal(err)
	}
}

// ping sends PING in the inline protocol and wants +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprint(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("got %q, want +PONG", line)
	}
	return nil
}

// ScriptCalls returns how many EVALSHA and EVAL calls the server has run:
// the round trips of the store's decisions (INFO's command counts also hold
// the commands the scripts run, so only these two are added up).
func (s *Server) ScriptCalls() (int64, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprint(c, "INFO commandstats\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil {
		return 0, fmt.Errorf("INFO: got %q, want a bulk string", head)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	var n int64
	for _, line := range strings.Split(string(body), "\r\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if v, ok := strings.CutPrefix(line, cmd); ok {
				end := strings.IndexByte(v, ',')
				if end < 0 {
					return 0, fmt.Errorf("INFO: bad line %q", line)
				}
				calls, err := strconv.ParseInt(v[:end], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("INFO: bad line %q", line)
				}
				n += calls
			}
		}
	}
	return n, nil
}
