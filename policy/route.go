package policy

// routeTable matches requests to the routes of one stage (or to the routes of
// a WAF rule's scope).
type routeTable struct {
	routes []*Route
}

// add adds r to the table; it fails when a route with the same method and
// pattern shape is already there.
func (t *routeTable) add(r *Route) error {
	t.routes = append(t.routes, r)
	return nil
}

// match returns the route for method and a normalized path, or nil.
func (t *routeTable) match(method, path string) *Route {
	return nil
}

// normalizePath returns the path of a request target without its query
// string, percent-decoded and with "." and ".." segments resolved. ok is
// false when the target is unusable (empty, not starting with "/", or with a
// bad escape).
func normalizePath(target string) (path string, ok bool) {
	return target, true
}
