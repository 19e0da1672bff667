package policy

import (
	"math"
	"slices"
	"strings"
	"time"
)

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
	o, ok := c.section(path, v, "throttle", "quota", "stages", "alerts", "mode")
	if !ok {
		return
	}
	pl := &Plan{Name: name, stages: make(map[*Stage]bool), overrides: make(map[*Route]planOverride)}
	c.p.plans[name] = pl
	pl.usageKey = c.limitID("usage|" + name)
	// The plan's mode is the default of its limits' own.
	pl.shadow, _ = c.mode(o, false)
	if path, v, ok := o.get("throttle"); ok {
		if t, ok := c.throttle(path, v, pl.shadow); ok {
			pl.throttle = t
			pl.throttleKey = c.limitID("plan|" + name + "|" + throttleID(*t))
		}
	}
	if path, v, ok := o.get("quota"); ok {
		if q, ok := c.quota(path, v, pl.shadow); ok {
			pl.quota = q
			pl.quotaKey = c.limitID("quota|" + name)
		}
	}
	if path, v, ok := o.get("alerts"); ok {
		_, _, hasQuota := o.get("quota")
		pl.alerts = c.alerts(path, v, hasQuota)
		if pl.quota != nil && pl.quota.Shadow {
			// Alerts follow what customers are held to.
			c.errorf(path, "needs an enforced quota: usage_plans.%s.quota is in shadow mode, so its alerts would never fire", name)
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
	t, ok := c.throttle(path, v, pl.shadow)
	if r == nil || !ok {
		return
	}
	pl.overrides[r] = planOverride{throttle: *t, key: c.limitID("plan|" + pl.Name + "|" + st.Name + "|" + match + "|" + throttleID(*t))}
}

// weekdays lists week_start values from monday; time.Weekday counts from
// sunday.
var weekdays = []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}

// quota decodes {limit, period, timezone, week_start, anchor_day, mode};
// mode defaults to shadow's value (the plan's mode).
func (c *compiler) quota(path string, v any, shadow bool) (*Quota, bool) {
	o, ok := c.object(path, v, "limit", "period", "timezone", "week_start", "anchor_day", "mode")
	if !ok {
		return nil, false
	}
	q := &Quota{Location: time.UTC, WeekStart: time.Monday, AnchorDay: 1}
	var good bool
	q.Shadow, good = c.mode(o, shadow)
	c.noteShadow(path, q.Shadow)
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
