package envoy

import (
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/tollgate/tollgate/policy"
)

// Header names tollgate sets, lower case as Envoy sends them on the wire.
const (
	// Upstream request headers of an allowed request made with a key.
	HeaderCustomer = "x-tollgate-customer"
	HeaderKeyID    = "x-tollgate-key-id"
	HeaderPlan     = "x-tollgate-plan"
	// HeaderShadow lists the shadow limits that would have denied an
	// allowed request (SPEC §10), comma-separated.
	HeaderShadow = "x-tollgate-shadow"

	// Denial headers.
	HeaderContentType = "content-type"
	HeaderReason      = "x-tollgate-reason"
	HeaderRetryAfter  = "retry-after"
	// HeaderGRPCStatus is the status a gRPC caller behind Envoy's ext_authz
	// sees: Envoy keeps it in its local reply instead of mapping the HTTP
	// status (which makes 429 UNAVAILABLE and 400 INTERNAL).
	HeaderGRPCStatus = "grpc-status"

	// Rate-limit headers, headers: ietf
	// (draft-ietf-httpapi-ratelimit-headers-10).
	HeaderRateLimitPolicy = "ratelimit-policy"
	HeaderRateLimit       = "ratelimit"

	// Rate-limit headers, headers: legacy.
	HeaderXRateLimitLimit     = "x-ratelimit-limit"
	HeaderXRateLimitRemaining = "x-ratelimit-remaining"
	HeaderXRateLimitReset     = "x-ratelimit-reset"
)

// contentTypeJSON is the content type of every denial body.
const contentTypeJSON = "application/json"

// Header counts: the rate-limit headers of headers: both, the four
// upstream headers of an allow, the four fixed headers of a denial (with
// grpc-status for a gRPC request over ext_authz); the headers an allow
// removes upstream: its four and the API key header.
const (
	maxRateHeaders = 5
	maxHeaders     = 4 + maxRateHeaders
	maxRemove      = 5
)

// header is one header of an answer. A value built from numbers is
// buf[lo:hi] of the buffer it was built in until resolve sets value.
type header struct {
	name   string
	value  string
	lo, hi int
	built  bool
}

// headerList collects the headers of one answer without allocating: the
// values built from numbers go to one byte buffer that becomes one string.
type headerList struct {
	h [maxHeaders]header
	n int
}

func (l *headerList) add(name, value string) {
	l.h[l.n] = header{name: name, value: value}
	l.n++
}

// addBuilt adds a header whose value is buf[lo:].
func (l *headerList) addBuilt(name string, lo int, buf []byte) {
	l.h[l.n] = header{name: name, lo: lo, hi: len(buf), built: true}
	l.n++
}

// resolve sets the built values from buf, with one allocation for all.
func (l *headerList) resolve(buf []byte) {
	if len(buf) == 0 {
		return
	}
	s := string(buf)
	for i := 0; i < l.n; i++ {
		if h := &l.h[i]; h.built {
			h.value = s[h.lo:h.hi]
		}
	}
}

// list returns the headers added so far.
func (l *headerList) list() []header { return l.h[:l.n] }

// appendRateLimitHeaders adds the rate-limit headers of d by its header
// mode to l, building their values into buf.
func appendRateLimitHeaders(l *headerList, buf []byte, d *policy.Decision) []byte {
	limits := d.AppliedLimits()
	if len(limits) == 0 {
		return buf
	}
	if d.Headers == policy.HeadersIETF || d.Headers == policy.HeadersBoth {
		lo := len(buf)
		for i := range limits {
			if i > 0 {
				buf = append(buf, ", "...)
			}
			buf = appendItem(buf, limits[i].Tier)
			buf = append(buf, ";q="...)
			buf = strconv.AppendInt(buf, max(limits[i].Quota, 0), 10)
			buf = append(buf, ";w="...)
			buf = strconv.AppendInt(buf, max(ceilSeconds(limits[i].Window), 1), 10)
		}
		l.addBuilt(HeaderRateLimitPolicy, lo, buf)
		lo = len(buf)
		for i := range limits {
			if i > 0 {
				buf = append(buf, ", "...)
			}
			buf = appendItem(buf, limits[i].Tier)
			buf = append(buf, ";r="...)
			buf = strconv.AppendInt(buf, max(limits[i].Remaining, 0), 10)
			buf = append(buf, ";t="...)
			buf = strconv.AppendInt(buf, ceilSeconds(limits[i].Reset), 10)
		}
		l.addBuilt(HeaderRateLimit, lo, buf)
	}
	if d.Headers == policy.HeadersLegacy || d.Headers == policy.HeadersBoth {
		first := &limits[0]
		lo := len(buf)
		buf = strconv.AppendInt(buf, max(first.Quota, 0), 10)
		l.addBuilt(HeaderXRateLimitLimit, lo, buf)
		lo = len(buf)
		buf = strconv.AppendInt(buf, max(first.Remaining, 0), 10)
		l.addBuilt(HeaderXRateLimitRemaining, lo, buf)
		lo = len(buf)
		buf = strconv.AppendInt(buf, ceilSeconds(first.Reset), 10)
		l.addBuilt(HeaderXRateLimitReset, lo, buf)
	}
	return buf
}

// appendItem appends a limit's name as a structured-field string.
func appendItem(buf []byte, t policy.Tier) []byte {
	buf = append(buf, '"')
	buf = append(buf, t.String()...)
	return append(buf, '"')
}

// ceilSeconds returns d in whole seconds, rounded up; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d-1)/time.Second) + 1
}

// appendDenialHeaders adds the headers of a denial to l: content type,
// reason (key:* reasons only with explain), Retry-After on 429 and 503 and
// the rate-limit headers.
func appendDenialHeaders(l *headerList, buf []byte, d *policy.Decision) []byte {
	l.add(HeaderContentType, contentTypeJSON)
	if d.Reason != policy.ReasonNone && (!d.Reason.IsKey() || d.Explain) {
		l.add(HeaderReason, string(d.Reason))
	}
	if st := denialStatus(d); st == 429 || st == 503 {
		lo := len(buf)
		buf = strconv.AppendInt(buf, max(ceilSeconds(d.RetryAfter), 1), 10)
		l.addBuilt(HeaderRetryAfter, lo, buf)
	}
	return appendRateLimitHeaders(l, buf, d)
}

// denialStatus returns the HTTP status of a denial; 403 when unset.
func denialStatus(d *policy.Decision) int {
	if d.Status <= 0 {
		return 403
	}
	return d.Status
}

// grpcCode returns the CheckResponse status code of an HTTP denial status.
// Envoy only tells OK from not OK; the code shows in its logs.
func grpcCode(status int) codes.Code {
	switch status {
	case 400:
		return codes.InvalidArgument
	case 429:
		return codes.ResourceExhausted
	case 503:
		return codes.Unavailable
	default:
		return codes.PermissionDenied
	}
}

// grpcStatusText holds the grpc-status values of grpcCode's codes.
var grpcStatusText = map[codes.Code]string{
	codes.InvalidArgument:   strconv.Itoa(int(codes.InvalidArgument)),
	codes.ResourceExhausted: strconv.Itoa(int(codes.ResourceExhausted)),
	codes.Unavailable:       strconv.Itoa(int(codes.Unavailable)),
	codes.PermissionDenied:  strconv.Itoa(int(codes.PermissionDenied)),
}

// denialAnswer returns the body of a denial and, for a gRPC request, adds
// grpc-status to l: a gRPC caller behind Envoy gets Envoy's local reply,
// which keeps that header (else it maps the HTTP status: 429 would be
// UNAVAILABLE, 400 INTERNAL) and makes the body its message, so the body is
// the message alone ("Too Many Requests").
func denialAnswer(l *headerList, d *policy.Decision, grpc bool) string {
	if !grpc {
		return d.Body
	}
	status := denialStatus(d)
	l.add(HeaderGRPCStatus, grpcStatusText[grpcCode(status)])
	return denialMessage(d.Body, status)
}

// isGRPC reports whether a request with this content type is a gRPC call:
// application/grpc, or application/grpc+ and a codec, as Envoy tells
// (Grpc::Common::hasGrpcContentType; application/grpc-web is not gRPC).
func isGRPC(contentType string) bool {
	rest, ok := strings.CutPrefix(contentType, "application/grpc")
	return ok && (rest == "" || rest[0] == '+')
}

// allowHeaders adds the headers of an allowed request to l: first the
// upstream request headers (the key's customer, id and plan), up of them,
// then the rate-limit headers for the client's response; it resolves l and
// returns up and the upstream headers to remove, appended to remove.
func allowHeaders(l *headerList, buf []byte, d *policy.Decision, remove []string) (up int, _ []string) {
	if d.KeyID != "" {
		l.add(HeaderCustomer, d.Customer)
		l.add(HeaderKeyID, d.KeyID)
		l.add(HeaderPlan, d.Plan)
	} else {
		remove = append(remove, HeaderCustomer, HeaderKeyID, HeaderPlan)
	}
	if d.Shadow != "" {
		l.add(HeaderShadow, d.Shadow)
	} else {
		remove = append(remove, HeaderShadow)
	}
	if d.StripKey && d.KeyHeader != "" {
		remove = append(remove, d.KeyHeader)
	}
	up = l.n
	buf = appendRateLimitHeaders(l, buf, d)
	l.resolve(buf)
	return up, remove
}

// denialHeaders adds the headers of a denial to l and resolves it.
func denialHeaders(l *headerList, buf []byte, d *policy.Decision) {
	l.resolve(appendDenialHeaders(l, buf, d))
}

// reply holds every message of one CheckResponse, with room for the
// headers of most answers (5: a keyed allow's 3 upstream and 2 rate-limit
// headers), so that such an answer is one allocation plus its header
// values; a larger one takes one more (make). Room for the largest answer's
// 9 headers in every reply was most of the bytes a decision allocated.
type reply struct {
	resp     authv3.CheckResponse
	status   statuspb.Status
	ok       authv3.OkHttpResponse
	okOf     authv3.CheckResponse_OkResponse
	denied   authv3.DeniedHttpResponse
	deniedOf authv3.CheckResponse_DeniedResponse
	http     typev3.HttpStatus
	remove   [maxRemove]string
	inline   headerBlock[[inlineHeaders]headerSlot, [inlineHeaders]*corev3.HeaderValueOption]
	slots    []headerSlot
	ptrs     []*corev3.HeaderValueOption
	n        int // slots used
}

// inlineHeaders is the room for headers in a reply itself.
const inlineHeaders = 5

// headerSlot is one header of an answer as Envoy's messages hold it.
type headerSlot struct {
	opt corev3.HeaderValueOption
	val corev3.HeaderValue
}

// headerBlock holds headers' messages and the pointers to them.
type headerBlock[S, P any] struct {
	s S
	p P
}

// make makes room in r for n headers: its own, or a block of the largest
// answer's.
func (r *reply) make(n int) {
	if n <= inlineHeaders {
		r.slots, r.ptrs = r.inline.s[:], r.inline.p[:]
		return
	}
	b := new(headerBlock[[maxHeaders]headerSlot, [maxHeaders]*corev3.HeaderValueOption])
	r.slots, r.ptrs = b.s[:], b.p[:]
}

// options turns hs into header options that overwrite (or add), appended
// after those already used, and returns them; make made room for them.
func (r *reply) options(hs []header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	lo := r.n
	for _, h := range hs {
		sl := &r.slots[r.n]
		sl.val.Key, sl.val.Value = h.name, h.value
		sl.opt.Header = &sl.val
		sl.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		r.ptrs[r.n] = &sl.opt
		r.n++
	}
	return r.ptrs[lo:r.n:r.n]
}

// CheckResponse translates a decision on an HTTP request into Envoy's answer
// (package doc, "Responses"); checkResponse also answers gRPC requests.
func CheckResponse(d *policy.Decision) *authv3.CheckResponse { return checkResponse(d, false) }

// checkResponse translates a decision into Envoy's answer (package doc, "Responses").
//
// An allowed request gets status OK and an ok_response: the upstream
// headers x-tollgate-customer, x-tollgate-key-id and x-tollgate-plan when a
// key was used, else those three names in headers_to_remove (so that a
// client cannot send them upstream itself); x-tollgate-shadow when a
// shadow limit would have denied it, else that name in headers_to_remove;
// the API key header in
// headers_to_remove when d.StripKey; the rate-limit headers in
// response_headers_to_add.
//
// A denied request gets INVALID_ARGUMENT (400), RESOURCE_EXHAUSTED (429),
// UNAVAILABLE (503) or PERMISSION_DENIED (403 and other statuses) and a
// denied_response with the HTTP status, the body and the headers content-type,
// x-tollgate-reason (key:* reasons only when d.Explain), retry-after on 429
// and 503 and the rate-limit
// headers. Every header overwrites one of the same name. A denial of a gRPC
// request (grpc) also carries grpc-status, and its body is the message alone
// ("Too Many Requests"), which Envoy makes the caller's grpc-message.
func checkResponse(d *policy.Decision, grpc bool) *authv3.CheckResponse {
	var arr [512]byte
	buf := arr[:0]
	var hs headerList
	r := new(reply)
	r.resp.Status = &r.status

	if d.Verdict == policy.Allow {
		r.status.Code = int32(codes.OK)
		up, remove := allowHeaders(&hs, buf, d, r.remove[:0])
		all := hs.list()
		r.make(len(all))
		r.ok.Headers = r.options(all[:up])
		r.ok.ResponseHeadersToAdd = r.options(all[up:])
		if len(remove) > 0 {
			r.ok.HeadersToRemove = remove[:len(remove):len(remove)]
		}
		r.okOf.OkResponse = &r.ok
		r.resp.HttpResponse = &r.okOf
		return &r.resp
	}

	status := denialStatus(d)
	r.status.Code = int32(grpcCode(status))
	r.denied.Body = denialAnswer(&hs, d, grpc)
	denialHeaders(&hs, buf, d)
	r.make(len(hs.list()))
	r.http.Code = typev3.StatusCode(status)
	r.denied.Status = &r.http
	r.denied.Headers = r.options(hs.list())
	r.deniedOf.DeniedResponse = &r.denied
	r.resp.HttpResponse = &r.deniedOf
	return &r.resp
}
