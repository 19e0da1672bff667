package redis

import (
	"net/url"
	"strings"
	"testing"
)

// TestRedact: a --store value's secrets are masked, the rest shown, also
// where the value does not parse as a URL, or parses as another one (the
// "//" left out, a "/" in the password: cases a reviewer found).
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://default:pw@127.0.0.1:6379/0":                     "redis://default:xxxxx@127.0.0.1:6379/0",
		"redis://127.0.0.1:6379/0?pool_size=5":                    "redis://127.0.0.1:6379/0?pool_size=5",
		"redis://secret@127.0.0.1:6379":                           "redis://xxxxx@127.0.0.1:6379",
		"redis-sentinel://h:1?master_name=m&password=pw":          "redis-sentinel://h:1?master_name=m&password=xxxxx",
		"redis-sentinel://h:1?sentinel_password=pw&master_name=m": "redis-sentinel://h:1?sentinel_password=xxxxx&master_name=m",
		"redis-cluster://u:pw@h:1?addr=h:2":                       "redis-cluster://u:xxxxx@h:1?addr=h:2",
		"redis://default:p w@127.0.0.1:6379/0":                    "redis://default:xxxxx@127.0.0.1:6379/0",
		"Redis://default:hunter6pw@127.0.0.1:1/0":                 "Redis://default:xxxxx@127.0.0.1:1/0",
		"redis://default:hunt/er9pw@127.0.0.1:1/0":                "redis://default:xxxxx@127.0.0.1:1/0",
		"redis://default:31337/er9pw@127.0.0.1:1/0":               "redis://default:xxxxx@127.0.0.1:1/0",
		"redis://default:a?b@c@127.0.0.1:1/0":                     "redis://default:xxxxx@127.0.0.1:1/0",
		"redis:default:hunter8pw@127.0.0.1:6379/0":                "redis:default:xxxxx@127.0.0.1:6379/0",
		"unix:///run/redis.sock?password=pw&db=1":                 "unix:///run/redis.sock?password=xxxxx&db=1",
		"redis://h:1?%zz=pw":                                      "redis://h:1?%zz=xxxxx",
		// An "@" after a "?": the query's, or a "?" in the password.
		"redis-sentinel://h:26379?master_name=m&password=x@hunter2": "redis-sentinel://h:26379?master_name=m&password=xxxxx",
		"redis://127.0.0.1:6379/0?client_name=ops@corp":             "redis://127.0.0.1:6379/0?client_name=ops@corp",
		"redis://u:pw@h:1?client_name=ops@corp":                     "redis://u:xxxxx@h:1?client_name=ops@corp",
		"redis://u:a?b@h:1":                                         "redis://u:xxxxx@h:1",
		"redis://[::1]:6379?client_name=a@b":                        "redis://[::1]:6379?client_name=a@b",
		"file:./tollgate-data":                                      "file:./tollgate-data",
		"file:/data/a@b":                                            "file:/data/a@b",
		"memory:":                                                   "memory:",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenErrorsQuoteNoPassword: Open's error for a value it refuses
// names it redacted, and gives the reason that the value gives with its
// password masked, so that no part of the password is quoted (url.Parse's
// "invalid port \":hunt\"", go-redis's "invalid URL path: /er9pw@..."),
// while a reason that has nothing to do with it is kept.
func TestOpenErrorsQuoteNoPassword(t *testing.T) {
	for _, c := range []struct{ url, secret, reason string }{
		{"redis://default:hunt/er9pw@127.0.0.1:1/0", "hunt", "does not parse with its password"},
		{"redis://default:31337/er9pw@127.0.0.1:1/0", "er9pw", "does not parse with its password"},
		{"redis://default:zq7/secretpw@127.0.0.1:1/0", "zq7", "does not parse with its password"},
		{"redis://default:myredispw@127.0.0.1:1/0?bogus_option=1", "myredispw", "unexpected option: bogus_option"},
		{"redis://default:myredispw@127.0.0.1:1/0?retention=x", "myredispw", "retention"},
		{"redis-sentinel://h:1?password=pw1234", "pw1234", "master_name"},
	} {
		_, err := Open(c.url, Options{})
		if err == nil {
			t.Fatalf("Open(%q): no error", c.url)
		}
		if strings.Contains(err.Error(), c.secret) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("Open(%q): %v; want %q, and no part of the password", c.url, err, c.reason)
		}
	}
}

// Unescaped "?", "@" and "&" in passwords, and valid values without one:
// a reviewer's cases. None of them dials.

// A "?" in the password whose text before the "?" looks like host:port
// (a user and a password beginning with digits) is masked, in Redact and in
// Open's error.
func TestRedactQuestionMarkAfterDigits(t *testing.T) {
	for _, c := range []struct{ in, secret string }{
		{"redis://default:2024?Winter@redis.internal:6379/0", "Winter"},
		{"redis://default:2024?Winter@redis.internal:6379/0", "2024"},
		{"unix://default:2024?Winter@/run/redis.sock", "Winter"},
		{"redis://admin:12/ab?cd@redis.internal:6379", "12/ab?cd"},
	} {
		if got := Redact(c.in); strings.Contains(got, c.secret) {
			t.Errorf("Redact(%q) = %q: shows %q of the password", c.in, got, c.secret)
		}
		if _, err := Open(c.in, Options{}); err == nil || strings.Contains(err.Error(), c.secret) {
			t.Errorf("Open(%q): %v: quotes %q of the password", c.in, err, c.secret)
		}
	}
}

// An "@" and then a "?" in the password: all of it is masked.
func TestRedactAtThenQuestionMark(t *testing.T) {
	in := "redis://default:p@ss?word1@redis.internal:6379/0"
	if got := Redact(in); strings.Contains(got, "word1") {
		t.Errorf("Redact(%q) = %q: shows part of the password p@ss?word1", in, got)
	}
	if _, err := Open(in, Options{}); err == nil || strings.Contains(err.Error(), "word1") {
		t.Errorf("Open(%q): %v: quotes part of the password", in, err)
	}
}

// An unescaped "&" in a query password (Sentinel: password= is the only
// way go-redis takes the primary's): the tail after "&" is masked too.
func TestRedactAmpersandInQueryPassword(t *testing.T) {
	for _, in := range []string{
		"redis-sentinel://127.0.0.1:1?master_name=m&password=hunter&cret77",
		"redis-cluster://127.0.0.1:1?addr=127.0.0.1:2&password=hunter&cret77",
	} {
		if got := Redact(in); strings.Contains(got, "cret77") {
			t.Errorf("Redact(%q) = %q: shows part of the password hunter&cret77", in, got)
		}
		if _, err := Open(in, Options{}); err == nil || strings.Contains(err.Error(), "cret77") {
			t.Errorf("Open(%q): %v: quotes part of the password", in, err)
		}
	}
}

// Valid values without a password (go-redis takes them) are shown as they
// are: an "@" in the query after an empty authority (unix: sockets,
// redis:///db) or a "host:" with an empty port.
func TestRedactKeepsValidWithoutPassword(t *testing.T) {
	for _, in := range []string{
		"unix:///run/redis.sock?client_name=ops@corp",
		"redis:///0?client_name=ops@corp",
		"redis://redis.internal:?client_name=ops@corp",
	} {
		if _, err := parseOptions(mustParse(t, in)); err != nil {
			t.Fatalf("%q: go-redis refuses it: %v", in, err)
		}
		if got := Redact(in); got != in {
			t.Errorf("Redact(%q) = %q, want it unchanged (no password)", in, got)
		}
	}
}

// mustParse parses s as a URL, or fails t.
func mustParse(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
