package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Request is what the decision needs to know of one HTTP request. The
// translators in envoy/ fill it from Envoy's messages without copying.
type Request struct {
	// Method and Path as the client sent them; Path may hold a query
	// string and percent-escapes.
	Method string
	Path   string
	// Host is the :authority, possibly with a port.
	Host string
	// Headers holds the request headers with lower-case names; repeated
	// headers joined with ",".
	Headers map[string]string
	// Peer is the address of the TCP peer Envoy saw (an IP, possibly
	// with a port).
	Peer string
	// API and Stage are the stage Envoy named (ext_authz context
	// extensions); empty when it named none. Stage may also be "api/stage".
	API, Stage string
	// Lease is set by callers that see the end of the request (ext_proc):
	// a unique id under which the request may hold a concurrency slot of
	// its route (package doc, "The decision", step 6), released with State.Release. Empty: no
	// concurrency cap applies (ext_authz).
	Lease string
	// Deadline is when the answers of a store shared with other replicas
	// (Redis) are due: the decision's budget, which its key lookup and its
	// state step share. Zero: each call has the store's own budget. Stores
	// that keep their state in this process ignore it.
	Deadline time.Time
}

// clientIP returns the client address by the policy's ip source.
func (p *Policy) clientIP(r *Request) (ip netip.Addr, raw string, ok bool) {
	raw = r.Peer
	switch p.ip.kind {
	case ipXFF:
		if xff, ok := r.Headers["x-forwarded-for"]; ok {
			if v, ok := xffEntry(xff, p.ip.xffHops); ok {
				raw = v
			}
		}
	case ipHeader:
		if v, ok := r.Headers[p.ip.header]; ok {
			raw = v
		}
	}
	ip, ok = parseIP(raw)
	return ip, raw, ok
}

// invalidTarget says what is unreadable in a request's method and target
// (Decision.Invalid): the method is empty, or normalizeTarget refused the
// target for f.
func invalidTarget(method, target string, f pathFault) string {
	path, _, _ := strings.Cut(target, "?")
	path, _, _ = strings.Cut(path, "#")
	switch {
	case method == "" && target == "":
		return "no method and no path (no HTTP request attributes?)"
	case method == "":
		return "no method"
	}
	switch f {
	case pathEmpty:
		return "no path"
	case pathRelative:
		return fmt.Sprintf("path %q does not start with \"/\"", clip(path))
	case pathNUL:
		return "path holds a NUL byte"
	case pathSlash:
		return fmt.Sprintf("path %q holds an escaped slash (%%2F)", clip(path))
	case pathDotParams:
		return fmt.Sprintf("path %q has a dot segment with parameters (\"..;\"), which servers read in different ways", clip(path))
	case pathDots:
		return fmt.Sprintf("path %q has \"..\" after an empty segment, which servers read in different ways", clip(path))
	}
	return fmt.Sprintf("path %q holds a bad escape", clip(path))
}

// invalidAddr says why a client address is unreadable (Decision.Invalid).
func invalidAddr(raw string) string {
	if strings.TrimSpace(raw) == "" {
		return "no client address"
	}
	return fmt.Sprintf("client address %q is not an IP address", clip(raw))
}

// clip shortens s, which a client sent, to at most 64 bytes for a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// xffEntry returns the entry hops places from the right end of an
// X-Forwarded-For value; ok is false when there are not that many.
func xffEntry(xff string, hops int) (string, bool) {
	end := len(xff)
	for i := len(xff) - 1; i >= -1; i-- {
		if i >= 0 && xff[i] != ',' {
			continue
		}
		if hops == 0 {
			return xff[i+1 : end], true
		}
		hops--
		end = i
	}
	return "", false
}

// parseIP parses an address with or without a port ("192.0.2.1",
// "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]:80"). It picks the form
// first, so that the common address with a port costs no failed parse (and
// no error allocation). The address is returned without its zone
// (fe80::1%eth0 is fe80::1): the zone names the receiving host's interface,
// not the client, and a zoned address would be counted apart.
func parseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	var a netip.Addr
	var err error
	if withPort := strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1; withPort {
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	} else {
		a, err = netip.ParseAddr(s)
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// stageFor returns the stage a request belongs to (package doc, "Stage and route"). known is false
// when Envoy named a stage the policy does not have.
func (p *Policy) stageFor(r *Request) (s *Stage, known bool) {
	if r.API != "" || r.Stage != "" {
		s := p.namedStage(r.API, r.Stage)
		return s, s != nil
	}
	if len(p.hosts) > 0 && r.Host != "" {
		if s, ok := p.hosts[hostName(r.Host)]; ok {
			return s, true
		}
	}
	return p.defaultStage, true
}

// namedStage finds the stage Envoy named by api and stage; stage may be
// "api/stage" on its own.
func (p *Policy) namedStage(apiName, stage string) *Stage {
	if apiName == "" {
		if strings.IndexByte(stage, '/') >= 0 {
			return p.stages[stage]
		}
		if len(p.apis) != 1 {
			return nil
		}
		for _, a := range p.apis {
			apiName = a.name
		}
	}
	a := p.apis[apiName]
	if a == nil {
		return nil
	}
	if stage == "" {
		if len(a.stages) == 1 {
			return a.stages[0]
		}
		if p.defaultStage != nil && p.defaultStage.API == apiName {
			return p.defaultStage
		}
		return nil
	}
	for _, s := range a.stages {
		if s.Stage == stage {
			return s
		}
	}
	return nil
}

// hostName returns host without its port, lower-case.
func hostName(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	// The fully qualified spelling names the same host: "api.example.com."
	// must not fall out of its api.
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if 'A' <= host[i] && host[i] <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}
