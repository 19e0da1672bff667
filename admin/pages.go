package admin

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/policy"
)

// Paging of GET /v1/keys and GET /v1/usage: ?limit= (default DefaultPage,
// at most MaxPage) and ?after=<id or customer>.
const (
	DefaultPage = 100
	MaxPage     = 1000
	// scanFactor bounds the keys one filtered call reads: limit ×
	// scanFactor, at least minScan. A filter that few keys pass (a plan
	// held by ten customers of 200,000) then answers a short page, or an
	// empty one, with a next to go on from, instead of reading every key.
	scanFactor = 10
	minScan    = 1000
	// afterAllIDs sorts after every valid id ([A-Za-z0-9._-] are below
	// it): a position (customer, afterAllIDs) is the end of the customer.
	afterAllIDs = "\x7f"
)

// page is a page's parameters.
type page struct {
	limit int
	after string
}

// scanBudget is how many keys a call with a filter reads at most.
func (pg page) scanBudget() int { return max(pg.limit*scanFactor, minScan) }

// pageParams reads limit and after from the query: ErrInvalid for a limit
// that is not 1 to MaxPage or an after that is not a valid id or customer.
func pageParams(q map[string]string) (page, error) {
	pg := page{limit: DefaultPage, after: q["after"]}
	var bad problems
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPage {
			bad.add("query: limit: %q is not a number from 1 to %d", v, MaxPage)
		}
		pg.limit = n
	}
	if v, ok := q["after"]; ok {
		bad.checkID("query: after", "a key id or customer", v)
	}
	return pg, bad.err()
}

// mergeKeys merges two lists sorted by cmp into the first n of their union
// (a run-time key in a first, hiding a key of b that sorts the same).
func mergeKeys(a, b []*policy.APIKey, cmp func(x, y *policy.APIKey) int, n int) []*policy.APIKey {
	out := make([]*policy.APIKey, 0, min(n, len(a)+len(b)))
	for len(out) < n && (len(a) > 0 || len(b) > 0) {
		switch {
		case len(b) == 0:
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0:
			out, b = append(out, b[0]), b[1:]
		default:
			switch c := cmp(a[0], b[0]); {
			case c < 0:
				out, a = append(out, a[0]), a[1:]
			case c > 0:
				out, b = append(out, b[0]), b[1:]
			default:
				out, a, b = append(out, a[0]), a[1:], b[1:]
			}
		}
	}
	return out
}

func byID(x, y *policy.APIKey) int { return strings.Compare(x.ID, y.ID) }

func byCustomer(x, y *policy.APIKey) int {
	if c := strings.Compare(x.Customer, y.Customer); c != 0 {
		return c
	}
	return byID(x, y)
}

// allKeys is every key: the run-time keys of a store and the policy
// file's, read a page at a time. A run-time key hides a policy key of its
// id (a reload refuses to make one; a store may hold one from before).
type allKeys struct {
	rt KeyPages
	p  *policy.Policy
}

// after returns at most n keys whose ids sort after after, in id order.
func (ak allKeys) after(ctx context.Context, after string, n int) ([]*policy.APIKey, error) {
	rt, err := ak.rt.KeysAfter(ctx, after, n)
	if err != nil {
		return nil, err
	}
	return mergeKeys(rt, ak.p.KeysAfter(after, n), byID, n), nil
}

// customerAfter is after in the order of customer, then id.
func (ak allKeys) customerAfter(ctx context.Context, customer, id string, n int) ([]*policy.APIKey, error) {
	rt, err := ak.rt.CustomerKeysAfter(ctx, customer, id, n)
	if err != nil {
		return nil, err
	}
	return mergeKeys(rt, ak.p.CustomerKeysAfter(customer, id, n), byCustomer, n), nil
}

// keyScan walks the keys in id order from an after, or the keys of one
// customer, a batch at a time, stopping at a budget of keys read.
type keyScan struct {
	keys     allKeys
	customer string // "": every key, in id order
	after    string // the id of the last key read
	batch    []*policy.APIKey
	read     int
	done     bool // no key after the last one read
}

// next returns the next key, or nil at the end.
func (sc *keyScan) next(ctx context.Context, batch int) (*policy.APIKey, error) {
	if len(sc.batch) == 0 && !sc.done {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		if sc.customer == "" {
			sc.batch, err = sc.keys.after(ctx, sc.after, batch)
		} else {
			sc.batch, err = sc.keys.customerAfter(ctx, sc.customer, sc.after, batch)
		}
		if err != nil {
			return nil, err
		}
		sc.done = len(sc.batch) < batch
	}
	if len(sc.batch) == 0 {
		sc.done = true
		return nil, nil
	}
	k := sc.batch[0]
	sc.batch = sc.batch[1:]
	if sc.customer != "" && k.Customer != sc.customer {
		sc.batch, sc.done = nil, true
		return nil, nil
	}
	sc.after = k.ID
	sc.read++
	return k, nil
}

// keyPage returns the page of keys that pg names, of the customer and on
// the plan when they are not empty: the customer's are read from the
// customer order; a plan is read through, at most scanBudget keys a call,
// so a page may then be short, or empty, with a next.
func keyPage(ctx context.Context, keys allKeys, customer, plan string, pg page) (KeyList, error) {
	sc := &keyScan{keys: keys, customer: customer, after: pg.after}
	ans := KeyList{Items: []KeyView{}}
	budget := pg.scanBudget()
	for {
		if plan != "" && sc.read >= budget {
			if !sc.done {
				ans.Next = sc.after // go on from the last key read
			}
			return ans, nil
		}
		mark := sc.after
		k, err := sc.next(ctx, pg.limit+1)
		if err != nil {
			return KeyList{}, err
		}
		if k == nil {
			return ans, nil
		}
		if plan != "" && !slices.Contains(k.Plans, plan) {
			continue
		}
		if len(ans.Items) == pg.limit {
			ans.Next = mark // k is on the next page
			return ans, nil
		}
		ans.Items = append(ans.Items, viewOf(k))
	}
}

// customersPage returns the customers with a key on plan that sort after
// pg.after, at most pg.limit of them, and the after of the next page ("":
// none). It reads the keys in the order of customer, then id, at most
// scanBudget of them (a customer's keys are read to its end).
func customersPage(ctx context.Context, keys allKeys, plan string, pg page) ([]string, string, error) {
	var customers []string
	cur, curHas := "", false
	customer, id := pg.after, ""
	if pg.after != "" {
		id = afterAllIDs
	}
	read, budget := 0, pg.scanBudget()
	for {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		batch, err := keys.customerAfter(ctx, customer, id, pg.limit+1)
		if err != nil {
			return nil, "", err
		}
		for _, k := range batch {
			if k.Customer != cur {
				if curHas {
					if len(customers) == pg.limit {
						return customers, customers[len(customers)-1], nil
					}
					customers = append(customers, cur)
				}
				if cur != "" && read >= budget {
					// Go on after the last customer read whole.
					return customers, cur, nil
				}
				cur, curHas = k.Customer, false
			}
			read++
			curHas = curHas || slices.Contains(k.Plans, plan)
			customer, id = k.Customer, k.ID
		}
		if len(batch) < pg.limit+1 {
			break
		}
	}
	if curHas {
		if len(customers) == pg.limit {
			return customers, customers[len(customers)-1], nil
		}
		customers = append(customers, cur)
	}
	return customers, "", nil
}

// customerHasPlan reports whether a key of customer holds plan, reading the
// customer's keys only.
func customerHasPlan(ctx context.Context, keys allKeys, customer, plan string) (bool, error) {
	sc := &keyScan{keys: keys, customer: customer}
	for {
		k, err := sc.next(ctx, MaxPage)
		if err != nil || k == nil {
			return false, err
		}
		if slices.Contains(k.Plans, plan) {
			return true, nil
		}
	}
}
