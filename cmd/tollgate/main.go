// Command tollgate is an Envoy ext_authz server that enforces WAF rules, API
// keys, usage plans and token buckets. See the README and SPEC §7.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
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
  serve    serve ext_authz and gRPC health for Envoy
  check    validate a policy file and print every error
  key new  print a fresh API key value and its sha256 hash
  decide   print the decision for one request, without a server
  keys     list, create, change, rotate and delete API keys (admin API)
  usage    show daily usage per customer, or grant more quota (admin API)
  load     send ext_authz or ext_proc load to a tollgate and report what it measured

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
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "tollgate: unknown command %q\n\n%s", args[0], usage)
		return exitError(2)
	}
}
