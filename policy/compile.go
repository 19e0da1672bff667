package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
)

// Compile decodes, validates and compiles a policy document: the generic
// tree a YAML or JSON decoder produces from the policy file (package doc)
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
	c.p.listBuckets()
	return c.p, nil
}

// compiler holds the state of one Compile.
type compiler struct {
	decoder
	p *Policy

	routes       map[*Stage]map[string]*Route // by match string as written
	hostOwner    map[string]string            // host -> api
	defaultStage string                       // default_stage as written, when a string
	sinkNames    map[string]bool              // notifications.sinks as written, good or bad
}

var topFields = []string{"version", "account", "clients", "headers", "explain", "apis", "default_stage", "usage_plans", "api_keys", "waf", "notifications"}

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
				if t, ok := c.throttle(path, v, false); ok {
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
	if path, v, ok := o.get("notifications"); ok {
		c.notifications(path, v) // before the plans, whose alerts name sinks
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

// throttle decodes {rate, burst, mode}: rate and burst required, mode
// (enforce or shadow) defaulting to shadow's value (a plan's mode).
func (c *compiler) throttle(path string, v any, shadow bool) (*Throttle, bool) {
	o, ok := c.object(path, v, "rate", "burst", "mode")
	if !ok {
		return nil, false
	}
	shadow, good := c.mode(o, shadow)
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
	t.Shadow = shadow
	c.noteShadow(path, shadow)
	return &t, true
}

// noteShadow records that the limit at path is in shadow mode, when it is
// (Policy.ShadowLimits).
func (c *compiler) noteShadow(path string, shadow bool) {
	if shadow {
		c.p.shadowLimits = append(c.p.shadowLimits, path)
	}
}

// mode decodes the optional field mode of o (SPEC §10): enforce or shadow.
// It returns whether the limit is a shadow one, dflt when mode is not
// there, and false when mode is bad (reported).
func (c *compiler) mode(o object, dflt bool) (shadow, good bool) {
	path, v, ok := o.get("mode")
	if !ok {
		return dflt, true
	}
	s, ok := c.choice(path, v, "enforce", "shadow")
	return s == "shadow", ok
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
