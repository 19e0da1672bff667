package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// do sends one command to the Redis at addr on a connection of its own and
// returns its reply: a status, an integer (in decimal) or a bulk string. A
// Redis error, an array reply or no reply within five seconds is an error.
func do(addr string, args ...string) (string, error) { return doWithin(5*time.Second, addr, args...) }

// doWithin is do with a reply due within d.
func doWithin(d time.Duration, addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("redis %s: %s: %w", addr, args[0], err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("redis %s: %s: empty reply", addr, args[0])
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis %s: %s: %s", addr, strings.Join(args, " "), line[1:])
	case '$':
		size, err := strconv.Atoi(line[1:])
		if err != nil || size < 0 {
			return "", fmt.Errorf("redis %s: %s: got %q, want a bulk string", addr, args[0], line)
		}
		body := make([]byte, size+2) // and its \r\n
		if _, err := io.ReadFull(r, body); err != nil {
			return "", fmt.Errorf("redis %s: %s: %w", addr, args[0], err)
		}
		return string(body[:size]), nil
	}
	return "", fmt.Errorf("redis %s: %s: got %q, want a status, an integer or a bulk string", addr, args[0], line)
}

// doInt is do for a command that answers an integer.
func doInt(addr string, args ...string) (int64, error) {
	v, err := do(addr, args...)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis %s: %s: got %q, want an integer", addr, args[0], v)
	}
	return n, nil
}

// fields returns the name:value lines of an INFO or CLUSTER INFO reply
// (section headers and blank lines left out).
func fields(body string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(body, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m
}

// CommandStats returns how many times the server has run each command since
// it started or since ResetStats, by lower-case name (subcommands as
// "cluster|info"), from INFO commandstats. The commands that scripts run
// are counted as well.
func (s *Server) CommandStats() (map[string]int64, error) {
	body, err := do(s.Addr(), "INFO", "commandstats")
	if err != nil {
		return nil, err
	}
	calls := map[string]int64{}
	for k, v := range fields(body) {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		n, ok := strings.CutPrefix(v, "calls=")
		n, _, _ = strings.Cut(n, ",")
		c, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("redis %s: INFO commandstats: %s:%s has no calls=N", s.Addr(), k, v)
		}
		calls[name] = c
	}
	return calls, nil
}

// scriptCommands are the commands that run a script or a function.
var scriptCommands = []string{"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}

// ScriptCalls returns how many scripts and functions (EVAL, EVALSHA, FCALL
// and their _RO forms) the server has run since it started or since
// ResetStats: the round trips of the store's decisions (INFO's command
// counts also hold the commands the scripts run, so only these are added
// up).
func (s *Server) ScriptCalls() (int64, error) {
	calls, err := s.CommandStats()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, name := range scriptCommands {
		n += calls[name]
	}
	return n, nil
}

// DBSize returns the number of keys the server holds.
func (s *Server) DBSize() (int64, error) { return doInt(s.Addr(), "DBSIZE") }

// ResetStats sets the server's command counts (CommandStats, ScriptCalls)
// back to zero (CONFIG RESETSTAT): a test resets them after its setup to
// count only what it measures.
func (s *Server) ResetStats() error {
	_, err := do(s.Addr(), "CONFIG", "RESETSTAT")
	return err
}

// CPU returns the CPU time the server has used since it started (INFO cpu:
// used_cpu_user and used_cpu_sys, its main thread and any other), for
// benchmarks that charge a decision for Redis's work.
func (s *Server) CPU() (time.Duration, error) {
	body, err := do(s.Addr(), "INFO", "cpu")
	if err != nil {
		return 0, err
	}
	var total float64
	f := fields(body)
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, err := strconv.ParseFloat(f[k], 64)
		if err != nil {
			return 0, fmt.Errorf("redis %s: INFO cpu: %s is %q", s.Addr(), k, f[k])
		}
		total += v
	}
	return time.Duration(total * float64(time.Second)), nil
}
