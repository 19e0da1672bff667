package redis

import (
	"errors"
	"net/url"
	"strings"
)

// mask stands for a secret that is not shown.
const mask = "xxxxx"

// IsURL reports whether a --store value names a Redis store (Open's):
// redis, rediss, their -sentinel and -cluster forms, or a unix: socket.
func IsURL(store string) bool {
	return strings.HasPrefix(store, "redis") || strings.HasPrefix(store, "unix:")
}

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
// scheme and "//") ends, at an "@"; -1 when it has none. A password may
// hold "/", ":", "?", "#", "@" or "&" unescaped, so the user info is all
// before the last "@", unless every "@" after the first "?" belongs to a
// query as written: one whose parameters are name=value with no "@" in the
// names, after a host[:port] (or a socket's path). Then the user info ends
// at the last "@" before the "?", if any (client_name=ops@corp).
func userInfoEnd(rest string) int {
	at := strings.LastIndexByte(rest, '@')
	q := strings.IndexByte(rest, '?')
	if at < 0 || q < 0 || q > at {
		return at
	}
	before, query := rest[:q], rest[q+1:]
	authority, _, _ := strings.Cut(before, "/")
	if a := strings.LastIndexByte(authority, '@'); a >= 0 {
		authority = authority[a+1:]
	}
	if !isHostPort(authority) || !isQuery(query) {
		return at // a "?" in the password
	}
	if a := strings.LastIndexByte(before, '@'); a >= 0 {
		return a
	}
	return -1
}

// isHostPort reports whether s is a host name or address, with an optional
// port of digits; "" is one (a socket's path follows, or go-redis's
// default).
func isHostPort(s string) bool {
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
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
	return true
}

// isQuery reports whether query reads as go-redis's options: parameters of
// name=value whose names hold letters, digits and "_" only.
func isQuery(query string) bool {
	for p := range strings.SplitSeq(query, "&") {
		name, _, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return false
		}
		for _, c := range name {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
				return false
			}
		}
	}
	return true
}

// redactQuery masks the values of a query's password parameters (with any
// "&" in them: the parameters after one that hold no "="), and of any
// parameter whose name does not unescape.
func redactQuery(query string) string {
	params := strings.Split(query, "&")
	out := params[:0]
	masking := false
	for _, p := range params {
		name, _, hasValue := strings.Cut(p, "=")
		if masking && !hasValue {
			continue // the rest of a password that held "&"
		}
		n, err := url.QueryUnescape(name)
		masking = err != nil || strings.Contains(strings.ToLower(n), "password")
		if masking {
			p = name + "=" + mask
		}
		out = append(out, p)
	}
	return strings.Join(out, "&")
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
		_, perr = takeOptions(u, masked, &Options{})
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
