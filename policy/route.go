package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Route patterns and matching (package doc, "Stage and route").
//
// A pattern is "/" followed by segments separated by "/". A segment is a
// literal, "{name}" (exactly one non-empty path segment) or, only as the last
// segment, "{name+}" (greedy: the rest of the path, at least one character,
// slashes included). The root pattern "/" is the single empty segment and
// matches only the path "/".
//
// A request path is matched in a canonical form (normalizePath), so that no
// spelling of a path that its upstream would serve as a route's path can
// dodge that route's limits: a trailing slash does not make another route
// ("/status/" is "/status", as API Gateway treats it), empty segments are
// merged ("/a//b" is "/a/b", like Envoy's merge_slashes), and path parameters
// are dropped from each segment ("/a;v=1/b" is "/a/b", as servlet containers
// read it). Patterns are written in that form: a pattern with a trailing
// slash, an empty segment or a ";" is rejected, since no canonical path holds
// one. Everything else is significant: case, spaces and other characters
// ("/transactions%20" is "/transactions ", another path, which the route
// "POST /transactions" does not match and unknown_routes decides).

// routeTable matches requests to the routes of one stage (or to the routes of
// a WAF rule's scope). It is a trie of path segments; the zero value is an
// empty table. A table is built once with add and then only read by match,
// which is safe for concurrent use.
type routeTable struct {
	root *routeNode
}

// routeNode is one segment position in the trie.
type routeNode struct {
	lit    map[string]*routeNode // literal segments
	param  *routeNode            // {name}
	greedy *routeNode            // {name+}; a node without children

	// Routes ending here.
	methods map[string]*Route // by exact method
	any     *Route            // method ANY
}

// add adds r to the table; it fails when r.Method or r.Pattern is malformed,
// or when a route with the same method and pattern shape (parameter names
// ignored) is already there. On error the table is unchanged.
func (t *routeTable) add(r *Route) error {
	if err := checkMethod(r.Method); err != nil {
		return err
	}
	segs, err := parsePattern(r.Pattern)
	if err != nil {
		return err
	}
	if t.root == nil {
		t.root = new(routeNode)
	}
	n := t.root
	for _, s := range segs {
		switch s.kind {
		case segLiteral:
			c := n.lit[s.text]
			if c == nil {
				if n.lit == nil {
					n.lit = make(map[string]*routeNode)
				}
				c = new(routeNode)
				n.lit[s.text] = c
			}
			n = c
		case segParam:
			if n.param == nil {
				n.param = new(routeNode)
			}
			n = n.param
		case segGreedy:
			if n.greedy == nil {
				n.greedy = new(routeNode)
			}
			n = n.greedy
		}
	}
	old := n.any
	if r.Method != "ANY" {
		old = n.methods[r.Method]
	}
	if old != nil {
		return fmt.Errorf("duplicate route %q (same as %q)", r.Method+" "+r.Pattern, old.Method+" "+old.Pattern)
	}
	if r.Method == "ANY" {
		n.any = r
		return nil
	}
	if n.methods == nil {
		n.methods = make(map[string]*Route)
	}
	n.methods[r.Method] = r
	return nil
}

// match returns the route for method and a normalized path (see
// normalizePath), or nil. Literal segments beat {name}, which beats {name+},
// segment by segment from the left; when the preferred branch finds no route
// further down, the next one is tried. Where several routes end, the exact
// method beats ANY. match does not allocate, and visits each trie node at
// most once.
func (t *routeTable) match(method, path string) *Route {
	if t.root == nil || len(path) == 0 || path[0] != '/' {
		return nil
	}
	return t.root.lookup(method, path[1:])
}

// lookup matches rest, the part of a path after a "/", which holds at least
// one (possibly empty) segment.
func (n *routeNode) lookup(method, rest string) *Route {
	seg, tail, more := rest, "", false
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		seg, tail, more = rest[:i], rest[i+1:], true
	}
	if c := n.lit[seg]; c != nil {
		if r := c.next(method, tail, more); r != nil {
			return r
		}
	}
	if n.param != nil && seg != "" {
		if r := n.param.next(method, tail, more); r != nil {
			return r
		}
	}
	if n.greedy != nil && rest != "" {
		return n.greedy.route(method)
	}
	return nil
}

// next goes on below n: with the segments in tail when more, else n is where
// the path ends.
func (n *routeNode) next(method, tail string, more bool) *Route {
	if more {
		return n.lookup(method, tail)
	}
	return n.route(method)
}

// route returns the route of method ending at n, else the ANY route, or nil.
func (n *routeNode) route(method string) *Route {
	if r := n.methods[method]; r != nil {
		return r
	}
	return n.any
}

type segKind uint8

const (
	segLiteral segKind = iota
	segParam
	segGreedy
)

type segment struct {
	kind segKind
	text string // the literal, or the parameter name
}

// parseMatch splits a route match "METHOD /path" into its method and
// pattern and checks both. The method is ANY or an upper-case HTTP method
// token (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ...); one space
// separates it from the pattern.
func parseMatch(s string) (method, pattern string, err error) {
	method, pattern, ok := strings.Cut(s, " ")
	if !ok {
		return "", "", fmt.Errorf("%q is not \"METHOD /path\"", s)
	}
	if err := checkMethod(method); err != nil {
		return "", "", err
	}
	if strings.HasPrefix(pattern, " ") {
		return "", "", fmt.Errorf("%q: want exactly one space between method and path", s)
	}
	if _, err := parsePattern(pattern); err != nil {
		return "", "", err
	}
	return method, pattern, nil
}

// checkMethod accepts ANY and upper-case method tokens: an upper-case letter,
// then upper-case letters, digits, "-" or "_".
func checkMethod(m string) error {
	bad := m == ""
	for i := 0; i < len(m) && !bad; i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '-' || c == '_'):
		default:
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("method %q is not ANY or an upper-case HTTP method such as GET or POST", m)
	}
	return nil
}

// parsePattern splits a path pattern into segments and checks it.
func parsePattern(p string) ([]segment, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("path %q must start with \"/\"", p)
	}
	if p == "/" {
		return []segment{{kind: segLiteral}}, nil
	}
	parts := strings.Split(p[1:], "/")
	segs := make([]segment, 0, len(parts))
	for i, s := range parts {
		last := i == len(parts)-1
		if !strings.ContainsAny(s, "{}") {
			if err := checkLiteral(s, last); err != nil {
				return nil, err
			}
			segs = append(segs, segment{kind: segLiteral, text: s})
			continue
		}
		if strings.Count(s, "{") != strings.Count(s, "}") {
			return nil, fmt.Errorf("segment %q has unbalanced braces", s)
		}
		if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") || strings.ContainsAny(s[1:len(s)-1], "{}") {
			return nil, fmt.Errorf("segment %q: a parameter must be the whole segment, as in \"{id}\"", s)
		}
		name, kind := s[1:len(s)-1], segParam
		if n, ok := strings.CutSuffix(name, "+"); ok {
			name, kind = n, segGreedy
			if !last {
				return nil, fmt.Errorf("%q must be the last segment", s)
			}
		}
		if err := checkParamName(s, name); err != nil {
			return nil, err
		}
		for _, o := range segs {
			if o.kind != segLiteral && o.text == name {
				return nil, fmt.Errorf("parameter name %q is used twice", name)
			}
		}
		segs = append(segs, segment{kind: kind, text: name})
	}
	return segs, nil
}

// checkLiteral rejects literal segments that no normalized path can hold.
func checkLiteral(s string, last bool) error {
	switch s {
	case "":
		if last {
			return errors.New("trailing slash: paths are matched without one (\"/a/\" is \"/a\"); write the path without it")
		}
		return errors.New("empty segment (\"//\")")
	case ".", "..":
		return fmt.Errorf("segment %q never matches: paths are matched with dot segments resolved", s)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '?' || c == '#' || c == '%' || c == ';':
			return fmt.Errorf("segment %q: %q is not allowed in a pattern (paths are matched decoded, without query string and path parameters)", s, c)
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("segment %q: space or control character %q is not allowed in a pattern", s, c)
		}
	}
	return nil
}

// checkParamName accepts letters, digits, "_" and "-".
func checkParamName(seg, name string) error {
	if name == "" {
		return fmt.Errorf("segment %q: empty parameter name", seg)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("segment %q: parameter name %q may hold only letters, digits, \"_\" and \"-\"", seg, name)
		}
	}
	return nil
}

// normalizePath returns the canonical path of a request target, the form
// routes are matched in (package doc, "Stage and route"): without its query string and fragment,
// without path parameters (";v=1" up to the end of each segment, as
// servlet containers read them; an escaped "%3B" is not one), percent-decoded,
// with "." and ".." segments resolved (RFC 3986 §5.2.4; ".." above the root
// stays at the root), empty segments merged ("/a//b" is "/a/b") and without a
// trailing slash ("/a/" is "/a"; the root stays "/"). ok is false when the
// target is unusable: empty or not starting with "/" (the absolute form
// "http://host/path" included), a bad escape ("%zz", "%4"), a NUL byte, raw
// or escaped, an escaped slash "%2F", or dot segments that servers read in
// different ways ("..;x", "/a//../b": see dropParams and ambiguousDots). An
// escaped slash is rejected rather than decoded or kept because either
// choice makes tollgate and the upstream see different segments (Envoy's
// path_with_escaped_slashes_action has the same concern).
//
// Four escapes stay encoded, upper-case: "%25" ("%"), "%3F" ("?"), "%23"
// ("#") and "%3B" (";"). Decoding them would make the result mean something
// else when read again, so the result is canonical: normalizing it again
// returns it unchanged, and nothing is ever decoded twice ("%252e" is the
// segment "%252e", not "."). Pattern literals cannot hold these characters,
// so such segments match only parameters.
//
// A target that is already canonical (with or without a query string) is
// returned as a substring, without allocating; so is one whose only
// difference is a trailing slash.
func normalizePath(target string) (path string, ok bool) {
	path, f := normalizeTarget(target)
	return path, f == pathOK
}

// pathFault says why normalizeTarget refused a target.
type pathFault uint8

// The faults of a target, pathOK for none.
const (
	pathOK        pathFault = iota
	pathEmpty               // no path before the query string
	pathRelative            // not starting with "/"
	pathNUL                 // a NUL byte, raw or escaped
	pathSlash               // an escaped slash, %2F
	pathEscape              // a bad escape
	pathDotParams           // a dot segment with parameters ("..;x")
	pathDots                // ".." right after an empty segment
)

// normalizeTarget is normalizePath, saying why it refused a target.
func normalizeTarget(target string) (string, pathFault) {
	path := target
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		path = target[:i]
	}
	switch {
	case path == "":
		return "", pathEmpty
	case path[0] != '/':
		return "", pathRelative
	}
	slow := strings.IndexByte(path, '%') >= 0 || strings.IndexByte(path, 0) >= 0 ||
		strings.Contains(path, "/.") || strings.IndexByte(path, ';') >= 0 || strings.Contains(path, "//")
	if !slow {
		return trimSlash(path), pathOK
	}
	undotted, ok := dropParams(path)
	if !ok {
		return "", pathDotParams
	}
	dec, f := percentDecode(undotted)
	switch {
	case f != pathOK:
		return "", f
	case ambiguousDots(dec):
		return "", pathDots
	}
	return trimSlash(mergeSlashes(removeDotSegments(dec))), pathOK
}

// ambiguousDots reports whether p (decoded) has a ".." segment right after
// an empty one ("/a/b//../c"). Proxies and servers resolve such a path in
// two ways: dots first, the empty segment taking the ".." (Envoy's
// normalize_path then merge_slashes: "/a/b/c"), or slashes merged first
// (nginx, Go's path.Clean: "/a/c"). Either reading here would let a client
// make tollgate and its upstream see different routes, so it is refused,
// as an escaped slash is.
func ambiguousDots(p string) bool {
	for i := strings.Index(p, "//.."); i >= 0; {
		if end := i + 4; end == len(p) || p[end] == '/' {
			return true
		}
		j := strings.Index(p[i+1:], "//..")
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// trimSlash drops the trailing slash of p, unless p is the root "/".
func trimSlash(p string) string {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return p[:len(p)-1]
	}
	return p
}

// dropParams removes the path parameters of p: in each segment, from a ";"
// up to the next "/". ok is false when a segment is a dot segment once its
// parameters are gone ("..;x", "%2e;x"): servlet containers resolve it as
// "..", Envoy, nginx and Go keep it as a name, so it is refused rather than
// read either way.
func dropParams(p string) (string, bool) {
	if strings.IndexByte(p, ';') < 0 {
		return p, true
	}
	b := make([]byte, 0, len(p))
	start := 0 // where the current segment starts in b
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' {
			b = append(b, c)
			start = len(b)
			continue
		}
		if c != ';' {
			b = append(b, c)
			continue
		}
		if isDotSegment(string(b[start:])) {
			return "", false
		}
		for i+1 < len(p) && p[i+1] != '/' {
			i++
		}
	}
	return string(b), true
}

// isDotSegment reports whether seg, raw or percent-encoded, is "." or "..".
func isDotSegment(seg string) bool {
	n := 0
	for i := 0; i < len(seg); n++ {
		switch {
		case seg[i] == '.':
			i++
		case len(seg)-i >= 3 && seg[i] == '%' && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E'):
			i += 3
		default:
			return false
		}
	}
	return n == 1 || n == 2
}

// mergeSlashes replaces every run of slashes in p with one.
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && len(b) > 0 && b[len(b)-1] == '/' {
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// percentDecode decodes the escapes of p except %25, %3F, %23 and %3B, which it
// writes upper-case. It refuses a bad escape, a NUL or "%2F".
func percentDecode(p string) (string, pathFault) {
	if strings.IndexByte(p, '%') < 0 {
		if strings.IndexByte(p, 0) >= 0 {
			return "", pathNUL
		}
		return p, pathOK
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == 0 {
			return "", pathNUL
		}
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", pathEscape
		}
		c = unhex(p[i+1])<<4 | unhex(p[i+2])
		i += 2
		switch c {
		case 0:
			return "", pathNUL
		case '/':
			return "", pathSlash
		case '%', '?', '#', ';':
			const hex = "0123456789ABCDEF"
			b = append(b, '%', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(b), pathOK
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// removeDotSegments resolves "." and ".." segments of p, which starts with
// "/". A trailing "." or ".." leaves a trailing slash ("/a/b/.." is "/a/").
func removeDotSegments(p string) string {
	if !strings.Contains(p, "/.") {
		return p
	}
	out := make([]byte, 0, len(p))
	rest := p[1:]
	for {
		seg, tail, more := rest, "", false
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, tail, more = rest[:i], rest[i+1:], true
		}
		switch seg {
		case ".":
		case "..":
			if i := bytes.LastIndexByte(out, '/'); i >= 0 {
				out = out[:i]
			}
		default:
			out = append(out, '/')
			out = append(out, seg...)
		}
		if !more {
			if seg == "." || seg == ".." {
				out = append(out, '/')
			}
			break
		}
		rest = tail
	}
	if len(out) == 0 {
		return "/"
	}
	return string(out)
}
