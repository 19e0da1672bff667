package replay

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate/decisionlog"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
)

// t0 is the first instant of the tests' logs: a UTC midnight.
var t0 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// shopPolicy is a policy with one keyed route, whose plans section is
// plans (YAML under usage_plans, indented two spaces) and whose keys
// section is keys (under api_keys).
func shopPolicy(t testing.TB, plans, keys string) *policy.Policy {
	t.Helper()
	src := `version: 1
apis:
  shop:
    stages:
      prod:
        routes:
          - match: "GET /items/{id}"
            api_key: required
          - match: "GET /status"
default_stage: shop/prod
usage_plans:
` + plans
	if keys != "" {
		src += "api_keys:\n" + keys
	}
	p, err := policyfile.Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// shopPolicyWAF is shopPolicy with a basic plan without limits, the keys
// section keys, and the top-level YAML waf (a waf section).
func shopPolicyWAF(t testing.TB, waf, keys string) *policy.Policy {
	t.Helper()
	return shopPolicy(t, "  basic:\n    stages: [shop/prod]\n"+waf, keys)
}

// policyKey is an api_keys item of id for customer on plan, with a hash
// that is no synthetic key's.
func policyKey(id, customer, plan string) string {
	sum := sha256.Sum256([]byte("policy key " + id))
	return "  - {id: " + id + ", customer: " + customer + ", plans: [" + plan + "], hash: \"" +
		policy.KeyHashText(sum) + "\"}\n"
}

// keyed is a logged allowed request of the keyed route at at by key id of
// customer on plan.
func keyed(at time.Time, id, customer, plan string) decisionlog.Record {
	return decisionlog.Record{Time: at, API: "shop", Stage: "prod", Route: "GET /items/{id}", Method: "GET",
		Path: "/items/1", IP: netip.MustParseAddr("198.51.100.7"), KeyID: id, Customer: customer, Plan: plan,
		Status: 200}
}

// denied is a logged request of the keyed route denied status for reason,
// without a key id (as the server logs key denials).
func denied(at time.Time, status int, reason policy.Reason) decisionlog.Record {
	return decisionlog.Record{Time: at, API: "shop", Stage: "prod", Route: "GET /items/{id}", Method: "GET",
		Path: "/items/1", IP: netip.MustParseAddr("198.51.100.7"), Status: status, Reason: string(reason)}
}

// encode returns the log lines of recs, in their order, as the server's
// decision log writes them.
func encode(t testing.TB, recs []decisionlog.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := decisionlog.New(&buf, 4096, nil)
	for i := range recs {
		for !w.Log(&recs[i]) {
			runtime.Gosched() // the buffer is full: the writer catches up
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeFile writes data to name in dir, gzipped when gz, and returns its
// path.
func writeFile(t testing.TB, dir, name string, data []byte, gz bool) string {
	t.Helper()
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data = buf.Bytes()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeLog writes recs as a plain decision log and returns its path.
func writeLog(t testing.TB, recs []decisionlog.Record) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "decisions.log", encode(t, recs), false)
}

// run replays o and fails the test on an error.
func run(t testing.TB, o Options) *Report {
	t.Helper()
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// customer returns the report's group of customer c.
func customer(t testing.TB, r *Report, c string) Change {
	t.Helper()
	for _, g := range r.ByCustomer {
		if g.Customer == c {
			return g.Change
		}
	}
	t.Fatalf("no group of customer %q in %+v", c, r.ByCustomer)
	return Change{}
}
