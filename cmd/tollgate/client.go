package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tollgate/tollgate/admin"
	"github.com/tollgate/tollgate/server"
)

// maxAnswer bounds the admin API answer the client reads.
const maxAnswer = 64 << 20

// adminFlags are the flags of every command that calls the admin API.
type adminFlags struct {
	addr      string
	tokenFile string
	json      bool
	timeout   time.Duration
}

// addAdminFlags defines the admin API flags on fs. The address defaults to
// TOLLGATE_ADMIN_ADDR, else the server's default.
func addAdminFlags(fs *flag.FlagSet) *adminFlags {
	a := &adminFlags{}
	addr := os.Getenv("TOLLGATE_ADMIN_ADDR")
	if addr == "" {
		addr = server.DefaultAdminAddr
	}
	fs.StringVar(&a.addr, "admin-addr", addr, "admin API `address`: host:port, http://host:port or unix:/path (env TOLLGATE_ADMIN_ADDR)")
	fs.StringVar(&a.tokenFile, "admin-token-file", "", "read the admin token from `file` (default: env TOLLGATE_ADMIN_TOKEN)")
	fs.BoolVar(&a.json, "json", false, "print the admin API's JSON answer")
	fs.DurationVar(&a.timeout, "timeout", 10*time.Second, "give up on a call after this `duration`")
	return a
}

// adminClient calls the admin API (README, "Admin API") with the admin token.
type adminClient struct {
	addr  string // as the user gave it, for messages
	base  string // scheme, host and path prefix of every call's URL
	token string
	http  *http.Client
}

// client returns the client that the flags describe: a bad address is an
// error, a missing token a usage error (exit status 2) after a message
// saying how to give one.
func (a *adminFlags) client(stderr io.Writer) (*adminClient, error) {
	if a.timeout <= 0 {
		return nil, fmt.Errorf("--timeout %s: want a duration above 0", a.timeout)
	}
	c := &adminClient{addr: a.addr}
	// Keep-alives are off: a command makes one or two calls and exits.
	// Proxy is nil: the admin token never goes through an HTTP proxy.
	tr := &http.Transport{DisableKeepAlives: true, TLSHandshakeTimeout: a.timeout}
	dialer := &net.Dialer{Timeout: a.timeout}
	switch {
	case strings.HasPrefix(a.addr, "unix:"):
		path := strings.TrimPrefix(a.addr, "unix:")
		if path == "" {
			return nil, fmt.Errorf("--admin-addr %q: want unix:/path, with the socket path after the colon", a.addr)
		}
		c.base = "http://localhost"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		}
	case strings.Contains(a.addr, "://"):
		u, err := url.Parse(a.addr)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("--admin-addr %q: want host:port, http://host:port or unix:/path", a.addr)
		}
		c.base = strings.TrimSuffix(u.String(), "/")
		tr.DialContext = dialer.DialContext
	default:
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil || port == "" {
			return nil, fmt.Errorf("--admin-addr %q: want host:port, http://host:port or unix:/path", a.addr)
		}
		if host == "" {
			host = "localhost" // ":9002", as a listen address means
		}
		c.base = "http://" + net.JoinHostPort(host, port)
		tr.DialContext = dialer.DialContext
	}
	c.http = &http.Client{Transport: tr, Timeout: a.timeout}

	var err error
	if c.token, err = adminToken(a.tokenFile); err != nil {
		return nil, err
	}
	if c.token == "" {
		fmt.Fprintln(stderr, "tollgate: no admin token: give --admin-token-file FILE or set TOLLGATE_ADMIN_TOKEN "+
			"to the token the server was started with")
		return nil, exitError(2)
	}
	return c, nil
}

// apiError is a non-2xx answer of the admin API.
type apiError struct {
	Method string
	Path   string // as sent, with its query
	Code   int
	Msg    string // the answer's {"error": ...}, or its text when not JSON
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Code, http.StatusText(e.Code))
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// call sends method path (with its query) and, when body is not nil, body
// as JSON. It returns the raw answer of a 2xx status, decoded into out when
// out is not nil; any other status is an *apiError.
func (c *adminClient) call(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer of %s: %w", method, path, c.addr, err)
	}
	if len(raw) > maxAnswer {
		return nil, fmt.Errorf("%s %s: the answer of %s is larger than %d bytes", method, path, c.addr, maxAnswer)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &apiError{Method: method, Path: path, Code: resp.StatusCode, Msg: errorText(raw)}
	}
	if out != nil {
		// Not strict: a newer server may add fields this client ignores.
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: the answer of %s is not the JSON expected: %w", method, path, c.addr, err)
		}
	}
	return raw, nil
}

// transportError says why a call got no answer, naming the address.
func (c *adminClient) transportError(ctx context.Context, method, path string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s %s: interrupted: %w", method, path, ctx.Err())
	case ue != nil && ue.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: no answer from the admin API at %s within %s (--timeout)", method, path, c.addr, c.http.Timeout)
	default:
		return fmt.Errorf("%s %s: cannot reach the admin API at %s (--admin-addr, env TOLLGATE_ADMIN_ADDR): %w", method, path, c.addr, err)
	}
}

// errorText returns the message of an error answer: its {"error": ...},
// else the start of its text.
func errorText(raw []byte) string {
	var e admin.ErrorBody
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(raw))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// clientPage is the page size the commands that list ask for: the admin
// API's largest, for the fewest calls.
const clientPage = 1000

// pages gets path with the query q, then the pages after it while an answer
// names a next, and gives each answer to page as it comes, which prints it
// and returns the answer's next ("" on the last page). Nothing is held but
// the page being printed, so a listing of any length works.
func (c *adminClient) pages(ctx context.Context, path string, q url.Values, page func(raw []byte) (string, error)) error {
	for {
		raw, err := c.call(ctx, "GET", path+"?"+q.Encode(), nil, nil)
		if err != nil {
			return err
		}
		next, err := page(raw)
		if err != nil || next == "" {
			return err
		}
		// Pages go forward in id (or customer) order; a next that does
		// not would loop for ever.
		if after := q.Get("after"); next <= after {
			return fmt.Errorf("GET %s: the admin API at %s answered next %q after %q", path, c.addr, next, after)
		}
		q.Set("after", next)
	}
}

// callPrint makes a command's call: it makes the admin client from the
// flags, sends method path with body (when not nil), decodes the answer into
// out (when not nil) and prints it: indented with --json (an answer without
// a body prints nothing), else with show (nil: nothing), which may make
// more calls with the client.
func (c *command) callPrint(ctx context.Context, stdout, stderr io.Writer, method, path string, body, out any, show func(*adminClient) error) error {
	cl, err := c.admin.client(stderr)
	if err != nil {
		return err
	}
	raw, err := cl.call(ctx, method, path, body, out)
	if err != nil {
		return err
	}
	if c.admin.json {
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil
		}
		return printJSON(stdout, raw)
	}
	if show == nil {
		return nil
	}
	return show(cl)
}

// listPages makes a command's listing: GET path with the query q, page
// after page (adminClient.pages), each answer decoded into a T whose next
// page next returns, and printed as it comes: as one JSON line with --json,
// else with show (first: the first page, for a header).
func listPages[T any](ctx context.Context, c *command, stdout, stderr io.Writer, path string, q url.Values,
	next func(*T) string, show func(ans *T, first bool) error) error {
	cl, err := c.admin.client(stderr)
	if err != nil {
		return err
	}
	first := true
	return cl.pages(ctx, path, q, func(raw []byte) (string, error) {
		var ans T
		if err := json.Unmarshal(raw, &ans); err != nil {
			return "", fmt.Errorf("GET %s: the answer is not the JSON expected: %w", path, err)
		}
		if c.admin.json {
			return next(&ans), printJSONLine(stdout, raw)
		}
		err := show(&ans, first)
		first = false
		return next(&ans), err
	})
}

// printJSONLine writes a JSON answer compacted on one line.
func printJSONLine(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Compact(&b, bytes.TrimSpace(raw)); err != nil {
		return fmt.Errorf("the answer is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// printJSON writes a JSON answer indented, with one newline after it.
func printJSON(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the answer is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// report prints an error of an admin command to stderr as "tollgate: ..."
// and turns it into exit status 1; exit statuses pass through.
func report(stderr io.Writer, err error) error {
	var exit exitError
	if err == nil || errors.As(err, &exit) {
		return err
	}
	fmt.Fprintln(stderr, "tollgate:", err)
	return exitError(1)
}

// command is one admin subcommand: its flag set, with the admin flags, and
// the usage line and text that -h shows.
type command struct {
	fs    *flag.FlagSet
	admin *adminFlags
}

// newCommand returns a subcommand named name ("keys get") whose -h shows
// "usage: tollgate <name> <synopsis>", then about, then the flags.
func newCommand(name, synopsis, about string, stderr io.Writer) *command {
	fs := newFlags(name, stderr)
	c := &command{fs: fs, admin: addAdminFlags(fs)}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: tollgate %s %s\n\n%s\nflags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return c
}

// parse parses args, whose flags may come before, between and after the
// positional arguments, and returns exactly len(names) positional
// arguments; anything after "--" is positional. -h, a bad flag or a wrong
// count of arguments is an exit status after the usage text.
func (c *command) parse(args []string, names ...string) ([]string, error) {
	fs := c.fs
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitError(0)
			}
			return nil, exitError(2)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case len(pos) < len(names):
		fmt.Fprintf(fs.Output(), "%s: missing %s\n\n", fs.Name(), names[len(pos)])
		fs.Usage()
		return nil, exitError(2)
	case len(pos) > len(names):
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n\n", fs.Name(), pos[len(names)])
		fs.Usage()
		return nil, exitError(2)
	}
	return pos, nil
}

// usageError prints msg and the usage text, for exit status 2.
func (c *command) usageError(format string, args ...any) error {
	fmt.Fprintf(c.fs.Output(), "%s: %s\n\n", c.fs.Name(), fmt.Sprintf(format, args...))
	c.fs.Usage()
	return exitError(2)
}

// stringsFlag collects a repeatable flag's values.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}
