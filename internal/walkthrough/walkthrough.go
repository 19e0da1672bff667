// Package walkthrough reads the walkthroughs of the examples' READMEs, for
// the tests that send their requests and check the answers shown: the
// Envoy walkthrough (envoy/) and its nginx and Caddy variants (examples/,
// the module of the examples' tests, which may import it as it may
// internal/envoyconf).
//
// A walkthrough is a run of ```sh blocks holding curl commands to one
// address, each followed by the ```http block of the answer it gets, when
// shown:
//
//	steps := walkthrough.Parse(t, readme, "localhost:8080")
//	for _, s := range steps { ...send s.Times times...; s.Want.Check(...) }
//
// Parse takes only the curl commands to the address given, and only the
// answers shown after an sh block holding one, so that one README can hold
// walkthroughs of several proxies.
package walkthrough

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Step is one request of a walkthrough: how many times it is sent, and
// when shown, the answer the reader is told to expect.
type Step struct {
	Method, Path string
	// Headers holds the -H headers, names lower case.
	Headers map[string]string
	Times   int
	// Until: the step is sent up to Times times, until the answer has
	// this status (0: sent Times times).
	Until int
	Want  *Answer // nil: sent, not shown
	Block int     // the sh block it is in: a person pauses between blocks
}

// Answer is an answer as the walkthrough shows it.
type Answer struct {
	Status int
	// Headers are the headers shown, names lower case, in order; "…" in
	// a value stands for anything.
	Headers [][2]string
	Body    string
}

var (
	fence     = regexp.MustCompile("(?s)```(sh|http)\n(.*?)```")
	seqLoop   = regexp.MustCompile(`^for i in \$\(seq (\d+)\); do (curl .*); done$`)
	untilLoop = regexp.MustCompile(`^for i in \$\(seq (\d+)\); do (curl .*) > (\S+); grep -q '\^HTTP/1\.1 (\d+)' (\S+) && break; done; cat (\S+)$`)
	shellWord = regexp.MustCompile(`'[^']*'|"[^"]*"|\S+`)
)

// Parse reads the curl commands to http://addr in text, in order, and the
// answers shown after them. An http block belongs to the curl command
// just before it, in the sh block just before it.
func Parse(t testing.TB, text, addr string) []Step {
	t.Helper()
	var steps []Step
	block := 0
	ours := false // the last sh block holds a curl to addr
	for _, m := range fence.FindAllStringSubmatch(text, -1) {
		if m[1] == "http" {
			if !ours {
				continue
			}
			if steps[len(steps)-1].Want != nil {
				t.Fatalf("two http blocks after one curl to %s: %q", addr, m[2])
			}
			steps[len(steps)-1].Want = parseAnswer(t, m[2])
			continue
		}
		block++
		ours = false
		for _, line := range strings.Split(strings.TrimSpace(m[2]), "\n") {
			if !strings.Contains(line, "http://"+addr) {
				continue
			}
			times, until := 1, 0
			if lm := untilLoop.FindStringSubmatch(line); lm != nil {
				if lm[3] != lm[5] || lm[3] != lm[6] {
					t.Fatalf("%q: the loop writes %s but reads %s and shows %s", line, lm[3], lm[5], lm[6])
				}
				times, _ = strconv.Atoi(lm[1])
				until, _ = strconv.Atoi(lm[4])
				line = lm[2]
			} else if lm := seqLoop.FindStringSubmatch(line); lm != nil {
				times, _ = strconv.Atoi(lm[1])
				line = lm[2]
			}
			s := parseCurl(t, line, addr, times, block)
			s.Until = until
			steps = append(steps, s)
			ours = true
		}
	}
	return steps
}

func parseCurl(t testing.TB, line, addr string, times, block int) Step {
	t.Helper()
	s := Step{Method: "GET", Headers: map[string]string{}, Times: times, Block: block}
	words := shellWord.FindAllString(line, -1)
	for i := 1; i < len(words); i++ {
		w := strings.Trim(words[i], `'"`)
		switch {
		case w == "-X":
			i++
			s.Method = words[i]
		case w == "-H":
			i++
			name, value, _ := strings.Cut(strings.Trim(words[i], `'"`), ":")
			s.Headers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
		case w == "-o":
			i++
		case strings.HasPrefix(w, "http://"+addr):
			s.Path = strings.TrimPrefix(w, "http://"+addr)
		}
	}
	if s.Path == "" {
		t.Fatalf("curl line without a URL: %s", line)
	}
	return s
}

func parseAnswer(t testing.TB, block string) *Answer {
	t.Helper()
	head, body, _ := strings.Cut(block, "\n\n")
	lines := strings.Split(strings.TrimSpace(head), "\n")
	fields := strings.Fields(lines[0])
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		t.Fatalf("http block without a status line: %q", block)
	}
	a := &Answer{Body: strings.TrimSpace(body)}
	a.Status, _ = strconv.Atoi(fields[1])
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("header line %q is not name: value", l)
		}
		a.Headers = append(a.Headers, [2]string{strings.ToLower(name), value})
	}
	return a
}

// TollgateHeader reports whether tollgate sets the header (lower case) on
// the answers it decides, so that a walkthrough must show it: the
// rate-limit headers, Retry-After, x-tollgate-reason, and a denial's
// content-type.
func TollgateHeader(name string) bool {
	return strings.HasPrefix(name, "ratelimit") || strings.HasPrefix(name, "x-ratelimit") || name == "retry-after" ||
		name == "x-tollgate-reason" || name == "content-type"
}

// Check compares an answer with the one shown: the status, the body, every
// header shown (… matches anything) and no header that owned reports (such
// as TollgateHeader) that is not shown. headers has lower-case names. It
// returns what differs, one line each.
func (a *Answer) Check(status int, body string, headers map[string]string, owned func(name string) bool) []string {
	var diffs []string
	if status != a.Status || body != a.Body {
		diffs = append(diffs, fmt.Sprintf("got %d %q, want %d %q", status, body, a.Status, a.Body))
	}
	shown := map[string]bool{}
	for _, h := range a.Headers {
		shown[h[0]] = true
		pattern := "^" + strings.ReplaceAll(regexp.QuoteMeta(h[1]), "…", ".*") + "$"
		if v, ok := headers[h[0]]; !ok || !regexp.MustCompile(pattern).MatchString(v) {
			diffs = append(diffs, fmt.Sprintf("%s: got %q, want %q", h[0], v, h[1]))
		}
	}
	var names []string
	for name := range headers {
		if owned(name) && !shown[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		diffs = append(diffs, fmt.Sprintf("the answer has %s: %s, which the walkthrough does not show", name, headers[name]))
	}
	return diffs
}
