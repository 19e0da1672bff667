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
// something else, shows no more: the user info is all before the last "@"
// (a password may hold "/", "?" or ":" unescaped), whatever the scheme and
// with or without "//". file: and memory: stores are shown as they are.
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
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
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

// secrets returns the secrets of a --store value that Redact masks.
func secrets(store string) []string {
	var out []string
	_, rest, _ := strings.Cut(store, ":")
	rest = strings.TrimPrefix(rest, "//")
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, password, ok := strings.Cut(rest[:at], ":")
		if !ok {
			password = user
		}
		out = append(out, password)
		rest = rest[at:]
	}
	if _, query, ok := strings.Cut(rest, "?"); ok {
		for p := range strings.SplitSeq(query, "&") {
			name, value, _ := strings.Cut(p, "=")
			if strings.Contains(strings.ToLower(name), "password") {
				out = append(out, value)
			}
		}
	}
	return out
}

// withheld returns err, or when its text shows a part of one of the store
// value's secrets (an error of the URL's parser or of go-redis quoting the
// bad part: a port that is the start of a password), an error that says
// only that it was withheld.
func withheld(err error, store string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	for _, s := range secrets(store) {
		for i := 0; i+4 <= len(s); i++ { // any 4 bytes of it
			if strings.Contains(text, s[i:i+4]) {
				return errors.New("not a Redis URL that can be used (the reason is withheld: it quotes the password)")
			}
		}
		if len(s) > 0 && len(s) < 4 && strings.Contains(text, s) {
			return errors.New("not a Redis URL that can be used (the reason is withheld: it quotes the password)")
		}
	}
	return err
}
