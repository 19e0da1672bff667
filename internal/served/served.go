// Package served runs a `tollgate serve` process for the measurement tools
// (cmd/bench-e2e, cmd/waf-flood) and reads what they measure from it: its
// addresses, its metrics, its live heap, its CPU time and its memory.
// CPUTime reads any process's CPU time.
//
// A Server is used by one goroutine: Start it, read it, Stop it.
package served

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is a running `tollgate serve`.
type Server struct {
	Cmd *exec.Cmd
	// GRPC, Admin and HTTP (--http-addr; "" without) are the addresses it
	// serves on, from its "serving" log line.
	GRPC, Admin, HTTP string
	exit              chan error
	http              *http.Client
}

// Start runs bin with args (a serve command line) and env added to the
// environment, and waits up to wait for its "serving" log line. Its log
// lines above INFO go to stderr.
func Start(ctx context.Context, bin string, args, env []string, wait time.Duration) (*Server, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Cmd: cmd, exit: make(chan error, 1), http: &http.Client{Timeout: time.Minute}}
	serving := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "serving" {
				serving <- rec
				continue
			}
			if rec["level"] != "INFO" {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
		s.exit <- cmd.Wait()
	}()
	select {
	case rec := <-serving:
		s.GRPC, _ = rec["grpc"].(string)
		s.Admin, _ = rec["admin"].(string)
		s.HTTP, _ = rec["http"].(string)
		return s, nil
	case err := <-s.exit:
		return nil, fmt.Errorf("tollgate serve exited: %v", err)
	case <-time.After(wait):
		cmd.Process.Kill()
		return nil, fmt.Errorf("tollgate serve did not start within %v", wait)
	}
}

// Stop sends SIGTERM and waits for the process to end, killing it after a
// minute.
func (s *Server) Stop() {
	s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(time.Minute):
		s.Cmd.Process.Kill()
		<-s.exit
	}
}

// Heap returns the server's live heap after a collection: the pprof heap
// endpoint (serve --pprof) collects first (gc=1), then
// go_memstats_heap_alloc_bytes is read.
func (s *Server) Heap() (int64, error) {
	resp, err := s.http.Get("http://" + s.Admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	v, err := s.Metric("go_memstats_heap_alloc_bytes")
	return int64(v), err
}

// Metric returns the value of a series without labels.
func (s *Server) Metric(name string) (float64, error) {
	var v float64
	found := false
	err := s.scrape(func(line string) error {
		if rest, ok := strings.CutPrefix(line, name+" "); ok && !found {
			f, err := strconv.ParseFloat(rest, 64)
			v, found = f, true
			return err
		}
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("no %s in /metrics", name)
	}
	return v, err
}

// MetricSum returns the sum of the series of the metric name whose labels
// hold match.
func (s *Server) MetricSum(name, match string) (float64, error) {
	var sum float64
	err := s.scrape(func(line string) error {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, match) {
			return nil
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		sum += f
		return err
	})
	return sum, err
}

// scrape calls f with each line of /metrics.
func (s *Server) scrape(f func(line string) error) error {
	resp, err := s.http.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if err := f(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// CPUTime returns the process's user and system CPU time (Linux).
func (s *Server) CPUTime() (time.Duration, error) { return CPUTime(s.Cmd.Process.Pid) }

// CPUTime returns the user and system CPU time of the process pid, any
// process, from /proc/PID/stat (Linux).
func CPUTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (in parentheses): state is 3rd, utime 14th,
	// stime 15th.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}

// Memory returns a /proc/PID/status field of the process (VmRSS, VmHWM) in
// bytes (Linux).
func (s *Server) Memory(field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, s.Cmd.Process.Pid)
}
