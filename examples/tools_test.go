package examples_test

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// toolBinary returns the path of a program a test runs (nginx, caddy,
// promtool), looked up in PATH and in /usr/sbin, which a non-root PATH may
// lack. CI installs them (.ci/run), so there, and wherever
// TOLLGATE_REQUIRE_TOOLS is set, a missing one fails the test; elsewhere it
// skips it.
func toolBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := fmt.Sprintf("%s is not installed (Debian: apt-get install -y %s; .ci/run does)", name, pkg)
	if os.Getenv("TOLLGATE_REQUIRE_TOOLS") != "" || os.Getenv("CI") != "" {
		t.Fatal(msg + ", and this run requires it")
	}
	t.Skip(msg)
	return ""
}
