package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/replay"
)

// maxWarnings is how many warnings replay prints on stderr (lines and
// files skipped, WAF rules that cannot count); the further lines skipped
// are counted only.
const maxWarnings = 10

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	candFile := fs.String("policy", "", "candidate policy `file` (required)")
	baseFile := fs.String("baseline", "", "baseline policy `file`, replayed too (default: the logged answers are the baseline)")
	asJSON := fs.Bool("json", false, "print the report as JSON (every group)")
	top := fs.Int("top", 20, "groups with changes shown per plan, route and customer (`n`; 0: all)")
	quiet := fs.Bool("quiet", false, "print no progress on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError(0)
		}
		return exitError(2)
	}
	files := fs.Args()
	for _, f := range files {
		if strings.HasPrefix(f, "-") {
			fmt.Fprintf(stderr, "tollgate replay: %q after the logs: flags go before them\n", f)
			return exitError(2)
		}
	}
	switch {
	case *candFile == "" || len(files) == 0:
		fmt.Fprintln(stderr, "tollgate replay: name a candidate policy and decision logs: tollgate replay --policy candidate.yaml decisions.log")
		return exitError(2)
	case *top < 0:
		fmt.Fprintf(stderr, "tollgate replay: --top %d: want 0 (all) or more\n", *top)
		return exitError(2)
	}
	o := replay.Options{CandidateFile: *candFile, BaselineFile: *baseFile, Files: files}
	var err error
	if o.Candidate, err = loadPolicy(*candFile, stderr); err != nil {
		return err
	}
	if *baseFile != "" {
		if o.Baseline, err = loadPolicy(*baseFile, stderr); err != nil {
			return err
		}
	}
	warned := 0
	o.Warn = func(msg string) {
		if warned++; warned <= maxWarnings {
			fmt.Fprintf(stderr, "tollgate replay: %s\n", msg)
		} else if warned == maxWarnings+1 {
			fmt.Fprintln(stderr, "tollgate replay: further lines skipped are counted, not named")
		}
	}
	if !*quiet {
		o.Progress = func(p replay.Progress) {
			fmt.Fprintf(stderr, "tollgate replay: %d lines, %.0f lines/s, log at %s\n",
				p.Lines, float64(p.Lines)/p.Elapsed.Seconds(), p.At.Format(time.RFC3339))
		}
	}
	r, err := replay.Run(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, r)
	}
	return r.WriteTable(stdout, *top)
}

// loadPolicy loads a policy file; when it has errors it prints every one of
// them to w, as tollgate check does, and returns exit status 1.
func loadPolicy(file string, w io.Writer) (*policy.Policy, error) {
	p, err := policyfile.Load(file)
	if err != nil {
		fmt.Fprintln(w, err)
		return nil, exitError(1)
	}
	return p, nil
}
