package redis

import (
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
