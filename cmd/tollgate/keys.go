package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/admin"
)

const keysUsage = `usage: tollgate keys <command> [flags] [ID]

commands (through the admin API, README "Admin API"):
  list       list the keys, page by page (never their values)
  get        show one key
  create     create a key and print its value, shown this once
  enable     enable a key
  disable    disable a key
  set-plans  replace a key's plans
  delete     delete a key
  rotate     make a new key for the same customer; the old one works until the grace ends

Flags may come before or after ID. Every command takes --admin-addr,
--admin-token-file, --json and --timeout; run 'tollgate keys <command> -h'.
Keys of the policy file are read-only here (409): change them in the file.
`

// runKeys runs "tollgate keys <command>".
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return exitError(2)
	}
	var err error
	switch args[0] {
	case "list":
		err = keysList(ctx, args[1:], stdout, stderr)
	case "get":
		err = keysGet(ctx, args[1:], stdout, stderr)
	case "create":
		err = keysCreate(ctx, args[1:], stdout, stderr)
	case "enable":
		err = keysSetEnabled(ctx, "enable", true, args[1:], stdout, stderr)
	case "disable":
		err = keysSetEnabled(ctx, "disable", false, args[1:], stdout, stderr)
	case "set-plans":
		err = keysSetPlans(ctx, args[1:], stdout, stderr)
	case "delete":
		err = keysDelete(ctx, args[1:], stdout, stderr)
	case "rotate":
		err = keysRotate(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, keysUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "tollgate keys: unknown command %q\n\n%s", args[0], keysUsage)
		return exitError(2)
	}
	return report(stderr, err)
}

// keyPath is the admin API path of the key id.
func keyPath(id string) string { return "/v1/keys/" + url.PathEscape(id) }

func keysList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("keys list", "[--customer C] [--plan P] [flags]",
		"Lists every key, of the policy file and created at run time, without values,\n"+
			"in id order. The keys come a page at a time (GET /v1/keys?limit=&after=)\n"+
			"and each page is printed as it comes; --json prints each page's answer\n"+
			"as one JSON line ({\"items\":[...],\"next\":...}). --timeout bounds each page.\n", stderr)
	customer := cmd.fs.String("customer", "", "only the keys of `customer`")
	plan := cmd.fs.String("plan", "", "only the keys on `plan`")
	if _, err := cmd.parse(args); err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(clientPage)}}
	if *customer != "" {
		q.Set("customer", *customer)
	}
	if *plan != "" {
		q.Set("plan", *plan)
	}
	now := time.Now()
	next := func(l *admin.KeyList) string { return l.Next }
	return listPages(ctx, cmd, stdout, stderr, "/v1/keys", q, next, func(ans *admin.KeyList, first bool) error {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		if first {
			fmt.Fprintln(tw, "ID\tCUSTOMER\tPLANS\tSTATUS\tEXPIRES\tSOURCE\tNAME")
		}
		for _, k := range ans.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Customer, plansText(k.Plans), keyStatus(&k, now),
				timeText(k.Expires, "never"), k.Source, k.Name)
		}
		return tw.Flush()
	})
}

func keysGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("keys get", "[flags] ID", "Shows the key ID, without its value.\n", stderr)
	pos, err := cmd.parse(args, "ID")
	if err != nil {
		return err
	}
	return keyCall(ctx, cmd, "GET", keyPath(pos[0]), nil, stdout, stderr)
}

// keyCall makes a call whose answer is a key, and prints it.
func keyCall(ctx context.Context, cmd *command, method, path string, body any, stdout, stderr io.Writer) error {
	var k admin.KeyView
	return cmd.callPrint(ctx, stdout, stderr, method, path, body, &k, func(*adminClient) error { return printKey(stdout, &k) })
}

func keysCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("keys create", "--plan P [--plan P2 ...] [--id ID] [--customer C] [--name N] [--expires RFC3339] [flags]",
		"Creates a key and prints it with its value. The value is shown this once:\n"+
			"tollgate keeps only its sha256 hash.\n", stderr)
	var plans stringsFlag
	cmd.fs.Var(&plans, "plan", "usage `plan` of the key (repeatable; at least one)")
	var body admin.CreateKeyBody
	cmd.fs.Func("id", "key `id` (default: a fresh key-<hex>)", setString(&body.ID))
	cmd.fs.Func("customer", "`customer` whose usage the key counts towards (default: the key's id)", setString(&body.Customer))
	cmd.fs.Func("name", "a `name` for people", setString(&body.Name))
	cmd.fs.Func("expires", "RFC 3339 `time` the key stops working, such as 2027-06-30T00:00:00Z (default: never)", setString(&body.Expires))
	if _, err := cmd.parse(args); err != nil {
		return err
	}
	if len(plans) == 0 {
		return cmd.usageError("missing --plan")
	}
	body.Plans = plans
	return keyCall(ctx, cmd, "POST", "/v1/keys", body, stdout, stderr)
}

// setString returns a flag.Func that sets *p to the flag's value; an empty
// value leaves *p nil (the server's default).
func setString(p **string) func(string) error {
	return func(v string) error {
		*p = nil
		if v != "" {
			*p = &v
		}
		return nil
	}
}

func keysSetEnabled(ctx context.Context, name string, enabled bool, args []string, stdout, stderr io.Writer) error {
	about := "Enables the key ID: it works again from the next request.\n"
	if !enabled {
		about = "Disables the key ID: it is refused (403) from the next request.\n"
	}
	cmd := newCommand("keys "+name, "[flags] ID", about, stderr)
	pos, err := cmd.parse(args, "ID")
	if err != nil {
		return err
	}
	return keyCall(ctx, cmd, "PATCH", keyPath(pos[0]), admin.PatchKeyBody{Enabled: &enabled}, stdout, stderr)
}

func keysSetPlans(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("keys set-plans", "[flags] ID --plan P [--plan P2 ...]",
		"Replaces the plans of the key ID, from the next request.\n", stderr)
	var plans stringsFlag
	cmd.fs.Var(&plans, "plan", "usage `plan` of the key (repeatable; at least one)")
	pos, err := cmd.parse(args, "ID")
	if err != nil {
		return err
	}
	if len(plans) == 0 {
		return cmd.usageError("missing --plan")
	}
	return keyCall(ctx, cmd, "PATCH", keyPath(pos[0]), admin.PatchKeyBody{Plans: plans}, stdout, stderr)
}

func keysDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("keys delete", "[flags] ID",
		"Deletes the key ID; it is refused from the next request. With --json\nnothing is printed (the API answers 204, no body).\n", stderr)
	pos, err := cmd.parse(args, "ID")
	if err != nil {
		return err
	}
	return cmd.callPrint(ctx, stdout, stderr, "DELETE", keyPath(pos[0]), nil, nil, func(*adminClient) error {
		_, err := fmt.Fprintf(stdout, "deleted key %s\n", pos[0])
		return err
	})
}

func keysRotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("keys rotate", "[flags] ID [--grace 24h] [--new-id ID]",
		"Makes a new key for the same customer, plans, name and expiry, and prints\n"+
			"it with its value, shown this once; the old key ID keeps working until\n"+
			"the grace ends. A key in its grace is not rotated again (409): rotate\n"+
			"the new key. --json prints the new key only.\n", stderr)
	grace := "24h"
	body := admin.RotateKeyBody{Grace: &grace}
	cmd.fs.StringVar(&grace, "grace", grace, "how long the old key keeps working, such as 24h or 90m")
	cmd.fs.Func("new-id", "`id` of the new key (default: a fresh key-<hex>)", setString(&body.ID))
	pos, err := cmd.parse(args, "ID")
	if err != nil {
		return err
	}
	var k admin.KeyView
	return cmd.callPrint(ctx, stdout, stderr, "POST", keyPath(pos[0])+"/rotate", body, &k, func(c *adminClient) error {
		// The new key first: its value must not be lost if the next
		// call fails.
		fmt.Fprintln(stdout, "new key:")
		if err := printKey(stdout, &k); err != nil {
			return err
		}
		var old admin.KeyView
		if _, err := c.call(ctx, "GET", keyPath(pos[0]), nil, &old); err != nil {
			return fmt.Errorf("the key was rotated, but reading the old key failed: %w", err)
		}
		_, err := fmt.Fprintf(stdout, "\nold key %s now expires %s\n", old.ID, timeText(old.Expires, "never"))
		return err
	})
}

// printKey prints a key as aligned "field: value" lines; a value, when the
// key has one, last and marked as shown once.
func printKey(w io.Writer, k *admin.KeyView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", k.ID)
	fmt.Fprintf(tw, "customer:\t%s\n", k.Customer)
	fmt.Fprintf(tw, "name:\t%s\n", k.Name)
	fmt.Fprintf(tw, "plans:\t%s\n", plansText(k.Plans))
	fmt.Fprintf(tw, "enabled:\t%s\n", yesNo(k.Enabled))
	fmt.Fprintf(tw, "status:\t%s\n", keyStatus(k, time.Now()))
	fmt.Fprintf(tw, "expires:\t%s\n", timeText(k.Expires, "never"))
	fmt.Fprintf(tw, "created:\t%s\n", timeText(k.Created, "-"))
	fmt.Fprintf(tw, "source:\t%s\n", k.Source)
	fmt.Fprintf(tw, "hash:\t%s\n", k.Hash)
	if k.Value != "" {
		fmt.Fprintf(tw, "value:\t%s\n", k.Value)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if k.Value != "" {
		_, err := fmt.Fprintln(w, "\nThe value above is shown only once: store it now. tollgate keeps only its hash.")
		return err
	}
	return nil
}

func plansText(plans []string) string {
	if len(plans) == 0 {
		return "-"
	}
	return strings.Join(plans, ",")
}

// keyStatus says whether a key works at now: active, disabled, expired, or
// both of the last two.
func keyStatus(k *admin.KeyView, now time.Time) string {
	expired := k.Expires != nil && !now.Before(*k.Expires)
	switch {
	case !k.Enabled && expired:
		return "disabled,expired"
	case !k.Enabled:
		return "disabled"
	case expired:
		return "expired"
	}
	return "active"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// timeText formats t in RFC 3339, UTC; none when t is nil.
func timeText(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}
