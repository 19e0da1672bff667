package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tollgate/tollgate/admin"
	"github.com/tollgate/tollgate/policy"
)

// maxNamedKeys bounds the keys a rejected reload names; the rest are
// counted.
const maxNamedKeys = 10

// errStoreUnread marks a check of the run-time keys that could not read
// them.
var errStoreUnread = errors.New("run-time keys not checked")

// checkRuntimeKeys checks the store's run-time keys against p, as a
// reload must (README, "Admin API"): every key's plans must pass the checks that
// creating it passed (each plan exists, at most one plan per stage), or the
// key would be refused as key:no-plan; no key of the policy file may have a
// run-time key's id, or two keys would answer to it. It reads the keys a
// page at a time. The error names at most maxNamedKeys keys, one a line;
// an error wrapping errStoreUnread means the store could not be read.
func (s *Server) checkRuntimeKeys(ctx context.Context, p *policy.Policy) error {
	var lines []string
	bad := 0
	for after := ""; ; {
		page, err := s.store.KeysAfter(ctx, after, admin.MaxPage)
		if err != nil {
			return fmt.Errorf("%w: %w", errStoreUnread, err)
		}
		for _, k := range page {
			problem := keyProblem(p, k)
			if problem == "" {
				continue
			}
			if bad++; bad <= maxNamedKeys {
				lines = append(lines, fmt.Sprintf("%s: %s", p.File, problem))
			}
		}
		if len(page) < admin.MaxPage {
			break
		}
		after = page[len(page)-1].ID
	}
	if bad == 0 {
		return nil
	}
	if bad > maxNamedKeys {
		lines = append(lines, fmt.Sprintf("%s: and %d more run-time keys", p.File, bad-maxNamedKeys))
	}
	return errors.New(strings.Join(lines, "\n"))
}

// keyProblem says why the run-time key k does not fit p; "" when it does.
func keyProblem(p *policy.Policy, k *policy.APIKey) string {
	if p.KeyByID(k.ID) != nil {
		return fmt.Sprintf("api_keys: id %q is the id of a run-time key (customer %q): delete that key through the admin API first, or choose another id", k.ID, k.Customer)
	}
	if err := p.CheckKeyPlans(k.Plans); err != nil {
		var why []string
		for _, line := range strings.Split(err.Error(), "\n") {
			why = append(why, strings.TrimPrefix(line, "body: "))
		}
		return fmt.Sprintf("run-time key %q (customer %q) would lose its plans: %s: keep the plan, or change the key's plans (PATCH /v1/keys/%s) first",
			k.ID, k.Customer, strings.Join(why, "; "), k.ID)
	}
	return ""
}
