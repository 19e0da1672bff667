package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const example = "../../examples/payments/policy.yaml"

// runArgs runs the program and returns its output and exit status.
func runArgs(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	var exit exitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		status = int(exit)
	default:
		errb.WriteString(err.Error())
		status = 1
	}
	return out.String(), errb.String(), status
}

func TestCheckExample(t *testing.T) {
	out, _, status := runArgs(t, "check", "--policy", example)
	if status != 0 || !strings.Contains(out, "ok") {
		t.Errorf("got status %d, output %q; want 0 and ok", status, out)
	}
}

func TestCheckBadFilePrintsEveryError(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("version: 2\nheaders: loud\nexplain: maybe\n"), 0o644)
	out, _, status := runArgs(t, "check", "--policy", bad)
	if status != 1 {
		t.Errorf("got status %d, want 1", status)
	}
	for _, field := range []string{"version", "headers", "explain"} {
		if !strings.Contains(out, bad+": "+field+":") {
			t.Errorf("output lacks an error for %s:\n%s", field, out)
		}
	}
}

func TestKeyNew(t *testing.T) {
	out, _, status := runArgs(t, "key", "new")
	m := regexp.MustCompile(`^value: ([A-Za-z0-9_-]{20,128})\nhash:  sha256:([0-9a-f]{64})\n$`).FindStringSubmatch(out)
	if status != 0 || m == nil {
		t.Fatalf("got status %d, output %q", status, out)
	}
	sum := sha256.Sum256([]byte(m[1]))
	if hex.EncodeToString(sum[:]) != m[2] {
		t.Errorf("hash %s is not the sha256 of the value", m[2])
	}
	again, _, _ := runArgs(t, "key", "new")
	if again == out {
		t.Error("two keys are the same")
	}
}

func TestDecide(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--method", "POST", "--path", "/transactions", "--ip", "198.51.100.7"}, "allow 200\n"},
		{[]string{"--method", "POST", "--path", "/transactions", "--ip", "203.0.113.7"}, "deny 403 waf:blocked-networks\n"},
		{[]string{"--method", "POST", "--path", "/partners/9/transactions", "--ip", "198.51.100.7"}, "deny 403 key:missing\n"},
		{[]string{"--method", "POST", "--path", "/partners/9/transactions", "--ip", "198.51.100.7", "--key", "tg_demo_free_0000000000000001"},
			"allow 200\nstage:    payments/prod\nroute:    POST /partners/{id}/transactions\nkey:      initech-free (customer initech, plan free)\n"},
	}
	for _, c := range cases {
		out, errOut, status := runArgs(t, append([]string{"decide", "--policy", example, "--at", "2026-11-20T12:00:00Z"}, c.args...)...)
		if status != 0 || !strings.HasPrefix(out, c.want) {
			t.Errorf("decide %v: got status %d, output %q (stderr %q); want it to start with %q", c.args, status, out, errOut, c.want)
		}
	}
	out, _, _ := runArgs(t, "decide", "--policy", example, "--json", "--method", "GET", "--path", "/status", "--at", "2026-11-20T12:00:00Z")
	var d struct {
		Verdict string
		Status  int
		Limits  []struct{ Tier string }
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Status != 200 || len(d.Limits) != 3 {
		t.Errorf("json: got %+v (%v) from %s", d, err, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"key"}, {"check", "--nope"}, {"check"}} {
		if _, _, status := runArgs(t, args...); status != 2 {
			t.Errorf("%v: got status %d, want 2", args, status)
		}
	}
}

// TestOperatorPaperCuts guards the command-line findings of issue 13.
func TestOperatorPaperCuts(t *testing.T) {
	// check takes the file as an argument too, several at once.
	out, _, status := runArgs(t, "check", example, "../../envoy/testdata/tight.yaml")
	if status != 0 || !strings.Contains(out, "payments/policy.yaml: ok (1 stage, 4 plans)") || !strings.Contains(out, "tight.yaml: ok (2 stages,") {
		t.Errorf("check FILE FILE: got status %d, output %q", status, out)
	}
	if strings.Contains(out, "shadow") {
		t.Errorf("check: got %q, want no shadow line for policies without shadow limits", out)
	}
	// check names the limits in shadow mode, a reminder that they never deny.
	shadow := filepath.Join(t.TempDir(), "shadow.yaml")
	os.WriteFile(shadow, []byte("version: 1\naccount: {throttle: {rate: 1, burst: 1, mode: shadow}}\n"), 0o644)
	if out, _, status := runArgs(t, "check", shadow); status != 0 || !strings.Contains(out, shadow+": in shadow mode (counted, never denying): account.throttle\n") {
		t.Errorf("check shadow.yaml: got status %d, output %q", status, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("version: 2\n"), 0o644)
	if out, _, status := runArgs(t, "check", example, bad); status != 1 || !strings.Contains(out, "ok") || !strings.Contains(out, bad+": version:") {
		t.Errorf("check good bad: got status %d, output %q, want 1 with both results", status, out)
	}
	// --version and version.
	for _, arg := range []string{"--version", "version"} {
		if out, _, status := runArgs(t, arg); status != 0 || !strings.HasPrefix(out, "tollgate ") || !strings.Contains(out, " go1.") {
			t.Errorf("%s: got status %d, output %q", arg, status, out)
		}
	}
	// Each command's -h says what it does; serve's names ext_proc, load's
	// names prepare.
	for cmd, want := range map[string]string{"serve": "ext_proc Process", "load": "tollgate load prepare", "check": "Validate",
		"decide": "Print the decision"} {
		_, errOut, status := runArgs(t, cmd, "-h")
		if status != 0 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "usage: tollgate "+cmd) {
			t.Errorf("%s -h: got status %d, output %q, want %q in it", cmd, status, errOut, want)
		}
	}
	if out, _, _ := runArgs(t, "help"); !strings.Contains(out, "ext_proc") || !strings.Contains(out, "load prepare") {
		t.Errorf("help: got %q, want ext_proc and load prepare named", out)
	}
	// decide: a bad --ip is a usage error that says so; durations read
	// in whole seconds; an unreadable path says what is wrong.
	if _, errOut, status := runArgs(t, "decide", "--policy", example, "--ip", "bogus"); status != 2 || !strings.Contains(errOut, `--ip "bogus" is not an IP address`) {
		t.Errorf("decide --ip bogus: got status %d, stderr %q, want 2 and the reason", status, errOut)
	}
	out, _, _ = runArgs(t, "decide", "--policy", example, "--method", "POST", "--path", "/partners/9/transactions",
		"--key", "tg_demo_free_0000000000000001", "--at", "2026-11-20T12:11:00.828Z")
	if !strings.Contains(out, "reset in 11h49m0s") || strings.Contains(out, ".828") {
		t.Errorf("decide: got %q, want the quota reset in whole seconds", out)
	}
	out, _, _ = runArgs(t, "decide", "--policy", example, "--method", "POST", "--path", "/a%2Fb")
	if !strings.Contains(out, "deny 400 request:invalid\ninvalid:  path \"/a%2Fb\" holds an escaped slash (%2F)") {
		t.Errorf("decide bad path: got %q, want what is invalid", out)
	}
}

// TestServeBadGCHeapFloor: a negative floor is refused before anything
// serves.
func TestServeBadGCHeapFloor(t *testing.T) {
	_, errs, status := runArgs(t, "serve", "--policy", example, "--store", "memory:", "--grpc-addr", "127.0.0.1:0",
		"--admin-addr", "-", "--gc-heap-floor", "-1")
	if want := "--gc-heap-floor -1: want 0 (off) or a size in MB"; status != 1 || !strings.Contains(errs, want) {
		t.Errorf("--gc-heap-floor -1: got status %d, stderr %q; want 1, %q", status, errs, want)
	}
}

// TestServeBadWAFCounters: a bound below 1 is refused before anything
// serves, never replaced by the default.
func TestServeBadWAFCounters(t *testing.T) {
	for _, n := range []string{"0", "-5"} {
		_, errs, status := runArgs(t, "serve", "--policy", example, "--store", "memory:", "--grpc-addr", "127.0.0.1:0",
			"--admin-addr", "-", "--waf-counters", n)
		if want := "--waf-counters " + n + ": want at least 1"; status != 1 || !strings.Contains(errs, want) {
			t.Errorf("--waf-counters %s: got status %d, stderr %q; want 1, %q", n, status, errs, want)
		}
	}
}

// TestServeStartErrorIsJSON: an error that stops serve once its log is set
// up (here a policy file that is not there) is a JSON line of that log, as
// every line of it is (SPEC §8); a reviewer found it printed as plain text.
func TestServeStartErrorIsJSON(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "policy.yaml")
	_, errs, status := runArgs(t, "serve", "--policy", missing, "--store", "memory:", "--grpc-addr", "127.0.0.1:0",
		"--admin-addr", "-")
	if status != 1 {
		t.Fatalf("status %d, want 1; stderr %q", status, errs)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	var last struct{ Level, Msg, Err string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("the last line is not JSON (%v): %q", err, lines[len(lines)-1])
	}
	if last.Level != "ERROR" || last.Msg != "not started" || !strings.Contains(last.Err, missing) {
		t.Errorf("the last line: %+v; want an ERROR \"not started\" naming %s", last, missing)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("a line that is not JSON: %q", l)
		}
	}
}

// TestServeStoreFromEnvironment: without --store, serve takes the store's
// URL from $TOLLGATE_STORE (a Redis password kept off the command line,
// which every user of the host can read); --store, when given, wins. A
// store of an unknown kind shows which was taken, and without its password.
func TestServeStoreFromEnvironment(t *testing.T) {
	t.Setenv("TOLLGATE_STORE", "bogus-env://u:envsecret@h:1")
	args := []string{"serve", "--policy", example, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "-"}
	_, errs, status := runArgs(t, args...)
	if status != 1 || !strings.Contains(errs, "bogus-env://") || strings.Contains(errs, "envsecret") {
		t.Errorf("$TOLLGATE_STORE set, no --store: status %d, stderr %q; want 1, the environment's store named without its password", status, errs)
	}
	_, errs, status = runArgs(t, append(args, "--store", "bogus-flag://h:1")...)
	if status != 1 || !strings.Contains(errs, "bogus-flag://") || strings.Contains(errs, "bogus-env") {
		t.Errorf("$TOLLGATE_STORE and --store: status %d, stderr %q; want 1, --store's store", status, errs)
	}
}

// TestServeStartErrorAboveLogLevel: with --log-level above error (slog's
// ERROR+4), the reason serve stopped is still told; a reviewer found stderr
// empty.
func TestServeStartErrorAboveLogLevel(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "policy.yaml")
	_, errs, status := runArgs(t, "serve", "--policy", missing, "--store", "memory:", "--grpc-addr", "127.0.0.1:0",
		"--admin-addr", "-", "--log-level", "ERROR+4")
	if status != 1 || !strings.Contains(errs, missing) || !json.Valid([]byte(strings.TrimSpace(errs))) {
		t.Errorf("status %d, stderr %q; want 1 and a JSON line naming %s", status, errs, missing)
	}
}

// TestLoadPrepareStoreSecret: load prepare names a --store it does not take
// without its password.
func TestLoadPrepareStoreSecret(t *testing.T) {
	_, errs, status := runArgs(t, "load", "prepare", "--store", "Redis://default:hunter9pw@127.0.0.1:1/0", "--plan", "p")
	if status == 0 || strings.Contains(errs, "hunter9pw") || !strings.Contains(errs, "Redis://default:xxxxx@") {
		t.Errorf("status %d, stderr %q; want an error naming the store with its password masked", status, errs)
	}
}

// TestLoadPrepareStore: load prepare takes its store as serve does: from
// $TOLLGATE_STORE when --store is not given, and a unix: Redis URL (a
// reviewer found both refused).
func TestLoadPrepareStore(t *testing.T) {
	t.Setenv("TOLLGATE_STORE", "bogus-env://u:envsecret@h:1")
	_, errs, status := runArgs(t, "load", "prepare", "--plan", "p")
	if status == 0 || !strings.Contains(errs, "bogus-env://u:xxxxx@h:1") {
		t.Errorf("$TOLLGATE_STORE set, no --store: status %d, stderr %q; want the environment's store, named redacted", status, errs)
	}
	_, errs, status = runArgs(t, "load", "prepare", "--store", "unix:///nonexistent/redis.sock", "--plan", "p")
	if status == 0 || strings.Contains(errs, "want file:DIR or a Redis URL") || !strings.Contains(errs, "redis.sock") {
		t.Errorf("a unix: Redis URL: status %d, stderr %q; want it opened (and failing to connect)", status, errs)
	}
}
