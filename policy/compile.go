package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Compile decodes, validates and compiles a policy document: the generic
// tree a YAML or JSON decoder produces from the file of SPEC §1
// (map[string]any or map[any]any, []any, string, bool, int, int64, uint64,
// float64, json.Number, time.Time, nil). file names the document in
// messages.
//
// Decoding is strict: an unknown field, a value of the wrong type or out of
// range, a dangling reference (a plan naming a missing stage, a key naming a
// missing plan, ...) is an error; a bad value never falls back to a default.
// Compile reports every error of the document at once, joined with
// errors.Join, each as "<file>: <field path>: <message>", in a deterministic
// order. A section or list written as null ("api_keys:" with every entry
// commented out) counts as empty; a null scalar or throttle is an error.
//
// The returned Policy is immutable and safe for concurrent use.
func Compile(file string, doc any) (*Policy, error) {
	c := &compiler{
		decoder: decoder{file: file},
		p: &Policy{
			File:      file,
			keyHeader: "x-api-key",
			stages:    make(map[string]*Stage),
			apis:      make(map[string]*api),
			hosts:     make(map[string]*Stage),
			plans:     make(map[string]*Plan),
			keys:      make(map[[sha256.Size]byte]*APIKey),
			keysByID:  make(map[string]*APIKey),
			limits:    make(map[string]string),
		},
		routes:    make(map[*Stage]map[string]*Route),
		hostOwner: make(map[string]string),
	}
	c.compile(doc)
	if err := c.err(); err != nil {
		return nil, err
	}
	return c.p, nil
}

// compiler holds the state of one Compile.
type compiler struct {
	decoder
	p *Policy

	routes       map[*Stage]map[string]*Route // by match string as written
	hostOwner    map[string]string            // host -> api
	defaultStage string                       // default_stage as written, when a string
}

var topFields = []string{"version", "account", "clients", "headers", "explain", "apis", "default_stage", "usage_plans", "api_keys", "waf"}

func (c *compiler) compile(doc any) {
	if doc == nil {
		c.errorf("", "the policy is empty (want a mapping that starts with version: 1)")
		return
	}
	o, ok := c.object("", doc, topFields...)
	if !ok {
		return
	}
	c.version(o)
	if path, v, ok := o.get("account"); ok {
		if a, ok := c.section(path, v, "throttle"); ok {
			if path, v, ok := a.get("throttle"); ok {
				if t, ok := c.throttle(path, v); ok {
					c.p.account = t
					c.p.accountKey = c.limitID("account|" + throttleID(*t))
				}
			}
		}
	}
	if path, v, ok := o.get("clients"); ok {
		c.clients(path, v)
	}
	if path, v, ok := o.get("headers"); ok {
		if s, ok := c.choice(path, v, "ietf", "legacy", "both", "none"); ok {
			c.p.Headers = map[string]HeaderMode{"ietf": HeadersIETF, "legacy": HeadersLegacy, "both": HeadersBoth, "none": HeadersNone}[s]
		}
	}
	if path, v, ok := o.get("explain"); ok {
		c.p.Explain, _ = c.boolean(path, v)
	}
	if _, v, ok := o.get("default_stage"); ok {
		c.defaultStage, _ = v.(string) // checked below, once the stages exist
	}
	if path, v, ok := o.get("apis"); ok {
		c.apis(path, v)
	}
	if path, v, ok := o.get("default_stage"); ok {
		if s, ok := c.str(path, v); ok {
			if st := c.p.stages[s]; st != nil {
				c.p.defaultStage = st
			} else {
				c.errorf(path, "%q is not a stage (%s)", s, c.stageList())
			}
		}
	}
	if path, v, ok := o.get("usage_plans"); ok {
		c.plans(path, v)
	}
	if path, v, ok := o.get("api_keys"); ok {
		c.keys(path, v)
	}
	if path, v, ok := o.get("waf"); ok {
		c.waf(path, v)
	}
}

func (c *compiler) version(o object) {
	path, v, ok := o.get("version")
	if !ok {
		c.errorf(path, "required field is missing (want 1)")
		return
	}
	if n, ok := toInt(v); !ok || n.big || n.v != 1 {
		c.errorf(path, "%s is not a supported version (want 1)", show(v))
	}
}

// throttle decodes {rate, burst}, both required.
func (c *compiler) throttle(path string, v any) (*Throttle, bool) {
	o, ok := c.object(path, v, "rate", "burst")
	if !ok {
		return nil, false
	}
	good := true
	var rate float64
	if path, v, ok := o.get("rate"); !ok {
		c.errorf(path, "required field is missing")
		good = false
	} else if rate, ok = c.rate(path, v); !ok {
		good = false
	}
	var burst int64
	if path, v, ok := o.get("burst"); !ok {
		c.errorf(path, "required field is missing")
		good = false
	} else if burst, ok = c.integer(path, v, 0, maxBurst); !ok {
		good = false
	}
	if !good {
		return nil, false
	}
	t := NewThrottle(rate, burst)
	return &t, true
}

// rate decodes a throttle rate: a decimal 0..1e9 with at most six decimals.
func (c *compiler) rate(path string, v any) (float64, bool) {
	f, ok := toFloat(v)
	switch {
	case !ok:
		c.typeError(path, v, "a number")
	case math.IsNaN(f):
		c.errorf(path, "%s is not a number", show(v))
	case f < 0:
		c.errorf(path, "%s is below the minimum 0", show(v))
	case f > maxRateMicro/1e6:
		c.errorf(path, "%s is above the maximum 1000000000", show(v))
	case float64(NewThrottle(f, 0).RateMicro)/1e6 != f:
		c.errorf(path, "%s has more than 6 decimals", show(v))
	default:
		return f, true
	}
	return 0, false
}

// throttleID is the part of a state key that identifies a throttle's
// definition: "<rate micro>/<burst>".
// limitID returns the state key of the limit with the given identity: the
// first 8 bytes of the identity's SHA-256 in hex. State keys are hashed and
// compared on every decision, and stored in Redis: a short fixed-size key
// costs less than the identity itself, and stays the same across processes
// and reloads. Policy.LimitName maps it back. Two identities of one policy
// whose keys collide (odds about n²/2⁶⁵) are reported as an error rather
// than sharing state.
func (c *compiler) limitID(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	id := hex.EncodeToString(sum[:8])
	if prev, ok := c.p.limits[id]; ok && prev != identity {
		c.errorf("", "limits %q and %q have the same state key %s; rename one", prev, identity, id)
	}
	c.p.limits[id] = identity
	return id
}

func throttleID(t Throttle) string {
	return strconv.FormatUint(t.RateMicro, 10) + "/" + strconv.FormatInt(t.Burst, 10)
}

func (c *compiler) clients(path string, v any) {
	o, ok := c.section(path, v, "api_key_header", "strip_api_key", "ip")
	if !ok {
		return
	}
	if path, v, ok := o.get("api_key_header"); ok {
		if h, ok := c.headerName(path, v); ok {
			c.p.keyHeader = h
		}
	}
	if path, v, ok := o.get("strip_api_key"); ok {
		c.p.stripKey, _ = c.boolean(path, v)
	}
	path, v, ok = o.get("ip")
	if !ok {
		return
	}
	ip, ok := c.section(path, v, "source", "xff_trusted_hops", "header")
	if !ok {
		return
	}
	source := "peer"
	if path, v, ok := ip.get("source"); ok {
		source, _ = c.choice(path, v, "peer", "xff", "header")
	}
	switch source {
	case "xff":
		c.p.ip.kind = ipXFF
	case "header":
		c.p.ip.kind = ipHeader
	}
	// xff_trusted_hops and header are checked with every source, but
	// used only with their own: the example of SPEC §1 writes all three.
	if path, v, ok := ip.get("xff_trusted_hops"); ok {
		n, _ := c.integer(path, v, 0, math.MaxInt32)
		c.p.ip.xffHops = int(n)
	}
	if path, v, ok := ip.get("header"); ok {
		c.p.ip.header, _ = c.headerName(path, v)
	} else if source == "header" {
		c.errorf(path, "required field is missing (with source: header)")
	}
}

// headerName decodes an HTTP header name and lower-cases it.
func (c *compiler) headerName(path string, v any) (string, bool) {
	s, ok := c.str(path, v)
	if !ok {
		return "", false
	}
	if !validToken(s) {
		c.errorf(path, "%q is not a valid HTTP header name", s)
		return "", false
	}
	return strings.ToLower(s), true
}

// validToken reports whether s is an HTTP token (RFC 9110 §5.6.2).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

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
		if t, ok := c.throttle(path, v); ok {
			st.throttle = t
			st.throttleKey = c.limitID("stage|" + st.Name + "|" + throttleID(*t))
		}
	}
	var defaults *Throttle
	if path, v, ok := o.get("route_defaults"); ok {
		if rd, ok := c.section(path, v, "throttle"); ok {
			if path, v, ok := rd.get("throttle"); ok {
				defaults, _ = c.throttle(path, v)
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
		r.throttle, _ = c.throttle(path, v)
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

func (c *compiler) plans(path string, v any) {
	names, m := c.entries(path, v)
	for _, name := range names {
		c.plan(field(path, name), name, m[name])
	}
}

func (c *compiler) plan(path, name string, v any) {
	if !validName(name, math.MaxInt) {
		c.errorf(path, "%q is not a valid plan name (letters, digits, \"_\", \".\" and \"-\")", name)
	}
	o, ok := c.section(path, v, "throttle", "quota", "stages")
	if !ok {
		return
	}
	pl := &Plan{Name: name, stages: make(map[*Stage]bool), overrides: make(map[*Route]planOverride)}
	c.p.plans[name] = pl
	pl.usageKey = c.limitID("usage|" + name)
	if path, v, ok := o.get("throttle"); ok {
		if t, ok := c.throttle(path, v); ok {
			pl.throttle = t
			pl.throttleKey = c.limitID("plan|" + name + "|" + throttleID(*t))
		}
	}
	if path, v, ok := o.get("quota"); ok {
		if q, ok := c.quota(path, v); ok {
			pl.quota = q
			pl.quotaKey = c.limitID("quota|" + name)
		}
	}
	spath, sv, _ := o.get("stages")
	for i, item := range c.list(spath, sv) {
		c.planStage(index(spath, i), pl, item)
	}
}

// planStage compiles one item of a plan's stages: "api/stage" or
// {stage, routes}.
func (c *compiler) planStage(path string, pl *Plan, v any) {
	switch s := v.(type) {
	case string:
		c.addPlanStage(path, pl, s)
		return
	case map[string]any, map[any]any:
	default:
		c.typeError(path, v, "\"api/stage\" or a mapping {stage, routes}")
		return
	}
	o, ok := c.object(path, v, "stage", "routes")
	if !ok {
		return
	}
	var st *Stage
	if npath, nv, ok := o.get("stage"); !ok {
		c.errorf(npath, "required field is missing")
	} else if s, ok := c.str(npath, nv); ok {
		st = c.addPlanStage(npath, pl, s)
	}
	rpath, rv, _ := o.get("routes")
	matches, m := c.entries(rpath, rv)
	for _, match := range matches {
		c.planRoute(field(rpath, match), pl, st, match, m[match])
	}
}

// addPlanStage adds the stage named name to pl and returns it; nil when
// there is no such stage or pl has it already.
func (c *compiler) addPlanStage(path string, pl *Plan, name string) *Stage {
	st := c.p.stages[name]
	switch {
	case st == nil:
		c.errorf(path, "%q is not a stage (%s)", name, c.stageList())
		return nil
	case pl.stages[st]:
		c.errorf(path, "%q is listed twice", name)
		return nil
	}
	pl.stages[st] = true
	return st
}

// planRoute compiles a plan's throttle override for one route of st (nil:
// the stage is missing, already reported).
func (c *compiler) planRoute(path string, pl *Plan, st *Stage, match string, v any) {
	var r *Route
	if st != nil {
		if r = c.routes[st][match]; r == nil {
			c.errorf(path, "%q is not a route of stage %s", match, st.Name)
		}
	}
	t, ok := c.throttle(path, v)
	if r == nil || !ok {
		return
	}
	pl.overrides[r] = planOverride{throttle: *t, key: c.limitID("plan|" + pl.Name + "|" + st.Name + "|" + match + "|" + throttleID(*t))}
}

// weekdays lists week_start values from monday; time.Weekday counts from
// sunday.
var weekdays = []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}

func (c *compiler) quota(path string, v any) (*Quota, bool) {
	o, ok := c.object(path, v, "limit", "period", "timezone", "week_start", "anchor_day")
	if !ok {
		return nil, false
	}
	q := &Quota{Location: time.UTC, WeekStart: time.Monday, AnchorDay: 1}
	good := true
	if path, v, ok := o.get("limit"); !ok {
		c.errorf(path, "required field is missing")
		good = false
	} else if q.Limit, ok = c.integer(path, v, 0, math.MaxInt64); !ok {
		good = false
	}
	period := ""
	if path, v, ok := o.get("period"); !ok {
		c.errorf(path, "required field is missing (want day, week or month)")
		good = false
	} else if period, ok = c.choice(path, v, "day", "week", "month"); !ok {
		good = false
	}
	q.Period = map[string]Period{"day": Day, "week": Week, "month": Month}[period]
	if path, v, ok := o.get("timezone"); ok {
		if loc, ok := c.location(path, v); ok {
			q.Location = loc
		} else {
			good = false
		}
	}
	if path, v, ok := o.get("week_start"); ok {
		if period != "week" && period != "" {
			c.errorf(path, "only allowed with period: week")
			good = false
		} else if s, ok := c.choice(path, v, weekdays...); ok {
			q.WeekStart = time.Weekday((slices.Index(weekdays, s) + 1) % 7)
		} else {
			good = false
		}
	}
	if path, v, ok := o.get("anchor_day"); ok {
		if period != "month" && period != "" {
			c.errorf(path, "only allowed with period: month")
			good = false
		} else if n, ok := c.integer(path, v, 1, 31); ok {
			q.AnchorDay = int(n)
		} else {
			good = false
		}
	}
	return q, good
}

// location decodes an IANA time zone name. "Local" is refused: a policy
// must mean the same on every machine.
func (c *compiler) location(path string, v any) (*time.Location, bool) {
	s, ok := c.str(path, v)
	if !ok {
		return nil, false
	}
	if s == "" || s == "Local" {
		c.errorf(path, "%q is not an IANA time zone name such as UTC or Europe/Berlin", s)
		return nil, false
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		c.errorf(path, "%q is not a known IANA time zone", s)
		return nil, false
	}
	return loc, true
}

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

func isMapping(v any) bool {
	switch v.(type) {
	case map[string]any, map[any]any:
		return true
	}
	return false
}

func isList(v any) bool {
	_, ok := v.([]any)
	return ok
}

// planList lists the plans for a message.
func (c *compiler) planList() string {
	if len(c.p.plans) == 0 {
		return "the policy has no usage plans"
	}
	return "plans: " + strings.Join(c.p.PlanNames(), ", ")
}

// sortedStages returns the stages of a plan by name.
func sortedStages(m map[*Stage]bool) []*Stage {
	out := make([]*Stage, 0, len(m))
	for st := range m {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *Stage) int { return strings.Compare(a.Name, b.Name) })
	return out
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

var ruleFields = []string{"name", "ip_set", "rate_based", "scope", "action", "response"}

// rule compiles waf.rules[i]; seen maps the names seen to their index.
func (c *compiler) rule(path string, v any, sets map[string]*ipSet, seen map[string]int, listPath string, i int) (wafRule, bool) {
	var r wafRule
	o, ok := c.object(path, v, ruleFields...)
	if !ok {
		return r, false
	}
	good := true
	if npath, nv, ok := o.get("name"); !ok {
		c.errorf(npath, "required field is missing")
		good = false
	} else if s, ok := c.str(npath, nv); !ok {
		good = false
	} else if !validName(s, math.MaxInt) {
		c.errorf(npath, "%q is not a valid rule name (letters, digits, \"_\", \".\" and \"-\")", s)
		good = false
	} else if j, dup := seen[s]; dup {
		c.errorf(npath, "%q is also the name of %s", s, index(listPath, j))
		good = false
	} else {
		seen[s] = i
		r.name, r.reason = s, Reason("waf:"+s)
	}
	action := ""
	if apath, av, ok := o.get("action"); !ok {
		c.errorf(apath, "required field is missing (want block, allow or count)")
		good = false
	} else if action, ok = c.choice(apath, av, "block", "allow", "count"); !ok {
		good = false
	}
	r.action = map[string]wafAction{"block": wafBlock, "allow": wafAllow, "count": wafCount}[action]

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
	if action == "block" {
		r.status, r.body = 403, BodyForbidden
	}
	if rspath, rsv, ok := o.get("response"); ok {
		if action != "block" && action != "" {
			c.errorf(rspath, "only allowed with action: block")
			good = false
		} else if ro, ok := c.object(rspath, rsv, "status", "body"); ok {
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
		} else {
			good = false
		}
	}
	return r, good
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
