package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPolicyImportsOnlyStandardLibrary keeps the decision core free of
// dependencies: every package policy/... needs must be in the standard
// library (import paths without a dot in their first element).
func TestPolicyImportsOnlyStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, "github.com/tollgate/tollgate/policy") {
			t.Errorf("policy imports %s, which is not in the standard library", pkg)
		}
	}
}
