package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/admin"
)

const usageUsage = `usage: tollgate usage --plan P [--customer C] [--start YYYY-MM-DD] [--end YYYY-MM-DD] [flags]
       tollgate usage grant [flags] CUSTOMER --plan P --requests N

  usage        each customer's requests on plan P per UTC day, and the quota left
  usage grant  raise CUSTOMER's remaining quota on plan P for the current period

Every command takes --admin-addr, --admin-token-file, --json and --timeout;
run 'tollgate usage -h' or 'tollgate usage grant -h'.
`

// runUsage runs "tollgate usage ..." and "tollgate usage grant ...".
func runUsage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "grant":
			return report(stderr, usageGrant(ctx, args[1:], stdout, stderr))
		case "help":
			fmt.Fprint(stdout, usageUsage)
			return nil
		}
	}
	return report(stderr, usageReport(ctx, args, stdout, stderr, time.Now()))
}

// usageReport prints the usage report; the default dates count from now.
func usageReport(ctx context.Context, args []string, stdout, stderr io.Writer, now time.Time) error {
	cmd := newCommand("usage", "--plan P [--customer C] [--start YYYY-MM-DD] [--end YYYY-MM-DD] [flags]",
		"Prints each customer's requests on plan P per UTC day, and the quota left\n"+
			"at the end of the day (\"-\": the plan has no quota). Without --customer,\n"+
			"every customer with a key on the plan, in customer order, a page of\n"+
			"customers at a time (GET /v1/usage?limit=&after=), each page printed as it\n"+
			"comes; --json prints each page's answer as one JSON line. The days run from\n"+
			"--start to --end, both included, at most 366; --end defaults to today (UTC),\n"+
			"--start to 6 days before --end. --timeout bounds each page.\n"+
			"See also 'tollgate usage grant -h'.\n", stderr)
	plan := cmd.fs.String("plan", "", "usage `plan` (required)")
	customer := cmd.fs.String("customer", "", "only `customer`")
	startFlag := cmd.fs.String("start", "", "first UTC `day`, YYYY-MM-DD (default: 6 days before --end)")
	endFlag := cmd.fs.String("end", "", "last UTC `day`, YYYY-MM-DD (default: today)")
	forecast := cmd.fs.Bool("forecast", false, "add each customer's recent rate per hour and when its quota runs out at that rate, on the last day's rows")
	if _, err := cmd.parse(args); err != nil {
		return err
	}
	if *plan == "" {
		return cmd.usageError("missing --plan")
	}
	end := now.UTC().Truncate(24 * time.Hour)
	if *endFlag != "" {
		t, err := time.Parse(time.DateOnly, *endFlag)
		if err != nil {
			return cmd.usageError("--end %q is not a date such as 2026-11-21", *endFlag)
		}
		end = t
	}
	start := end.AddDate(0, 0, -6)
	if *startFlag != "" {
		t, err := time.Parse(time.DateOnly, *startFlag)
		if err != nil {
			return cmd.usageError("--start %q is not a date such as 2026-11-15", *startFlag)
		}
		start = t
	}
	q := url.Values{"plan": {*plan}, "start": {start.Format(time.DateOnly)}, "end": {end.Format(time.DateOnly)}}
	if *forecast {
		q.Set("forecast", "true")
	}
	if *customer != "" {
		q.Set("customer", *customer)
	} else {
		// The server holds a page of a long report to fewer customers,
		// so that it answers within --timeout, also from Redis.
		q.Set("limit", strconv.Itoa(clientPage))
	}
	next := func(ans *admin.UsageAnswer) string { return ans.Next }
	return listPages(ctx, cmd, stdout, stderr, "/v1/usage", q, next, func(ans *admin.UsageAnswer, first bool) error {
		return printUsage(stdout, ans, first)
	})
}

// printUsage prints a page of a usage report as a table, by day, then
// customer; with header, under a header line.
func printUsage(stdout io.Writer, ans *admin.UsageAnswer, header bool) error {
	first, err := time.Parse(time.DateOnly, ans.Start)
	if err != nil {
		return fmt.Errorf("GET /v1/usage: the answer's start %q is not a date", ans.Start)
	}
	customers := make([]string, 0, len(ans.Items))
	days := 0
	for c, series := range ans.Items {
		customers = append(customers, c)
		days = max(days, len(series))
	}
	slices.Sort(customers)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	forecasts := ans.Forecasts != nil
	if header {
		fmt.Fprint(tw, "DATE\tCUSTOMER\tUSED\tREMAINING")
		if forecasts {
			fmt.Fprint(tw, "\tRATE/H\tEXHAUSTION")
		}
		fmt.Fprintln(tw)
	}
	for i := range days {
		date := first.AddDate(0, 0, i).Format(time.DateOnly)
		for _, c := range customers {
			series := ans.Items[c]
			if i >= len(series) {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s", date, c, countText(series[i][0]), countText(series[i][1]))
			if forecasts {
				// The forecast is of the current period: on the last day's row.
				rate, out := "", ""
				if f, ok := ans.Forecasts[c]; ok && i == days-1 {
					rate, out = strconv.FormatFloat(f.RatePerHour, 'f', 1, 64), "-"
					if f.Exhaustion != nil {
						out = f.Exhaustion.UTC().Format(time.RFC3339)
					}
				}
				fmt.Fprintf(tw, "\t%s\t%s", rate, out)
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

// countText formats a count; "-" for null.
func countText(n *int64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}

func usageGrant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("usage grant", "[flags] CUSTOMER --plan P --requests N",
		"Raises CUSTOMER's remaining quota on plan P by N requests, for the current\n"+
			"quota period only, and prints the quota that results.\n", stderr)
	var body admin.GrantBody
	cmd.fs.StringVar(&body.Plan, "plan", "", "usage `plan` with a quota (required)")
	cmd.fs.Func("requests", "`count` of requests to add, a whole number (required)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number of requests, such as 20000")
		}
		body.Requests = n
		return nil
	})
	pos, err := cmd.parse(args, "CUSTOMER")
	if err != nil {
		return err
	}
	switch {
	case body.Plan == "":
		return cmd.usageError("missing --plan")
	case body.Requests == 0:
		return cmd.usageError("missing --requests")
	}
	var v admin.QuotaView
	return cmd.callPrint(ctx, stdout, stderr, "POST", "/v1/usage/"+url.PathEscape(pos[0])+"/grant", body, &v, func(*adminClient) error {
		return printQuota(stdout, &v)
	})
}

// printQuota prints a quota as aligned "field: value" lines.
func printQuota(stdout io.Writer, v *admin.QuotaView) error {
	tw := tabwriter.NewWriter(stdout, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "customer:\t%s\n", v.Customer)
	fmt.Fprintf(tw, "plan:\t%s\n", v.Plan)
	fmt.Fprintf(tw, "period:\t%s, %s to %s (%s)\n", v.Period, v.PeriodStart.UTC().Format(time.RFC3339),
		v.Reset.UTC().Format(time.RFC3339), v.Timezone)
	fmt.Fprintf(tw, "limit:\t%d\n", v.Limit)
	fmt.Fprintf(tw, "granted:\t%d\n", v.Granted)
	fmt.Fprintf(tw, "used:\t%d\n", v.Used)
	fmt.Fprintf(tw, "remaining:\t%d\n", v.Remaining)
	return tw.Flush()
}
