package policy

import (
	"math"
	"strings"
)

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
	// used only with their own: the specification's example writes all three.
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
