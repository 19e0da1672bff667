package admin

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsRunOneWay keeps the admin API below the server: of this
// module, it imports only policy (its tests also policyfile).
func TestImportsRunOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg != "github.com/tollgate/tollgate/admin" && !strings.HasPrefix(pkg, "github.com/tollgate/tollgate/policy") {
			t.Errorf("admin imports %s", pkg)
		}
	}
}
