package policy

import (
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

func (c *compiler) apis(path string, v any) {
	names, m := c.entries(path, v)
	for _, name := range names {
		apath := field(path, name)
		if !validName(name, math.MaxInt) {
			c.errorf(apath, "%q is not a valid api name (letters, digits, \"_\", \".\" and \"-\")", name)
		}
		o, ok := c.section(apath, m[name], "hosts", "stages")
		if !ok {
			continue
		}
		a := &api{name: name}
		c.p.apis[name] = a
		spath, sv, _ := o.get("stages")
		snames, sm := c.entries(spath, sv)
		for _, sname := range snames {
			if st := c.stage(field(spath, sname), name, sname, sm[sname]); st != nil {
				a.stages = append(a.stages, st)
			}
		}
		if len(snames) == 0 && (sv == nil || isMapping(sv)) {
			c.errorf(spath, "an api needs at least one stage")
		}
		hpath, hv, _ := o.get("hosts")
		for i, h := range c.list(hpath, hv) {
			c.host(index(hpath, i), h, a, len(snames))
		}
	}
}

// host maps one host of api a to the api's stage: its only stage, else
// default_stage. nstages counts the stages written, compiled or not.
func (c *compiler) host(path string, v any, a *api, nstages int) {
	s, ok := c.str(path, v)
	if !ok {
		return
	}
	h, ok := hostKey(s)
	if !ok {
		c.errorf(path, "%q is not a host name (letters, digits, \"-\", \"_\" and \".\", or an IP address; no port)", s)
		return
	}
	if owner, dup := c.hostOwner[h]; dup {
		if owner == a.name {
			c.errorf(path, "%q is listed twice", s)
		} else {
			c.errorf(path, "%q already belongs to api %s", s, owner)
		}
		return
	}
	c.hostOwner[h] = a.name
	var st *Stage
	switch {
	case nstages == 1 && len(a.stages) == 1:
		st = a.stages[0]
	case nstages > 1:
		st = c.p.stages[c.defaultStage]
		if st == nil || st.API != a.name {
			c.errorf(path, "api %s has several stages: default_stage must name one of them for its hosts", a.name)
			return
		}
	default:
		return // the stage has errors of its own
	}
	c.p.hosts[h] = st
}

// hostKey returns a host name lower-case, or an IP address in its canonical
// form without brackets; ok is false when s is neither.
func hostKey(s string) (string, bool) {
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		if a.Zone() != "" {
			return "", false
		}
		return a.String(), true
	}
	if s == "" || len(s) > 253 {
		return "", false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return strings.ToLower(s), true
}

// stage compiles one stage; nil when it cannot be registered.
func (c *compiler) stage(path, apiName, name string, v any) *Stage {
	if !validName(name, math.MaxInt) {
		c.errorf(path, "%q is not a valid stage name (letters, digits, \"_\", \".\" and \"-\")", name)
	}
	o, ok := c.section(path, v, "throttle", "route_defaults", "unknown_routes", "routes")
	if !ok {
		return nil
	}
	st := &Stage{Name: apiName + "/" + name, API: apiName, Stage: name}
	c.p.stages[st.Name] = st
	c.routes[st] = make(map[string]*Route)
	if path, v, ok := o.get("throttle"); ok {
		if t, ok := c.throttle(path, v, false); ok {
			st.throttle = t
			st.throttleKey = c.limitID("stage|" + st.Name + "|" + throttleID(*t))
		}
	}
	var defaults *Throttle
	if path, v, ok := o.get("route_defaults"); ok {
		if rd, ok := c.section(path, v, "throttle"); ok {
			if path, v, ok := rd.get("throttle"); ok {
				defaults, _ = c.throttle(path, v, false)
			}
		}
	}
	if path, v, ok := o.get("unknown_routes"); ok {
		s, _ := c.choice(path, v, "allow", "deny")
		st.unknownDeny = s == "deny"
	}
	rpath, rv, _ := o.get("routes")
	for i, r := range c.list(rpath, rv) {
		c.route(index(rpath, i), st, defaults, r)
	}
	return st
}

var routeFields = []string{"match", "throttle", "api_key", "waf", "concurrency"}

// concurrency decodes a route's in-flight cap: a number, or {limit, status}
// where status (429 by default) is 429 or 503.
func (c *compiler) concurrency(path string, v any, r *Route) {
	r.concurrencyStatus = 429
	if _, isMap := v.(map[string]any); !isMap {
		if _, isMap := v.(map[any]any); !isMap {
			n, _ := c.integer(path, v, 0, math.MaxInt32)
			r.Concurrency = int(n)
			return
		}
	}
	o, ok := c.object(path, v, "limit", "status")
	if !ok {
		return
	}
	if lpath, lv, ok := o.get("limit"); ok {
		n, _ := c.integer(lpath, lv, 0, math.MaxInt32)
		r.Concurrency = int(n)
	} else {
		c.errorf(lpath, "required field is missing")
	}
	if spath, sv, ok := o.get("status"); ok {
		if n, ok := c.integer(spath, sv, 0, 999); ok && n != 429 && n != 503 {
			c.errorf(spath, "%d is not 429 or 503", n)
		} else if ok {
			r.concurrencyStatus = int(n)
		}
	}
}

func (c *compiler) route(path string, st *Stage, defaults *Throttle, v any) {
	o, ok := c.object(path, v, routeFields...)
	if !ok {
		return
	}
	r := &Route{}
	mpath, mv, hasMatch := o.get("match")
	matched := false
	if !hasMatch {
		c.errorf(mpath, "required field is missing")
	} else if s, ok := c.str(mpath, mv); ok {
		r.Match = s
		r.Method, r.Pattern, matched = c.match(mpath, s)
	}
	if path, v, ok := o.get("throttle"); ok {
		r.throttle, _ = c.throttle(path, v, false)
	} else {
		r.throttle = defaults
	}
	if r.throttle != nil {
		r.throttleKey = c.limitID("route|" + st.Name + "|" + r.Match + "|" + throttleID(*r.throttle))
	}
	if path, v, ok := o.get("api_key"); ok {
		s, _ := c.choice(path, v, "required", "optional", "none")
		r.apiKey = map[string]KeyMode{"required": KeyRequired, "optional": KeyOptional}[s]
	}
	if path, v, ok := o.get("waf"); ok {
		s, _ := c.choice(path, v, "skip")
		r.wafSkip = s == "skip"
	}
	if path, v, ok := o.get("concurrency"); ok {
		c.concurrency(path, v, r)
		if r.Concurrency > 0 {
			// Not the cap: a new cap counts the requests in flight.
			r.concurrencyKey = c.limitID("concurrency|" + st.Name + "|" + r.Match)
		}
	}
	if !matched {
		return
	}
	if err := st.routes.add(r); err != nil {
		c.errorf(mpath, "%v", err)
		return
	}
	c.routes[st][r.Match] = r
	st.routeList = append(st.routeList, r)
}

// match parses a route match string.
func (c *compiler) match(path, s string) (method, pattern string, ok bool) {
	method, pattern, err := parseMatch(s)
	if err != nil {
		if q := strconv.Quote(s); strings.HasPrefix(err.Error(), q) {
			c.errorf(path, "%v", err)
		} else {
			c.errorf(path, "%s: %v", q, err)
		}
		return "", "", false
	}
	return method, pattern, true
}

// stageList lists the stages for a message.
func (c *compiler) stageList() string {
	if len(c.p.stages) == 0 {
		return "the policy has no stages"
	}
	names := make([]string, 0, len(c.p.stages))
	for n := range c.p.stages {
		names = append(names, n)
	}
	slices.Sort(names)
	return "stages: " + strings.Join(names, ", ")
}
