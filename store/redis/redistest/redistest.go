// Package redistest starts real redis-server processes for tests, each on a
// free loopback port with nothing kept on disk but a temporary directory,
// and stops them when the test ends. A test whose machine has no
// redis-server binary is skipped with a message that says how to install it.
//
//	srv := redistest.Start(t)
//	st, err := redis.Open(srv.URL(), redis.Options{})
//	srv.Stop()    // Redis goes away under the store
//	srv.Restart() // and comes back on the same port
//	srv.Pause()   // Redis hangs (SIGSTOP)
//	srv.Resume()  // and goes on (SIGCONT)
//
// StartCluster starts a Redis Cluster of primaries without replicas (Redis
// 7.0 or later): one redis-server with --cluster-enabled per primary, the
// 16384 slots split evenly between them in order, and returns once every
// node reports the cluster ok, about 2 seconds later (a new primary holds
// its cluster_state at fail for 2 seconds). It forms the cluster with
// CLUSTER commands as redis-cli --cluster create does, so that one primary
// is a cluster too. A Cluster's nodes are Servers, which a test can stop,
// restart or pause one at a time.
//
//	c := redistest.StartCluster(t, 3)
//	st, err := redis.Open(c.URL(), redis.Options{}) // redis-cluster://...
//	c.ResetStats()                                  // after the setup
//	keys, err := c.DBSizes()                        // per node, as in Nodes
//	calls, err := c.ScriptCalls()                   // per node
//	n, err := c.SlotOwner("{customer-7}:bucket")   // the node of its slot
//	n.Stop()                                        // the cluster fails soon
//
// The cluster keeps Redis's default cluster-require-full-coverage: once the
// other nodes see a stopped or paused node as failed (NodeTimeout, and a
// little more for them to agree), every node answers CLUSTERDOWN, not only
// the failed node's slots. A node that restarts keeps its slots (its
// nodes-PORT.conf is in the directory) but not its keys; the cluster is ok
// again when the others clear its failure, up to twice NodeTimeout later
// (WaitOK waits for that).
//
// Each process runs in its own process group and, on Linux, is killed with
// the test binary should it die before its cleanups run. Its output goes to
// redis-PORT.log in the directory; the error of a server that does not
// start quotes its last lines. Launch and LaunchCluster start servers
// outside tests (make bench-e2e); their caller stops them.
//
// A Server's and a Cluster's methods are safe for concurrent use.
package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// errNoRedis is Launch's and LaunchCluster's error without redis-server.
var errNoRedis = errors.New("redis-server not found in PATH: install it (apt-get install -y redis-server)")

// startTimeout bounds the wait for a redis-server to answer once started.
const startTimeout = 10 * time.Second

// Server is a redis-server process on 127.0.0.1.
type Server struct {
	t       testing.TB // nil outside tests
	bin     string
	dir     string
	port    int
	busPort int // a cluster node's cluster bus port; 0 outside a Cluster

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Start starts a redis-server on a free port and stops it when the test
// ends. It skips the test when redis-server is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := lookPath(t)
	s, err := launch(bin, t.TempDir(), false)
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
		return nil, errNoRedis
	}
	return launch(bin, dir, false)
}

// lookPath returns the path of redis-server, or skips the test.
func lookPath(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not found in PATH: install it (apt-get install -y redis-server; .ci/run does) to run the Redis tests")
	}
	return bin
}

// errAddrInUse is start's error when redis-server could not bind its port.
var errAddrInUse = errors.New("address already in use")

// launch starts a redis-server (a cluster node, with a cluster bus port,
// when node is true) on free ports, and on new ones when another process
// took them between their choice and redis-server's bind.
func launch(bin, dir string, node bool) (*Server, error) {
	for attempt := 1; ; attempt++ {
		n := 1
		if node {
			n = 2
		}
		ports, err := freePorts(n)
		if err != nil {
			return nil, err
		}
		s := &Server{bin: bin, dir: dir, port: ports[0]}
		if node {
			s.busPort = ports[1]
		}
		err = s.start()
		if err == nil {
			return s, nil
		}
		if attempt == 3 || !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
}

// freePorts returns n distinct ports that are free on 127.0.0.1 now.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close() // after all are chosen, so that they differ
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
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

// args returns redis-server's command line.
func (s *Server) args() []string {
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning"}
	if s.busPort != 0 {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strconv.Itoa(s.port)+".conf",
			"--cluster-port", strconv.Itoa(s.busPort), "--cluster-announce-ip", "127.0.0.1",
			"--cluster-node-timeout", strconv.FormatInt(NodeTimeout.Milliseconds(), 10))
	}
	return args
}

// logFile returns the path of the file that holds the server's output.
func (s *Server) logFile() string {
	return filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log")
}

// start starts the process unless it runs, and waits until it answers.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	out, err := os.OpenFile(s.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	err = cmd.Start()
	out.Close() // the process has its own copy
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.answers()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return s.failed("exited")
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return s.failed(fmt.Sprintf("does not answer (%v)", err))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// answers reports nil when the process started last answers on the
// server's port within a second: INFO's process_id is its pid, not another
// server's that took the port.
func (s *Server) answers() error {
	info, err := doWithin(time.Second, s.Addr(), "INFO", "server")
	if err != nil {
		return err
	}
	if pid := fields(info)["process_id"]; pid != strconv.Itoa(s.cmd.Process.Pid) {
		return fmt.Errorf("process %s answers, not %d", pid, s.cmd.Process.Pid)
	}
	return nil
}

// failed returns the error of a server that did not start, with the last
// lines of its output; it wraps errAddrInUse when that output says its port
// was taken.
func (s *Server) failed(what string) error {
	b, _ := os.ReadFile(s.logFile())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	lines = lines[max(0, len(lines)-10):]
	err := fmt.Errorf("redis-server on %s %s; the end of its output (%s):\n%s", s.Addr(), what, s.logFile(),
		strings.Join(lines, "\n"))
	if strings.Contains(string(b), "Address already in use") {
		return fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
}

// stop is Stop with s.mu held.
func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill() // SIGKILL ends a paused process too
	<-s.exited
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
