package policy

import (
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (c *compiler) waf(path string, v any) {
	o, ok := c.section(path, v, "ip_sets", "rules", "default_action")
	if !ok {
		return
	}
	sets := make(map[string]*ipSet)
	spath, sv, _ := o.get("ip_sets")
	names, m := c.entries(spath, sv)
	for _, name := range names {
		npath := field(spath, name)
		if !validName(name, math.MaxInt) {
			c.errorf(npath, "%q is not a valid ip set name (letters, digits, \"_\", \".\" and \"-\")", name)
		}
		sets[name] = c.ipSet(npath, m[name])
	}
	rpath, rv, _ := o.get("rules")
	seen := make(map[string]int)
	nrate := 0
	for i, item := range c.list(rpath, rv) {
		r, ok := c.rule(index(rpath, i), item, sets, seen, rpath, i)
		if !ok {
			continue
		}
		if r.rate != nil {
			nrate++
			c.p.waf.hasRate = true
		}
		c.p.waf.rules = append(c.p.waf.rules, r)
	}
	if nrate > maxHits {
		c.errorf(rpath, "%d rate_based rules: at most %d are allowed", nrate, maxHits)
	}
	if path, v, ok := o.get("default_action"); ok {
		s, _ := c.choice(path, v, "allow", "block")
		if s == "block" {
			c.p.waf.defaultAction = wafBlock
		}
	}
}

// ipSet compiles a list of CIDR prefixes and addresses.
func (c *compiler) ipSet(path string, v any) *ipSet {
	s := &ipSet{v4: make(map[netip.Prefix]struct{}), v6: make(map[netip.Prefix]struct{})}
	for i, item := range c.list(path, v) {
		ipath := index(path, i)
		str, ok := c.str(ipath, item)
		if !ok {
			continue
		}
		p, err := parsePrefix(str)
		if err != "" {
			c.errorf(ipath, "%q %s", str, err)
			continue
		}
		if p.Addr().Is4() {
			s.v4[p] = struct{}{}
			s.bits4 = addBits(s.bits4, p.Bits())
		} else {
			s.v6[p] = struct{}{}
			s.bits6 = addBits(s.bits6, p.Bits())
		}
	}
	return s
}

// addBits adds n to a list of prefix lengths kept longest first.
func addBits(bits []int, n int) []int {
	if slices.Contains(bits, n) {
		return bits
	}
	bits = append(bits, n)
	slices.SortFunc(bits, func(a, b int) int { return b - a })
	return bits
}

// parsePrefix parses a CIDR prefix or a bare address (a /32 or /128) and
// returns it masked, with v4-mapped IPv6 prefixes as IPv4. err completes a
// message about the bad value.
func parsePrefix(s string) (netip.Prefix, string) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, "is not a CIDR prefix such as 203.0.113.0/24 or 2001:db8::/32"
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p, "is not an IP address or a CIDR prefix such as 203.0.113.0/24"
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if p.Bits() == 0 {
		return p, "is not allowed: a /0 prefix matches every address"
	}
	return p.Masked(), ""
}

var ruleFields = []string{"name", "ip_set", "rate_based", "scope", "action", "response", "mode"}

// rule compiles waf.rules[i]; seen maps the names seen to their index.
func (c *compiler) rule(path string, v any, sets map[string]*ipSet, seen map[string]int, listPath string, i int) (wafRule, bool) {
	var r wafRule
	o, ok := c.object(path, v, ruleFields...)
	if !ok {
		return r, false
	}
	good := c.ruleName(o, &r, seen, listPath, i)
	action := ""
	if apath, av, ok := o.get("action"); !ok {
		c.errorf(apath, "required field is missing (want block, allow or count)")
		good = false
	} else if action, ok = c.choice(apath, av, "block", "allow", "count"); !ok {
		good = false
	}
	r.action = map[string]wafAction{"block": wafBlock, "allow": wafAllow, "count": wafCount}[action]
	good = c.ruleMatch(path, o, &r, action, sets) && good
	good = c.ruleResponse(o, &r, action) && good
	good = c.ruleMode(path, o, &r, action) && good
	return r, good
}

// ruleMode compiles a rule's mode into r: shadow (SPEC §10) is for block
// rules only, the others never deny.
func (c *compiler) ruleMode(path string, o object, r *wafRule, action string) bool {
	shadow, ok := c.mode(o, false)
	if !ok || !shadow {
		return ok
	}
	if action != "block" && action != "" {
		mpath, _, _ := o.get("mode")
		c.errorf(mpath, "\"shadow\" is only allowed with action: block (allow and count rules never deny)")
		return false
	}
	r.shadow = true
	c.noteShadow(path, true)
	return true
}

// ruleName compiles a rule's name into r: its reason waf:<name>, unique
// among the rules of listPath.
func (c *compiler) ruleName(o object, r *wafRule, seen map[string]int, listPath string, i int) bool {
	npath, nv, ok := o.get("name")
	if !ok {
		c.errorf(npath, "required field is missing")
		return false
	}
	s, ok := c.str(npath, nv)
	if !ok {
		return false
	}
	if !validName(s, math.MaxInt) {
		c.errorf(npath, "%q is not a valid rule name (letters, digits, \"_\", \".\" and \"-\")", s)
		return false
	}
	if j, dup := seen[s]; dup {
		c.errorf(npath, "%q is also the name of %s", s, index(listPath, j))
		return false
	}
	seen[s] = i
	r.name, r.reason = s, Reason("waf:"+s)
	return true
}

// ruleMatch compiles what a rule matches into r: exactly one of ip_set
// and rate_based, and a scope only with rate_based.
func (c *compiler) ruleMatch(path string, o object, r *wafRule, action string, sets map[string]*ipSet) bool {
	good := true
	spath, sv, hasSet := o.get("ip_set")
	rpath, rv, hasRate := o.get("rate_based")
	switch {
	case hasSet && hasRate:
		c.errorf(path, "ip_set and rate_based are both set (a rule has exactly one of them)")
		good = false
	case !hasSet && !hasRate:
		c.errorf(path, "needs ip_set or rate_based")
		good = false
	case hasSet:
		if s, ok := c.str(spath, sv); !ok {
			good = false
		} else if r.set = sets[s]; r.set == nil {
			c.errorf(spath, "%q is not an ip set (%s)", s, setList(sets))
			good = false
		}
	default:
		if action == "allow" {
			c.errorf(field(path, "action"), "\"allow\" is not allowed with rate_based (want block or count)")
			good = false
		}
		if rr, ok := c.rateRule(rpath, rv, r.name); ok {
			r.rate = rr
		} else {
			good = false
		}
	}
	if scpath, scv, ok := o.get("scope"); ok {
		if !hasRate || hasSet {
			c.errorf(scpath, "only allowed with rate_based")
			good = false
		} else if t, ok := c.scope(scpath, scv); ok {
			r.scope = t
		} else {
			good = false
		}
	}
	return good
}

// ruleResponse compiles the answer of a block rule into r: 403 Forbidden
// unless its response says otherwise.
func (c *compiler) ruleResponse(o object, r *wafRule, action string) bool {
	if action == "block" {
		r.status, r.body = 403, BodyForbidden
	}
	rspath, rsv, ok := o.get("response")
	if !ok {
		return true
	}
	if action != "block" && action != "" {
		c.errorf(rspath, "only allowed with action: block")
		return false
	}
	ro, ok := c.object(rspath, rsv, "status", "body")
	if !ok {
		return false
	}
	good := true
	if p, v, ok := ro.get("status"); ok {
		n, ok := c.integer(p, v, 400, 599)
		good = good && ok
		r.status = int(n)
	}
	if p, v, ok := ro.get("body"); ok {
		s, ok := c.str(p, v)
		good = good && ok
		r.body = s
	}
	return good
}

// setList lists the ip sets for a message.
func setList(sets map[string]*ipSet) string {
	if len(sets) == 0 {
		return "there are no ip_sets"
	}
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	slices.Sort(names)
	return "ip sets: " + strings.Join(names, ", ")
}

// rateRule compiles a rule's rate_based {limit, window, key, ipv6_prefix}.
func (c *compiler) rateRule(path string, v any, name string) (*rateRule, bool) {
	o, ok := c.object(path, v, "limit", "window", "key", "ipv6_prefix")
	if !ok {
		return nil, false
	}
	rr := &rateRule{}
	good := true
	if p, v, ok := o.get("limit"); !ok {
		c.errorf(p, "required field is missing")
		good = false
	} else if rr.limit, ok = c.integer(p, v, 1, math.MaxInt64); !ok {
		good = false
	}
	if p, v, ok := o.get("window"); !ok {
		c.errorf(p, "required field is missing")
		good = false
	} else if s, ok := v.(string); !ok {
		c.typeError(p, v, "a duration such as 30s, 5m or 1h")
		good = false
	} else if w, err := time.ParseDuration(s); err != nil {
		c.errorf(p, "%q is not a duration such as 30s, 5m or 1h", s)
		good = false
	} else if w < time.Second || w > time.Hour {
		c.errorf(p, "%q is not between 1s and 1h", s)
		good = false
	} else {
		rr.window = w
	}
	keyID := ""
	if p, v, ok := o.get("key"); !ok {
		c.errorf(p, "required field is missing (want ip, header:<name>, api_key or ip+path)")
		good = false
	} else if s, ok := c.str(p, v); !ok {
		good = false
	} else {
		h, isHeader := strings.CutPrefix(s, "header:")
		switch {
		case s == "ip":
			rr.key = rateIP
		case s == "api_key":
			rr.key = rateAPIKey
		case s == "ip+path":
			rr.key = rateIPPath
		case isHeader && validToken(h):
			rr.key, rr.header = rateHeader, strings.ToLower(h)
			if rr.header == c.p.keyHeader {
				// The counters would hold key values, which never go
				// to the store.
				c.errorf(p, "%q is the API key header: use key: api_key", s)
				good = false
			}
		default:
			c.errorf(p, "%q is not one of ip, header:<name>, api_key, ip+path", s)
			good = false
		}
		keyID = s
		if rr.key == rateHeader {
			keyID = "header:" + rr.header
		}
	}
	if p, v, ok := o.get("ipv6_prefix"); ok {
		n, ok := c.integer(p, v, 1, 128)
		switch {
		case !ok:
			good = false
		case keyID != "" && rr.key != rateIP && rr.key != rateIPPath:
			c.errorf(p, "only allowed with key: ip or ip+path (key is %s)", keyID)
			good = false
		default:
			rr.v6bits = int(n)
			// Counters per prefix are not the counters per address.
			keyID += "|ipv6/" + strconv.Itoa(rr.v6bits)
		}
	}
	rr.id = c.limitID("waf|" + name + "|" + keyID + "|" + strconv.FormatInt(rr.limit, 10) + "|" + rr.window.String())
	return rr, good
}

// scope compiles a rule's scope {routes: [match, ...]}.
func (c *compiler) scope(path string, v any) (*routeTable, bool) {
	o, ok := c.object(path, v, "routes")
	if !ok {
		return nil, false
	}
	rpath, rv, _ := o.get("routes")
	items := c.list(rpath, rv)
	if len(items) == 0 {
		if rv == nil || isList(rv) {
			c.errorf(rpath, "a scope needs at least one route")
		}
		return nil, false
	}
	t := &routeTable{}
	good := true
	for i, item := range items {
		ipath := index(rpath, i)
		s, ok := c.str(ipath, item)
		if !ok {
			good = false
			continue
		}
		method, pattern, ok := c.match(ipath, s)
		if !ok {
			good = false
			continue
		}
		if err := t.add(&Route{Match: s, Method: method, Pattern: pattern}); err != nil {
			c.errorf(ipath, "%v", err)
			good = false
		}
	}
	return t, good
}
