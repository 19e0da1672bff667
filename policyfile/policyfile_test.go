package policyfile

import (
	"crypto/sha256"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/bad_*.err from the current errors")

// TestBadFiles compiles each testdata/bad_<what>.yaml and compares every
// error of the file with bad_<what>.err. Files are named by their base name
// so that the text does not depend on the directory.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad_*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("got %d bad files, want at least 15", len(files))
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(name, data)
			if err == nil {
				t.Fatalf("got a policy (%d stages), want errors", len(p.StageNames()))
			}
			if p != nil {
				t.Errorf("got a policy together with the errors")
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./policyfile -update)", err)
			}
			if got != string(want) {
				t.Errorf("got errors\n%s\nwant (%s)\n%s", got, golden, want)
			}
		})
	}
}

// Demo key values of examples/payments/policy.yaml.
var demoKeys = []struct {
	value, id, customer, plan string
	enabled                   bool
	expires                   time.Time
}{
	{"tg_demo_free_0000000000000001", "initech-free", "initech", "free", true, time.Time{}},
	{"tg_demo_pro_00000000000000001", "acme-2026a", "acme", "pro", true, time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)},
	{"tg_demo_ent_00000000000000001", "globex-ent", "globex", "enterprise", true, time.Time{}},
	{"tg_demo_disabled_000000000001", "hooli-old", "hooli", "free", false, time.Time{}},
	{"tg_demo_expired_0000000000001", "umbrella-2025", "umbrella", "free", true, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
}

func TestLoadExample(t *testing.T) {
	p, err := Load("../examples/payments/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.StageNames(), []string{"payments/prod"}; !slices.Equal(got, want) {
		t.Errorf("stages: got %v, want %v", got, want)
	}
	if got, want := p.PlanNames(), []string{"enterprise", "free", "pro", "trial"}; !slices.Equal(got, want) {
		t.Errorf("plans: got %v, want %v", got, want)
	}
	for i, c := range demoKeys {
		k := p.KeyByID(c.id)
		if k == nil {
			t.Errorf("step %d: no key %s", i, c.id)
			continue
		}
		if sum := sha256.Sum256([]byte(c.value)); k.Hash != sum {
			t.Errorf("step %d: %s: got hash %x, want the sha256 of %s (%x)", i, c.id, k.Hash, c.value, sum)
		}
		if k.Customer != c.customer || !slices.Equal(k.Plans, []string{c.plan}) || k.Enabled != c.enabled ||
			!k.Expires.Equal(c.expires) || !k.FromPolicy {
			t.Errorf("step %d: got %+v, want customer %s, plan %s, enabled %v, expires %v", i, k, c.customer, c.plan, c.enabled, c.expires)
		}
	}
	free := p.Plan("free")
	if th, ok := free.Throttle(); !ok || th.Rate() != 10 || th.Burst != 20 {
		t.Errorf("free throttle: got %+v %v, want 10/20", th, ok)
	}
	if q, ok := free.Quota(); !ok || q.Limit != 1000 || q.Period.String() != "day" {
		t.Errorf("free quota: got %+v %v, want 1000/day", q, ok)
	}
	if _, ok := p.Plan("enterprise").Quota(); ok {
		t.Error("enterprise: got a quota, want none")
	}
	wantSinks := []policy.Sink{{Name: "ops", URL: "http://echo:8080/hooks/tollgate", Timeout: 5 * time.Second}}
	if got := p.Sinks(); !slices.Equal(got, wantSinks) {
		t.Errorf("sinks: got %+v, want %+v", got, wantSinks)
	}
	for _, plan := range []string{"free", "pro"} {
		a, ok := p.PlanAlerts(plan)
		if !ok || !slices.Equal(a.Thresholds, []int{80, 100}) || !a.Forecast || !slices.Equal(a.Sinks, []string{"ops"}) {
			t.Errorf("%s alerts: got %+v %v, want thresholds [80 100], forecast, sinks [ops]", plan, a, ok)
		}
	}
	if a, ok := p.PlanAlerts("enterprise"); ok {
		t.Errorf("enterprise alerts: got %+v, want none (no quota)", a)
	}
}

// TestParseSpecExample compiles the example policy of the product specification as written there.
func TestParseSpecExample(t *testing.T) {
	if _, err := Load("testdata/spec_example.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestLoadMissingFileNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("got %v, want a not-exist error naming %s", err, path)
	}
}

// TestParseYAMLForms checks YAML forms a policy may use: anchors and merge
// keys, a quoted timestamp, flow style and a date-only timestamp.
func TestParseYAMLForms(t *testing.T) {
	src := `
version: 1
apis:
  shop:
    stages:
      prod:
        route_defaults: {throttle: &small {rate: 1, burst: 2}}
        routes:
          - {match: "GET /a", throttle: *small}
          - match: "GET /b"
            throttle: {<<: *small, burst: 3}
usage_plans: {p: {stages: [shop/prod]}}
api_keys:
  - {id: k1, plans: [p], expires: "2027-01-02T03:04:05+01:00", hash: "sha256:` + strings.Repeat("a", 64) + `"}
  - {id: k2, plans: [p], expires: 2027-01-02, hash: "sha256:` + strings.Repeat("b", 64) + `"}
`
	p, err := Parse("forms.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.KeyByID("k1").Expires, time.Date(2027, 1, 2, 2, 4, 5, 0, time.UTC); !got.Equal(want) {
		t.Errorf("k1 expires: got %v, want %v", got, want)
	}
	if got, want := p.KeyByID("k2").Expires, time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("k2 expires: got %v, want %v", got, want)
	}
}

// TestParseSameResultTwice checks that Parse is deterministic: the same
// bytes give the same errors and an equivalent policy.
func TestParseSameResultTwice(t *testing.T) {
	data, err := os.ReadFile("testdata/bad_many.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := Parse("f", data)
	_, err2 := Parse("f", data)
	if err1 == nil || err2 == nil || err1.Error() != err2.Error() {
		t.Errorf("got\n%v\nthen\n%v", err1, err2)
	}
}

// TestKeyTwiceByAlias: a key written twice, the second time as an alias of
// the first (YAML allows an alias as a key), is an error too; a reviewer
// found the later value silently won.
func TestKeyTwiceByAlias(t *testing.T) {
	in := "version: 1\naccount:\n  &t throttle: {rate: 1, burst: 1}\n  *t : {rate: 1000, burst: 1000}\n"
	_, err := Parse("p.yaml", []byte(in))
	if err == nil || !strings.Contains(err.Error(), "p.yaml: account.throttle: written twice, at lines 3 and 4") {
		t.Errorf("got %v, want account.throttle written twice", err)
	}
}
