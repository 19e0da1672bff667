package policy

import (
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Bounds of a webhook's timeout, and its default.
const (
	defaultSinkTimeout = 5 * time.Second
	minSinkTimeout     = 100 * time.Millisecond
	maxSinkTimeout     = time.Minute
)

// notifications compiles {sinks: name: {webhook: {url, secret_file,
// timeout}}}.
func (c *compiler) notifications(path string, v any) {
	o, ok := c.section(path, v, "sinks")
	if !ok {
		return
	}
	spath, sv, _ := o.get("sinks")
	names, m := c.entries(spath, sv)
	c.sinkNames = make(map[string]bool, len(names))
	for _, name := range names {
		c.sinkNames[name] = true
		if s, ok := c.sink(field(spath, name), name, m[name]); ok {
			c.p.sinks = append(c.p.sinks, s)
		}
	}
}

func (c *compiler) sink(path, name string, v any) (Sink, bool) {
	good := true
	if !validName(name, math.MaxInt) {
		c.errorf(path, "%q is not a valid sink name (letters, digits, \"_\", \".\" and \"-\")", name)
		good = false
	}
	o, ok := c.object(path, v, "webhook")
	if !ok {
		return Sink{}, false
	}
	wpath, wv, ok := o.get("webhook")
	if !ok {
		c.errorf(wpath, "required field is missing")
		return Sink{}, false
	}
	w, ok := c.object(wpath, wv, "url", "secret_file", "timeout")
	if !ok {
		return Sink{}, false
	}
	s := Sink{Name: name, Timeout: defaultSinkTimeout}
	if path, v, ok := w.get("url"); !ok {
		c.errorf(path, "required field is missing")
		good = false
	} else if s.URL, ok = c.webhookURL(path, v); !ok {
		good = false
	}
	if path, v, ok := w.get("secret_file"); ok {
		if s.SecretFile, ok = c.str(path, v); !ok {
			good = false
		} else if s.SecretFile == "" || strings.ContainsRune(s.SecretFile, 0) {
			c.errorf(path, "%q is not a file path", s.SecretFile)
			good = false
		}
	}
	if path, v, ok := w.get("timeout"); ok {
		if s.Timeout, ok = c.duration(path, v, minSinkTimeout, maxSinkTimeout); !ok {
			good = false
		}
	}
	return s, good
}

// shownURL is s as an error shows it: a webhook URL often holds a token, in
// its user info or its query, which are left out.
func shownURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(not a URL)"
	}
	if u.User != nil || u.RawQuery != "" {
		u.User, u.RawQuery, u.ForceQuery = nil, "", false
		return u.String() + " (user info and query left out)"
	}
	return s
}

// webhookURL decodes an absolute http or https URL with a host.
func (c *compiler) webhookURL(path string, v any) (string, bool) {
	s, ok := c.str(path, v)
	if !ok {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Hostname() == "" {
		c.errorf(path, "%q is not an absolute http or https URL such as https://hooks.example.com/tollgate", shownURL(s))
		return "", false
	}
	return s, true
}

// duration decodes a duration such as "5s" in lo..hi.
func (c *compiler) duration(path string, v any, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := v.(string)
	if !ok {
		c.typeError(path, v, "a duration such as 5s or 1m")
		return 0, false
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		c.errorf(path, "%q is not a duration such as 5s or 1m", s)
	case d < lo || d > hi:
		c.errorf(path, "%q is not between %s and %s", s, shortDuration(lo), shortDuration(hi))
	default:
		return d, true
	}
	return 0, false
}

// shortDuration writes d as a message shows it: 1m rather than 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// alerts compiles a plan's {thresholds, forecast, sinks}; hasQuota says
// whether the plan writes a quota (a bad one is reported on its own). It
// returns nil when the alerts are not valid.
func (c *compiler) alerts(path string, v any, hasQuota bool) *Alerts {
	o, ok := c.object(path, v, "thresholds", "forecast", "sinks")
	if !ok {
		return nil
	}
	a := &Alerts{}
	good := true
	if !hasQuota {
		c.errorf(path, "alerts need a quota: the plan has none")
		good = false
	}
	tpath, tv, _ := o.get("thresholds")
	goodThresholds := true
	for i, item := range c.list(tpath, tv) {
		// A threshold above 100 could never be reached: a denied request
		// takes nothing, so use never passes the limit.
		n, ok := c.integer(index(tpath, i), item, 1, 100)
		switch {
		case !ok:
			goodThresholds = false
		case slices.Contains(a.Thresholds, int(n)):
			c.errorf(index(tpath, i), "%d is listed twice", n)
			goodThresholds = false
		default:
			a.Thresholds = append(a.Thresholds, int(n))
		}
	}
	slices.Sort(a.Thresholds)
	goodForecast := true
	if path, v, ok := o.get("forecast"); ok {
		a.Forecast, goodForecast = c.boolean(path, v)
	}
	if goodThresholds && goodForecast && len(a.Thresholds) == 0 && !a.Forecast {
		c.errorf(path, "no thresholds and no forecast: true: the alerts would never fire")
	}
	good = good && goodThresholds && goodForecast && (len(a.Thresholds) > 0 || a.Forecast)
	spath, sv, ok := o.get("sinks")
	if !ok {
		c.errorf(spath, "required field is missing (%s)", c.sinkList())
		return nil
	}
	items := c.list(spath, sv)
	if len(items) == 0 && (sv == nil || isList(sv)) {
		c.errorf(spath, "the list is empty: name at least one sink (%s)", c.sinkList())
		good = false
	}
	for i, item := range items {
		ipath := index(spath, i)
		name, ok := c.str(ipath, item)
		switch {
		case !ok:
			good = false
		case !c.sinkNames[name]:
			c.errorf(ipath, "%q is not a sink (%s)", name, c.sinkList())
			good = false
		case slices.Contains(a.Sinks, name):
			c.errorf(ipath, "%q is listed twice", name)
			good = false
		default:
			a.Sinks = append(a.Sinks, name)
		}
	}
	if !good {
		return nil
	}
	return a
}

// sinkList lists the sinks for a message.
func (c *compiler) sinkList() string {
	if len(c.sinkNames) == 0 {
		return "the policy has no notifications.sinks"
	}
	return "sinks: " + strings.Join(sortedNames(c.sinkNames), ", ")
}
