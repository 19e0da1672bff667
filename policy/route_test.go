package policy

import (
	"strings"
	"testing"
)

// newTable builds a route table from match strings, failing the test on any
// error.
func newTable(tb testing.TB, matches ...string) *routeTable {
	tb.Helper()
	t := new(routeTable)
	for _, m := range matches {
		method, pattern, err := parseMatch(m)
		if err != nil {
			tb.Fatalf("parseMatch(%q): %v", m, err)
		}
		if err := t.add(&Route{Match: m, Method: method, Pattern: pattern}); err != nil {
			tb.Fatalf("add(%q): %v", m, err)
		}
	}
	return t
}

func matchString(r *Route) string {
	if r == nil {
		return "<nil>"
	}
	return r.Match
}

type matchStep struct {
	method, path string
	want         string // Route.Match, or "<nil>"
}

func runMatchSteps(t *testing.T, tab *routeTable, steps []matchStep) {
	t.Helper()
	for i, s := range steps {
		if got := matchString(tab.match(s.method, s.path)); got != s.want {
			t.Errorf("step %d: %s %s: got %s, want %s", i, s.method, s.path, got, s.want)
		}
	}
}

func TestRouteMatchPrecedence(t *testing.T) {
	tab := newTable(t,
		"GET /a/b/c",
		"POST /a/b/c",
		"ANY /a/b/e",
		"GET /a/{x}/d",
		"GET /a/{x+}",
		"ANY /p/{id}/t",
		"GET /p/{id}/t",
		"GET /",
		"ANY /{proxy+}",
	)
	runMatchSteps(t, tab, []matchStep{
		{"GET", "/a/b/c", "GET /a/b/c"},         // literal all the way
		{"POST", "/a/b/c", "POST /a/b/c"},       // same node, other method
		{"GET", "/a/b/d", "GET /a/{x}/d"},       // literal b fails at d: back to {x}
		{"GET", "/a/b/e", "ANY /a/b/e"},         // ANY where no exact method
		{"GET", "/a/z/d", "GET /a/{x}/d"},       // no literal z
		{"GET", "/a/b/c/d", "GET /a/{x+}"},      // literal and {x} fail deeper: greedy
		{"DELETE", "/a/b/c", "ANY /{proxy+}"},   // no DELETE at a/b/c, a/{x+} is GET: back to the root
		{"DELETE", "/a/b/e", "ANY /a/b/e"},      // ANY
		{"GET", "/a/b", "GET /a/{x+}"},          // a/b ends no route: greedy takes b
		{"GET", "/a", "ANY /{proxy+}"},          // no route ends at /a
		{"GET", "/a/", "ANY /{proxy+}"},         // {x+} needs a non-empty rest
		{"GET", "/p/1/t", "GET /p/{id}/t"},      // exact method beats ANY
		{"PUT", "/p/1/t", "ANY /p/{id}/t"},      // else ANY
		{"GET", "/p/1/t/", "ANY /{proxy+}"},     // match sees no trailing slash: normalizePath drops it
		{"GET", "/", "GET /"},                   // root
		{"POST", "/", "<nil>"},                  // root route is GET only; greedy needs a segment
		{"GET", "//", "ANY /{proxy+}"},          // not the root
		{"GET", "/A/b/c", "ANY /{proxy+}"},      // case-sensitive
		{"get", "/a/b/c", "ANY /{proxy+}"},      // methods are case-sensitive too
		{"GET", "/a//d", "GET /a/{x+}"},         // {x} does not match an empty segment
		{"GET", "/a/b/c?q=1", "GET /a/{x+}"},    // match takes a normalized path
		{"GET", "a/b/c", "<nil>"},               // not a path
		{"GET", "", "<nil>"},                    // empty
		{"PATCH", "/x/y/z/", "ANY /{proxy+}"},   // greedy takes the rest, slashes included
		{"OPTIONS", "/p/1/u", "ANY /{proxy+}"},  // p/{id} ends at u: no route
		{"HEAD", "/a/b/c/d/e", "ANY /{proxy+}"}, // a/{x+} is GET only
	})
}

func TestRouteMatchBacktracksThroughParams(t *testing.T) {
	// Each preferred branch is a dead end one level deeper than the last.
	tab := newTable(t,
		"GET /a/b/c/x",
		"GET /a/b/{y}/z",
		"GET /a/{x}/c/w",
		"GET /{v}/b/c/v",
	)
	runMatchSteps(t, tab, []matchStep{
		{"GET", "/a/b/c/x", "GET /a/b/c/x"},
		{"GET", "/a/b/c/z", "GET /a/b/{y}/z"},
		{"GET", "/a/b/c/w", "GET /a/{x}/c/w"},
		{"GET", "/a/b/c/v", "GET /{v}/b/c/v"},
		{"GET", "/a/b/c/u", "<nil>"},
		{"GET", "/q/b/c/v", "GET /{v}/b/c/v"},
	})
}

func TestRouteMatchGreedyNeedsASegment(t *testing.T) {
	tab := newTable(t, "GET /files/{path+}", "ANY /{all+}")
	runMatchSteps(t, tab, []matchStep{
		{"GET", "/files/a", "GET /files/{path+}"},
		{"GET", "/files/a/b/c.txt", "GET /files/{path+}"},
		{"GET", "/files/a/", "GET /files/{path+}"},
		{"GET", "/files//a", "GET /files/{path+}"},
		{"GET", "/files/", "ANY /{all+}"}, // nothing after "files/"
		{"GET", "/files", "ANY /{all+}"},
		{"GET", "/", "<nil>"}, // {all+} needs a segment too
	})
}

// TestRouteMatchTrailingSlashDodge guards the bypass of issue 13: "POST
// /transactions/" was no route, so its WAF rule, throttle and concurrency
// cap did not apply. Spellings that an upstream serves as the same path
// match the same route once normalized.
func TestRouteMatchTrailingSlashDodge(t *testing.T) {
	tab := newTable(t, "POST /transactions", "POST /partners/{id}/transactions", "GET /files/{path+}", "GET /")
	for i, s := range []matchStep{
		{"POST", "/transactions", "POST /transactions"},
		{"POST", "/transactions/", "POST /transactions"},
		{"POST", "/transactions//", "POST /transactions"},
		{"POST", "//transactions", "POST /transactions"},
		{"POST", "/transactions;x=1", "POST /transactions"},
		{"POST", "/transactions;x=1/", "POST /transactions"},
		{"POST", "/transactions/.", "POST /transactions"},
		{"POST", "/transactions/?a=1", "POST /transactions"},
		{"POST", "/partners/acme;v=2/transactions/", "POST /partners/{id}/transactions"},
		{"POST", "/partners//acme/transactions", "POST /partners/{id}/transactions"},
		{"GET", "/files/a/b/", "GET /files/{path+}"},
		{"GET", "//", "GET /"},
		{"GET", "/;x", "GET /"},
		{"POST", "/transactions%20", "<nil>"},    // "/transactions ": another path
		{"POST", "/transactions%3Bx=1", "<nil>"}, // an escaped ";" is not a parameter
		{"POST", "/Transactions", "<nil>"},       // case-sensitive
		{"POST", "/transactionsx", "<nil>"},      // segments, not prefixes
		{"POST", "/transactions/x", "<nil>"},     // a deeper path is another path
	} {
		p, ok := normalizePath(s.path)
		if !ok {
			t.Errorf("step %d: normalizePath(%q) failed", i, s.path)
			continue
		}
		if got := matchString(tab.match(s.method, p)); got != s.want {
			t.Errorf("step %d: %s %s (normalized %q): got %s, want %s", i, s.method, s.path, p, got, s.want)
		}
	}
}

func TestRouteMatchEmptySegments(t *testing.T) {
	// Envoy keeps "//" unless merge_slashes is on: such paths match no
	// literal or {name} route, and never crash.
	tab := newTable(t, "GET /a/b", "GET /a/{x}/c")
	runMatchSteps(t, tab, []matchStep{
		{"GET", "/a//b", "<nil>"},
		{"GET", "//a/b", "<nil>"},
		{"GET", "/a//c", "<nil>"},
		{"GET", "/a/b/", "<nil>"},
		{"GET", "///", "<nil>"},
	})
}

func TestRouteTableZeroValue(t *testing.T) {
	var tab routeTable
	if got := matchString(tab.match("GET", "/")); got != "<nil>" {
		t.Errorf("step 0: got %s, want <nil>", got)
	}
}

func TestParseMatch(t *testing.T) {
	steps := []struct {
		in              string
		method, pattern string
	}{
		{"GET /", "GET", "/"},
		{"POST /partners/{id}/transactions", "POST", "/partners/{id}/transactions"},
		{"ANY /{proxy+}", "ANY", "/{proxy+}"},
		{"M-SEARCH /x", "M-SEARCH", "/x"},
		{"GET /a/{order-id}/{v_2}", "GET", "/a/{order-id}/{v_2}"},
		{"GET /.well-known/x", "GET", "/.well-known/x"},
	}
	for i, s := range steps {
		m, p, err := parseMatch(s.in)
		if err != nil || m != s.method || p != s.pattern {
			t.Errorf("step %d: parseMatch(%q): got %q, %q, %v, want %q, %q, nil", i, s.in, m, p, err, s.method, s.pattern)
		}
	}
}

func TestParseMatchErrors(t *testing.T) {
	steps := []struct {
		in, want string
	}{
		{"GET", `"GET" is not "METHOD /path"`},
		{"", `"" is not "METHOD /path"`},
		{"GET  /a", `"GET  /a": want exactly one space between method and path`},
		{"get /a", `method "get" is not ANY or an upper-case HTTP method such as GET or POST`},
		{"Get /a", `method "Get" is not ANY or an upper-case HTTP method such as GET or POST`},
		{" /a", `method "" is not ANY or an upper-case HTTP method such as GET or POST`},
		{"1GET /a", `method "1GET" is not ANY or an upper-case HTTP method such as GET or POST`},
		{"GET a/b", `path "a/b" must start with "/"`},
		{"GET ", `path "" must start with "/"`},
		{"GET http://h/a", `path "http://h/a" must start with "/"`},
		{"GET /a//b", `empty segment ("//")`},
		{"GET //", `empty segment ("//")`},
		{"GET /a/{id+}/b", `"{id+}" must be the last segment`},
		{"GET /{id+}/", `"{id+}" must be the last segment`},
		{"GET /a/{}", `segment "{}": empty parameter name`},
		{"GET /a/{+}", `segment "{+}": empty parameter name`},
		{"GET /a/{a b}", `segment "{a b}": parameter name "a b" may hold only letters, digits, "_" and "-"`},
		{"GET /a/{a.b}", `segment "{a.b}": parameter name "a.b" may hold only letters, digits, "_" and "-"`},
		{"GET /a/{id++}", `segment "{id++}": parameter name "id+" may hold only letters, digits, "_" and "-"`},
		{"GET /a/{id", `segment "{id" has unbalanced braces`},
		{"GET /a/id}", `segment "id}" has unbalanced braces`},
		{"GET /a/{", `segment "{" has unbalanced braces`},
		{"GET /a/{{id}", `segment "{{id}" has unbalanced braces`},
		{"GET /a/x{id}", `segment "x{id}": a parameter must be the whole segment, as in "{id}"`},
		{"GET /a/{id}.json", `segment "{id}.json": a parameter must be the whole segment, as in "{id}"`},
		{"GET /a/{a}{b}", `segment "{a}{b}": a parameter must be the whole segment, as in "{id}"`},
		{"GET /a/{{id}}", `segment "{{id}}": a parameter must be the whole segment, as in "{id}"`},
		{"GET /a/{id}/b/{id}", `parameter name "id" is used twice`},
		{"GET /a/{id}/{id+}", `parameter name "id" is used twice`},
		{"GET /a/./b", `segment "." never matches: paths are matched with dot segments resolved`},
		{"GET /a/..", `segment ".." never matches: paths are matched with dot segments resolved`},
		{"GET /a?x=1", `segment "a?x=1": '?' is not allowed in a pattern (paths are matched decoded, without query string and path parameters)`},
		{"GET /a#b", `segment "a#b": '#' is not allowed in a pattern (paths are matched decoded, without query string and path parameters)`},
		{"GET /a%20b", `segment "a%20b": '%' is not allowed in a pattern (paths are matched decoded, without query string and path parameters)`},
		{"GET /a b", `segment "a b": space or control character ' ' is not allowed in a pattern`},
		{"GET /a\tb", `segment "a\tb": space or control character '\t' is not allowed in a pattern`},
	}
	for i, s := range steps {
		_, _, err := parseMatch(s.in)
		if err == nil {
			t.Errorf("step %d: parseMatch(%q): got nil error, want %s", i, s.in, s.want)
			continue
		}
		if err.Error() != s.want {
			t.Errorf("step %d: parseMatch(%q): got %s, want %s", i, s.in, err, s.want)
		}
	}
}

func TestRouteAddErrors(t *testing.T) {
	steps := []struct {
		method, pattern string
		want            string // "" for no error
	}{
		{"GET", "/a/{x}", ""},
		{"GET", "/a/{y}", `duplicate route "GET /a/{y}" (same as "GET /a/{x}")`},
		{"POST", "/a/{y}", ""},
		{"ANY", "/a/{z}", ""},
		{"ANY", "/a/{w}", `duplicate route "ANY /a/{w}" (same as "ANY /a/{z}")`},
		{"GET", "/a/{x+}", ""}, // greedy is another shape
		{"GET", "/a/{rest+}", `duplicate route "GET /a/{rest+}" (same as "GET /a/{x+}")`},
		{"GET", "/a/b", ""}, // literal is another shape
		{"GET", "/a/b", `duplicate route "GET /a/b" (same as "GET /a/b")`},
		{"GET", "/a/c/", `trailing slash: paths are matched without one ("/a/" is "/a"); write the path without it`},
		{"GET", "/a/c;v=1", `segment "c;v=1": ';' is not allowed in a pattern (paths are matched decoded, without query string and path parameters)`},
		{"GET", "/", ""},
		{"GET", "/", `duplicate route "GET /" (same as "GET /")`},
		{"get", "/c", `method "get" is not ANY or an upper-case HTTP method such as GET or POST`},
		{"", "/c", `method "" is not ANY or an upper-case HTTP method such as GET or POST`},
		{"GET", "c", `path "c" must start with "/"`},
		{"GET", "/c/{d+}/e", `"{d+}" must be the last segment`},
	}
	var tab routeTable
	for i, s := range steps {
		err := tab.add(&Route{Match: s.method + " " + s.pattern, Method: s.method, Pattern: s.pattern})
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != s.want {
			t.Errorf("step %d: add(%s %s): got %q, want %q", i, s.method, s.pattern, got, s.want)
		}
	}
	// The first route of each shape stays in place.
	runMatchSteps(t, &tab, []matchStep{
		{"GET", "/a/q", "GET /a/{x}"},
		{"PUT", "/a/q", "ANY /a/{z}"},
		{"GET", "/a/q/r", "GET /a/{x+}"},
		{"GET", "/c/d/e", "<nil>"},
	})
}

func TestNormalizePath(t *testing.T) {
	steps := []struct {
		in   string
		want string
		ok   bool
	}{
		{"/", "/", true},
		{"/transactions", "/transactions", true},
		{"/partners/42/transactions?x=1&y=2", "/partners/42/transactions", true},
		{"/a?", "/a", true},
		{"/a#frag", "/a", true},
		{"/a?q#f", "/a", true},
		{"/a?q=%zz", "/a", true},   // the query is not decoded
		{"/a?q=/../x", "/a", true}, // nor resolved
		{"/a//b", "/a/b", true},    // empty segments merged
		{"//", "/", true},
		{"/a/", "/a", true}, // no trailing slash
		{"/a///", "/a", true},
		{"/a;x=1", "/a", true}, // path parameters dropped
		{"/a;x=1;y/b;z", "/a/b", true},
		{"/a;/b", "/a/b", true},
		{"/;x", "/", true},
		{"/a/..;x/b", "", false}, // "..;x": ".." to a servlet container, a name to Envoy
		{"/a/.;x/b", "", false},
		{"/a/%2E%2e;x/b", "", false},
		{"/a/...;x/b", "/a/.../b", true}, // not a dot segment
		{"/a/x..;y/b", "/a/x../b", true},
		{"/a%3Bx=1", "/a%3Bx=1", true}, // an escaped ";" stays encoded
		{"/a%3bx", "/a%3Bx", true},
		{"/a%20", "/a ", true}, // spaces are significant
		{"/.well-known/x", "/.well-known/x", true},
		{"/a.b/c..d/...", "/a.b/c..d/...", true},

		// Percent-decoding.
		{"/a%20b", "/a b", true},
		{"/%41%62%63", "/Abc", true},
		{"/caf%C3%A9", "/café", true},
		{"/a%2fb", "", false}, // escaped slash
		{"/a%2Fb", "", false},
		{"/a%00b", "", false}, // escaped NUL
		{"/a\x00b", "", false},
		{"/a%zz", "", false},
		{"/a%4", "", false},
		{"/a%", "", false},
		{"/a%%41", "", false},
		{"/a%g1", "", false},
		{"/100%25", "/100%25", true}, // a literal percent stays encoded
		{"/a%3fb", "/a%3Fb", true},   // so do ? and #, upper-cased
		{"/a%23b", "/a%23b", true},
		{"/%252e%252e/x", "/%252e%252e/x", true}, // never decoded twice
		{"/a%3F%3f?x", "/a%3F%3F", true},

		// Dot segments.
		{"/.", "/", true},
		{"/..", "/", true},
		{"/../..", "/", true},
		{"/../a", "/a", true},
		{"/a/./b", "/a/b", true},
		{"/a/../b", "/b", true},
		{"/a/b/..", "/a", true},
		{"/a/b/.", "/a/b", true},
		{"/a/b/../../../../c", "/c", true},
		{"/a/b/../c/./d", "/a/c/d", true},
		{"/a//../b", "", false}, // ".." after an empty segment: "/a/b" or "/b", by who reads it
		{"/transactions/x//..", "", false},
		{"/a//%2e%2E/b", "", false},
		{"/a//..x", "/a/..x", true}, // not a dot segment
		{"/a/..//b", "/b", true},    // the empty segment after: one reading
		{"/a/.//b", "/a/b", true},
		{"/a/%2e%2e/b", "/b", true}, // escaped dots are dots
		{"/a/%2E/b", "/a/b", true},
		{"/a/.%2e", "/", true},
		{"/a/..?x=/", "/", true},

		// Unusable targets.
		{"", "", false},
		{"?x=1", "", false},
		{"#f", "", false},
		{"a/b", "", false},
		{"*", "", false},
		{"http://host/path", "", false},
		{"%2F", "", false},
	}
	for i, s := range steps {
		got, ok := normalizePath(s.in)
		if got != s.want || ok != s.ok {
			t.Errorf("step %d: normalizePath(%q): got %q, %v, want %q, %v", i, s.in, got, ok, s.want, s.ok)
		}
	}
}

func TestNormalizePathFastPathDoesNotAllocate(t *testing.T) {
	for i, in := range []string{"/partners/42/transactions", "/a/b?q=1", "/a/b/#f", "/transactions/"} {
		if n := testing.AllocsPerRun(100, func() { normalizePath(in) }); n != 0 {
			t.Errorf("step %d: normalizePath(%q): got %v allocations, want 0", i, in, n)
		}
	}
}

func TestRouteMatchDoesNotAllocate(t *testing.T) {
	tab := benchTable(t)
	for i, p := range benchPaths {
		if n := testing.AllocsPerRun(100, func() { tab.match(p.method, p.path) }); n != 0 {
			t.Errorf("step %d: match(%s %s): got %v allocations, want 0", i, p.method, p.path, n)
		}
	}
}

func FuzzNormalizePath(f *testing.F) {
	f.Add("/partners/42/transactions") // fast path, unchanged
	f.Add("/a/b?q=1#f")                // query and fragment dropped
	f.Add("/a//b/")                    // empty segments merged, trailing slash dropped
	f.Add("/a;x=1/b;c/%3B;")           // path parameters dropped, escaped ";" kept
	f.Add("/a/..;x/b//../c")           // ambiguous dot segments refused
	f.Add("/a/../../b/./c/..")         // dot segments, above the root
	f.Add("/a/%2e%2E/b")               // escaped dots resolved after decoding
	f.Add("/a%2Fb")                    // escaped slash rejected
	f.Add("/a%00")                     // escaped NUL rejected
	f.Add("/a%zz%4")                   // bad and truncated escapes
	f.Add("/%252e%3f%23")              // kept escapes: must stay idempotent
	f.Add("/%25%32%65")                // "%2e" spelled in escapes: decoded once only
	f.Add("/.%2e/.%2E./%2e.")          // mixed dot spellings
	f.Add("http://host/a")             // absolute form rejected
	f.Add("")                          // empty target
	tab := benchTable(f)
	f.Fuzz(func(t *testing.T, in string) {
		p, ok := normalizePath(in)
		if !ok {
			if p != "" {
				t.Errorf("normalizePath(%q): got %q with ok=false, want \"\"", in, p)
			}
			return
		}
		if !strings.HasPrefix(p, "/") {
			t.Errorf("normalizePath(%q): got %q, want a leading \"/\"", in, p)
		}
		if strings.ContainsAny(p, "?#\x00") {
			t.Errorf("normalizePath(%q): got %q, want no '?', '#' or NUL", in, p)
		}
		if strings.Contains(p, "//") || strings.ContainsRune(p, ';') || len(p) > 1 && strings.HasSuffix(p, "/") {
			t.Errorf("normalizePath(%q): got %q, want no empty segment, path parameter or trailing slash", in, p)
		}
		for _, seg := range strings.Split(p[1:], "/") {
			if seg == "." || seg == ".." {
				t.Errorf("normalizePath(%q): got %q, want no dot segments", in, p)
				break
			}
		}
		again, ok := normalizePath(p)
		if !ok || again != p {
			t.Errorf("normalizePath(%q) = %q: normalizing again got %q, %v, want %q, true", in, p, again, ok, p)
		}
		// match never panics on a normalized path.
		tab.match("GET", p)
	})
}

// benchTable is the payments example plus enough routes to give the trie
// some breadth.
func benchTable(tb testing.TB) *routeTable {
	return newTable(tb,
		"POST /transactions",
		"POST /partners/{id}/transactions",
		"GET /partners/{id}/transactions/{tx}",
		"GET /status",
		"GET /v1/users",
		"GET /v1/users/{id}",
		"PUT /v1/users/{id}",
		"DELETE /v1/users/{id}",
		"GET /v1/users/{id}/orders",
		"GET /v1/users/me/orders",
		"GET /v1/orders/{id}/items/{item}",
		"ANY /static/{path+}",
		"GET /",
	)
}

var benchPaths = []struct{ method, path string }{
	{"POST", "/transactions"},
	{"POST", "/partners/acme/transactions"},
	{"GET", "/partners/acme/transactions/tx-1"},
	{"GET", "/status"},
	{"GET", "/v1/users/me/orders"},
	{"GET", "/v1/users/42/orders"},
	{"GET", "/static/css/site/main.css"},
	{"GET", "/nowhere/at/all"},
}

func BenchmarkRouteMatch(b *testing.B) {
	tab := benchTable(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := benchPaths[i%len(benchPaths)]
		if tab.match(p.method, p.path) == nil && p.path != "/nowhere/at/all" {
			b.Fatalf("match(%s %s): got nil", p.method, p.path)
		}
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, in := range []string{"/partners/acme/transactions?limit=10", "/a/%2e%2e/b%20c/./d"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				normalizePath(in)
			}
		})
	}
}

// TestInvalidTargetSaysWhy: a request:invalid denial says what is wrong with
// the target (issue 13: it said nothing).
func TestInvalidTargetSaysWhy(t *testing.T) {
	for i, s := range []struct{ method, target, want string }{
		{"", "", "no method and no path (no HTTP request attributes?)"},
		{"", "/a", "no method"},
		{"GET", "", "no path"},
		{"GET", "?x=1", "no path"},
		{"GET", "a/b", `path "a/b" does not start with "/"`},
		{"GET", "/a%00", "path holds a NUL byte"},
		{"GET", "/a%2fb?q", `path "/a%2fb" holds an escaped slash (%2F)`},
		{"GET", "/a/..;x/b", `path "/a/..;x/b" has a dot segment with parameters ("..;"), which servers read in different ways`},
		{"GET", "/a//../b", `path "/a//../b" has ".." after an empty segment, which servers read in different ways`},
		{"GET", "/a%zz", `path "/a%zz" holds a bad escape`},
		{"GET", "/" + strings.Repeat("x", 100) + "%", `path "/` + strings.Repeat("x", 63) + `..." holds a bad escape`},
	} {
		_, f := normalizeTarget(s.target)
		if f == pathOK && s.method != "" {
			t.Fatalf("step %d: %q normalizes", i, s.target)
		}
		if got := invalidTarget(s.method, s.target, f); got != s.want {
			t.Errorf("step %d: got %q, want %q", i, got, s.want)
		}
	}
}
