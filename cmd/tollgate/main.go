// Command tollgate is an Envoy ext_authz server that enforces WAF rules, API
// keys, usage plans and token buckets. See the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	_ "time/tzdata" // quota time zones work on hosts without a zoneinfo database
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var exit exitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		os.Exit(int(exit))
	default:
		fmt.Fprintln(os.Stderr, "tollgate:", err)
		os.Exit(1)
	}
}

// exitError ends the program with a status after the message was printed.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage: tollgate <command> [flags]

commands:
  serve    serve ext_authz Check, ext_proc and gRPC health for Envoy, and the admin API
  check    validate a policy file and print every error
  key new  print a fresh API key value and its sha256 hash
  decide   print the decision for one request, without a server
  keys     list, create, change, rotate and delete API keys (admin API)
  usage    show daily usage per customer, or grant more quota (admin API)
  load     send ext_authz, ext_proc or HTTP load to a tollgate and report what it measured
           (load prepare: seed a store with the keys it sends; --mode ratelimit: the same
           load to envoyproxy/ratelimit, to compare)
  replay   replay decision logs against a candidate policy and report what would change
  version  print the version (also --version)

Run 'tollgate <command> -h' for the flags of a command.
`

// run is the whole program; main only wires signals and the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "key":
		if len(args) < 2 || args[1] != "new" {
			fmt.Fprint(stderr, "usage: tollgate key new\n")
			return exitError(2)
		}
		return runKeyNew(args[2:], stdout, stderr)
	case "decide":
		return runDecide(args[1:], stdout, stderr)
	case "keys":
		return runKeys(ctx, args[1:], stdout, stderr)
	case "usage":
		return runUsage(ctx, args[1:], stdout, stderr)
	case "load":
		return runLoad(ctx, args[1:], stdout, stderr)
	case "replay":
		return runReplay(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "tollgate: unknown command %q\n\n%s", args[0], usage)
		return exitError(2)
	}
}

// version describes this build: the module version (or "devel"), the
// commit it was built from when known, and the Go version.
func version() string {
	v, commit, dirty := "devel", "", false
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "tollgate " + v
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		v = mv
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	out := "tollgate " + v
	if commit != "" {
		out += " (commit " + commit[:min(12, len(commit))]
		if dirty {
			out += ", modified"
		}
		out += ")"
	}
	return out + " " + info.GoVersion
}
