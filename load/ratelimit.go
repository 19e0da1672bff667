package load

import (
	"context"
	"fmt"
	"math"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	"github.com/tollgate/tollgate/policy"
)

// RateLimitDomain is the domain of the ratelimit mode's requests and of
// RateLimitConfig's limits: what the domain of Envoy's rate limit filter
// would be set to.
const RateLimitDomain = "tollgate-load"

// The descriptor keys of the ratelimit mode: a request with a key sends
// [(api_key, its id)], one without [(route, its route's match string)].
const (
	DescriptorKey   = "api_key"
	DescriptorRoute = "route"
)

// rateLimitSender sends envoyproxy/ratelimit's ShouldRateLimit with one
// descriptor a request, as Envoy's rate limit filter would with one rate
// limit action: the key's id for a keyed request (an Envoy that has mapped
// the key to its id, so that no key value reaches the configuration), the
// route for the others. ratelimit has no WAF, so a blocked address's
// request is its route's like any other, and no key check, so an invalid
// key's request names an id that no limit matches. The request is built
// once and only its descriptor's entry is set per request, as the answer
// has been read by the time ShouldRateLimit returns.
type rateLimitSender struct {
	client rlsv3.RateLimitServiceClient
	req    *rlsv3.RateLimitRequest
	entry  *ratelimitv3.RateLimitDescriptor_Entry
}

func newRateLimitSender(cc *grpc.ClientConn) *rateLimitSender {
	entry := &ratelimitv3.RateLimitDescriptor_Entry{}
	return &rateLimitSender{client: rlsv3.NewRateLimitServiceClient(cc), entry: entry, req: &rlsv3.RateLimitRequest{
		Domain:      RateLimitDomain,
		Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{entry}}},
	}}
}

// send asks for req's descriptor; OK is 200, OVER_LIMIT 429.
func (s *rateLimitSender) send(ctx context.Context, req request, _ string) (int, error) {
	if req.key != "" {
		s.entry.Key, s.entry.Value = DescriptorKey, req.id
	} else {
		s.entry.Key, s.entry.Value = DescriptorRoute, req.route
	}
	resp, err := s.client.ShouldRateLimit(ctx, s.req)
	if err != nil {
		return 0, err
	}
	switch code := resp.GetOverallCode(); code {
	case rlsv3.RateLimitResponse_OK:
		return 200, nil
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		return 429, nil
	default:
		return 0, fmt.Errorf("ratelimit answered %s", code)
	}
}

// rlConfig is an envoyproxy/ratelimit configuration file: a domain and
// its descriptors, each with at most one fixed-window limit.
type rlConfig struct {
	Domain      string         `yaml:"domain"`
	Descriptors []rlDescriptor `yaml:"descriptors"`
}

// rlDescriptor is one descriptor of an rlConfig; without a limit, requests
// that match it are not limited.
type rlDescriptor struct {
	Key       string   `yaml:"key"`
	Value     string   `yaml:"value"`
	RateLimit *rlLimit `yaml:"rate_limit,omitempty"`
}

// rlLimit is a fixed window: RequestsPerUnit requests a Unit (second,
// minute, hour or day), counted from the window's start.
type rlLimit struct {
	Unit            string `yaml:"unit"`
	RequestsPerUnit uint32 `yaml:"requests_per_unit"`
}

// RateLimitConfig returns the configuration file (YAML) for
// envoyproxy/ratelimit that matches the ratelimit mode's requests under p:
// domain RateLimitDomain, one descriptor per load key (api_key KeyID(i),
// i < keys) with the throttle of the usage plan named plan (the plan that
// Prepare gave them), and one per route bucket of p's default stage (route
// = the route's match string) with the route's throttle. Each throttle
// becomes a fixed window of the same rate (fixedWindow); its burst, the
// plan's quota and the stage's and account's buckets have no counterpart.
func RateLimitConfig(p *policy.Policy, keys int, plan string) ([]byte, error) {
	pl, err := planOf(p)
	if err != nil {
		return nil, err
	}
	up := p.Plan(plan)
	if up == nil {
		return nil, fmt.Errorf("load: plan %q is not in the policy (plans: %v)", plan, p.PlanNames())
	}
	var keyLimit *rlLimit
	if t, ok := up.Throttle(); ok {
		keyLimit = fixedWindow(t)
	}
	c := rlConfig{Domain: RateLimitDomain, Descriptors: make([]rlDescriptor, 0, keys+8)}
	for i := range keys {
		c.Descriptors = append(c.Descriptors, rlDescriptor{Key: DescriptorKey, Value: KeyID(i), RateLimit: keyLimit})
	}
	for _, b := range p.RateBuckets() {
		if b.Tier == policy.TierRoute && b.API == pl.api && b.Stage == pl.stage {
			c.Descriptors = append(c.Descriptors, rlDescriptor{Key: DescriptorRoute, Value: b.Route, RateLimit: fixedWindow(b.Throttle)})
		}
	}
	return yaml.Marshal(c)
}

// fixedWindow returns the fixed window of t's rate in the shortest of
// ratelimit's units that holds at least one request (a day at the
// longest): 1,000 a second stays 1,000 a second, 0.5 a second becomes 30 a
// minute.
func fixedWindow(t policy.Throttle) *rlLimit {
	unit, seconds := "day", uint64(86400)
	for _, u := range []struct {
		name    string
		seconds uint64
	}{{"second", 1}, {"minute", 60}, {"hour", 3600}} {
		if t.RateMicro*u.seconds >= 1_000_000 {
			unit, seconds = u.name, u.seconds
			break
		}
	}
	n := t.RateMicro * seconds / 1_000_000
	return &rlLimit{Unit: unit, RequestsPerUnit: uint32(min(max(n, 1), math.MaxUint32))}
}
