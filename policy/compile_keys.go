package policy

import (
	"crypto/sha256"
	"slices"
	"strings"
	"time"
)

var keyFields = []string{"id", "customer", "name", "hash", "plans", "enabled", "expires"}

func (c *compiler) keys(path string, v any) {
	ids := make(map[string]int)
	hashes := make(map[[sha256.Size]byte]int)
	for i, item := range c.list(path, v) {
		c.key(index(path, i), path, i, item, ids, hashes)
	}
	c.p.keysInIDOrder = make([]*APIKey, 0, len(c.p.keysByID))
	for _, k := range c.p.keysByID {
		c.p.keysInIDOrder = append(c.p.keysInIDOrder, k)
	}
	slices.SortFunc(c.p.keysInIDOrder, func(a, b *APIKey) int { return strings.Compare(a.ID, b.ID) })
	c.p.keysInCustomerOrder = slices.Clone(c.p.keysInIDOrder)
	slices.SortStableFunc(c.p.keysInCustomerOrder, func(a, b *APIKey) int { return strings.Compare(a.Customer, b.Customer) })
}

// key compiles api_keys[i]; ids and hashes map those seen to their index.
func (c *compiler) key(path, listPath string, i int, v any, ids map[string]int, hashes map[[sha256.Size]byte]int) {
	o, ok := c.object(path, v, keyFields...)
	if !ok {
		return
	}
	k := &APIKey{Enabled: true, FromPolicy: true}
	good := true
	if path, v, ok := o.get("id"); !ok {
		c.errorf(path, "required field is missing")
		good = false
	} else if id, ok := c.str(path, v); !ok {
		good = false
	} else if !ValidKeyID(id) {
		c.errorf(path, "%q is not a valid key id (%s)", id, KeyIDRule)
		good = false
	} else if j, dup := ids[id]; dup {
		c.errorf(path, "%q is also the id of %s", id, index(listPath, j))
		good = false
	} else {
		ids[id] = i
		k.ID = id
	}
	k.Customer = k.ID
	if path, v, ok := o.get("customer"); ok {
		if s, ok := c.str(path, v); !ok {
			good = false
		} else if !ValidKeyID(s) {
			c.errorf(path, "%q is not a valid customer (%s)", s, KeyIDRule)
			good = false
		} else {
			k.Customer = s
		}
	}
	if path, v, ok := o.get("name"); ok {
		k.Name, _ = c.str(path, v)
	}
	if path, v, ok := o.get("hash"); !ok {
		c.errorf(path, "required field is missing")
		good = false
	} else if s, ok := c.str(path, v); !ok {
		good = false
	} else if h, ok := ParseKeyHash(s); !ok {
		c.errorf(path, "%q is not \"sha256:\" followed by 64 lower-case hex digits", s)
		good = false
	} else if j, dup := hashes[h]; dup {
		c.errorf(path, "%q is also the hash of %s", s, index(listPath, j))
		good = false
	} else {
		hashes[h] = i
		k.Hash = h
	}
	if path, v, ok := o.get("plans"); !ok {
		c.errorf(path, "required field is missing")
		good = false
	} else if plans, ok := c.keyPlans(path, v); ok {
		k.Plans = plans
	} else {
		good = false
	}
	if path, v, ok := o.get("enabled"); ok {
		k.Enabled, _ = c.boolean(path, v)
	}
	if path, v, ok := o.get("expires"); ok {
		k.Expires, _ = c.timestamp(path, v)
	}
	if good {
		c.p.keys[k.Hash] = k
		c.p.keysByID[k.ID] = k
	}
}

// keyPlans decodes a key's plans: at least one, each an existing plan, no
// two covering the same stage.
func (c *compiler) keyPlans(path string, v any) ([]string, bool) {
	if v != nil && !isList(v) {
		c.typeError(path, v, "a list")
		return nil, false
	}
	items, _ := v.([]any)
	if len(items) == 0 {
		c.errorf(path, "a key needs at least one plan")
		return nil, false
	}
	good := true
	var plans []*Plan
	var names []string
	for i, item := range items {
		ipath := index(path, i)
		name, ok := c.str(ipath, item)
		switch {
		case !ok:
			good = false
		case c.p.plans[name] == nil:
			c.errorf(ipath, "%q is not a usage plan (%s)", name, c.planList())
			good = false
		case slices.Contains(names, name):
			c.errorf(ipath, "%q is listed twice", name)
			good = false
		default:
			names = append(names, name)
			plans = append(plans, c.p.plans[name])
		}
	}
	for i, a := range plans {
		for _, b := range plans[i+1:] {
			for _, st := range sortedStages(a.stages) {
				if b.stages[st] {
					c.errorf(path, "plans %q and %q both cover stage %s (a key holds at most one plan per stage)", a.Name, b.Name, st.Name)
					good = false
				}
			}
		}
	}
	return names, good
}

// timestamp decodes a YAML timestamp (time.Time), an RFC 3339 string or a
// date "2006-01-02" (midnight UTC, as YAML reads it).
func (c *compiler) timestamp(path string, v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, true
	case string:
		if tt, err := time.Parse(time.RFC3339Nano, t); err == nil {
			return tt, true
		}
		if tt, err := time.Parse(time.DateOnly, t); err == nil {
			return tt, true
		}
	}
	c.errorf(path, "%s is not an RFC 3339 time such as 2027-06-30T00:00:00Z", show(v))
	return time.Time{}, false
}
