package policy

// RateBucket is one of a policy's shared token buckets: the account's, a
// stage's or a route's (a plan's buckets are one per customer, so they are
// not listed).
type RateBucket struct {
	// Tier is TierAccount, TierStage or TierRoute.
	Tier Tier
	// API and Stage name the stage of a stage or route bucket; Route is a
	// route bucket's match string. Each is empty above the bucket's tier.
	API, Stage, Route string
	Throttle          Throttle
}

// RateBuckets returns the account, stage and route buckets of p: the
// account's first, then each stage's and its routes' in the order of the
// stages' names and of the routes in the file. A decision names the stage
// and route buckets it met by their position in this list
// (Decision.StageBucket and RouteBucket), so that a caller can keep data
// per bucket in a slice built once per policy. The list is shared: callers
// must not modify it.
func (p *Policy) RateBuckets() []RateBucket { return p.buckets }

// listBuckets fills p.buckets and numbers the stages' and routes' buckets;
// Compile calls it on a policy without errors.
func (p *Policy) listBuckets() {
	if p.account != nil {
		p.buckets = append(p.buckets, RateBucket{Tier: TierAccount, Throttle: *p.account})
	}
	for _, name := range p.StageNames() {
		st := p.stages[name]
		if st.throttle != nil {
			p.buckets = append(p.buckets, RateBucket{Tier: TierStage, API: st.API, Stage: st.Stage, Throttle: *st.throttle})
			st.bucket = len(p.buckets)
		}
		for _, r := range st.routeList {
			if r.throttle != nil {
				p.buckets = append(p.buckets, RateBucket{Tier: TierRoute, API: st.API, Stage: st.Stage, Route: r.Match, Throttle: *r.throttle})
				r.bucket = len(p.buckets)
			}
		}
	}
}
