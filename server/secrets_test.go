package server

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreSecretsNotShown (a reviewer's find): the Redis password of --store
// reaches neither the logs nor the unauthenticated /readyz: the lines that
// name the store show it redacted, and a Sentinel URL's ?password= (the only
// way go-redis takes the primary's) is masked as the user info's is.
func TestStoreSecretsNotShown(t *testing.T) {
	for _, c := range []struct{ url, secret string }{
		{"redis://default:hunter2pw@127.0.0.1:1/0", "hunter2pw"},
		{"redis-sentinel://127.0.0.1:1?master_name=mymaster&password=hunter2secret", "hunter2secret"},
	} {
		// Not named by the secret: the test's temporary files are.
		t.Run(strings.SplitN(c.url, ":", 2)[0], func(t *testing.T) {
			h := serve(t, testPolicy(t), func(cfg *Config) { cfg.Store = c.url })
			resp, err := h.http.Get(h.base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), c.secret) {
				t.Errorf("/readyz (no token needed) shows the Redis password:\n%s", body)
			}
			if logs := h.logs.String(); strings.Contains(logs, c.secret) {
				for _, l := range strings.Split(logs, "\n") {
					if strings.Contains(l, c.secret) {
						t.Errorf("log line holds the Redis password: %.300s", l)
					}
				}
			}
		})
	}
}

// TestStoreSecretsNotInErrors: a --store value that is refused is named
// without its password in the error that stops serve: one that does not
// parse, an option go-redis does not know, a scheme openStore does not take
// (a capital "Redis://", valkey://), a "/" in the password (base64, not
// percent-encoded: the URL's authority ends at it); reviewers' finds.
func TestStoreSecretsNotInErrors(t *testing.T) {
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(testPolicy(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ url, secret string }{
		{"redis://default:hunter4 pw@127.0.0.1:1/0", "hunter4"}, // a space: does not parse
		{"redis-sentinel://127.0.0.1:1?master_name=m&sentinel_password=hunter5pw", "hunter5pw"},
		{"Redis://default:hunter6pw@127.0.0.1:1/0", "hunter6pw"},
		{"valkey://default:hunter7pw@127.0.0.1:1/0", "hunter7pw"},
		{"redis://default:hunt/er9pw@127.0.0.1:1/0", "hunt"},
		{"redis://default:31337/er9pw@127.0.0.1:1/0", "er9pw"},
	} {
		_, err := New(Config{PolicyFile: policyFile, Store: c.url, GRPCAddr: "127.0.0.1:0", AdminAddr: "-",
			Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			t.Fatalf("--store %s: no error", c.url)
		}
		if strings.Contains(err.Error(), c.secret) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
