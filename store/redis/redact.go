package redis

import (
	"errors"
	"net/url"
	"strings"
)

// mask stands for a secret that is not shown.
const mask = "xxxxx"

// Redact returns a --store value with its secrets masked, to be logged or
// shown: the password of its user info, and the values of its query
// parameters named like a password (password=, sentinel_password=, the only
// way go-redis takes a Sentinel primary's). It reads the text as written,
// not as a URL, so that a value that does not parse as one, or parses as
// another, shows no more (userInfoEnd). file: and memory: stores are shown
// as they are.
func Redact(store string) string {
	scheme, rest, ok := strings.Cut(store, ":")
	if !ok || strings.EqualFold(scheme, "file") || strings.EqualFold(scheme, "memory") {
		return store
	}
	var b strings.Builder
	b.WriteString(scheme + ":")
	if strings.HasPrefix(rest, "//") {
		b.WriteString("//")
		rest = rest[2:]
	}
	if at := userInfoEnd(rest); at >= 0 {
		if user, _, password := strings.Cut(rest[:at], ":"); password {
			b.WriteString(user + ":" + mask)
		} else {
			b.WriteString(mask) // a lone name may be a password (redis://secret@host)
		}
		rest = rest[at:]
	}
	where, query, hasQuery := strings.Cut(rest, "?")
	b.WriteString(where)
	if hasQuery {
		b.WriteString("?" + redactQuery(query))
	}
	return b.String()
}

// userInfoEnd returns where the user info of rest (a store URL after its
// scheme and "//") ends, at an "@"; -1 when it has none. The user info is
// all before the last "@" (a password may hold "/" or ":" unescaped), but
// an "@" after a "?" may be the query's (client_name=ops@corp) or a "?" in
// the password: it is the query's when an "@" comes before the "?" (the
// user info ends there) or when what comes before the "?" is a host[:port]
// and path.
func userInfoEnd(rest string) int {
	at := strings.LastIndexByte(rest, '@')
	q := strings.IndexByte(rest, '?')
	if at < 0 || q < 0 || q > at {
		return at
	}
	before := rest[:q]
	if a := strings.LastIndexByte(before, '@'); a >= 0 {
		return a
	}
	if authority, _, _ := strings.Cut(before, "/"); isHostPort(authority) {
		return -1
	}
	return at
}

// isHostPort reports whether s is a host name or address, with an optional
// port of digits.
func isHostPort(s string) bool {
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
		if port == "" {
			return false
		}
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return true // an IPv6 address
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return host != ""
}

// redactQuery masks the values of a query's password parameters, and of
// any whose name does not unescape.
func redactQuery(query string) string {
	params := strings.Split(query, "&")
	for i, p := range params {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err != nil || strings.Contains(strings.ToLower(n), "password") {
			params[i] = name + "=" + mask
		}
	}
	return strings.Join(params, "&")
}

// reason returns why the store value was refused, err, without quoting
// any part of its secrets: for a value that holds some, the reason that
// the value gives with them masked (Redact's; an error of url.Parse or
// go-redis on a value without secrets cannot quote them). When only the
// secrets made it fail, it says so.
func reason(store string, err error) error {
	masked := Redact(store)
	if masked == store {
		return err
	}
	u, perr := url.Parse(masked)
	if perr == nil {
		_, perr = takeOptions(u, &Options{})
	}
	if perr == nil {
		_, perr = parseOptions(u)
	}
	var ue *url.Error // its text holds the whole value
	if errors.As(perr, &ue) {
		perr = ue.Err
	}
	if perr == nil {
		perr = errors.New(`the URL does not parse with its password: write "/", "?", "#", "@" and "%" in it as %2F, %3F, %23, %40 and %25`)
	}
	return perr
}
