package redis

import (
	"errors"
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
		"file:./tollgate-data":                                    "file:./tollgate-data",
		"file:/data/a@b":                                          "file:/data/a@b",
		"memory:":                                                 "memory:",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenWithholdsQuotedPassword: Open's error for a value it refuses
// names it redacted, and withholds a cause that quotes part of the password
// (url.Parse's "invalid port \":hunt\"", go-redis's "invalid URL path:
// /er9pw@..."); a cause that does not is kept.
func TestOpenWithholdsQuotedPassword(t *testing.T) {
	for _, c := range []struct{ url, secret string }{
		{"redis://default:hunt/er9pw@127.0.0.1:1/0", "hunt"},
		{"redis://default:31337/er9pw@127.0.0.1:1/0", "er9pw"},
		{"redis://default:hunter2@127.0.0.1:1/0?bogus_option=1", "hunter2"},
	} {
		_, err := Open(c.url, Options{})
		if err == nil {
			t.Fatalf("Open(%q): no error", c.url)
		}
		if strings.Contains(err.Error(), c.secret) {
			t.Errorf("Open's error shows the password: %v", err)
		}
	}
	_, err := Open("redis://default:hunter2@127.0.0.1:1/0?bogus_option=1", Options{})
	if err == nil || !strings.Contains(err.Error(), "bogus_option") {
		t.Errorf("a cause that quotes no password: got %v, want it kept", err)
	}
	if err := withheld(errors.New("dial tcp: refused"), "redis://u:hunter2@h:1"); err.Error() != "dial tcp: refused" {
		t.Errorf("withheld changed an error that quotes no password: %v", err)
	}
}
