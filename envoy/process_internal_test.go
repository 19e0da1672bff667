package envoy

import (
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tollgate/tollgate/policy"
)

// TestImmediateResponseGRPCStatus: every denial status maps to its gRPC
// code, with the body's message (else the status text) in details and as
// the body (Envoy's grpc-message); over ext_authz, the same code in a
// grpc-status header and the message as the body.
func TestImmediateResponseGRPCStatus(t *testing.T) {
	cases := []struct {
		status  int
		body    string
		code    codes.Code
		details string
	}{
		{400, policy.BodyBadRequest, codes.InvalidArgument, "Bad Request"},
		{403, policy.BodyMissingToken, codes.PermissionDenied, "Missing Authentication Token"},
		{0, policy.BodyForbidden, codes.PermissionDenied, "Forbidden"},
		{429, policy.BodyLimitExceeded, codes.ResourceExhausted, "Limit Exceeded"},
		{503, policy.BodyUnavailable, codes.Unavailable, "Service Unavailable"},
		{429, "not json", codes.ResourceExhausted, "Too Many Requests"},
	}
	for _, c := range cases {
		d := &policy.Decision{Verdict: policy.Deny, Status: c.status, Body: c.body, Reason: policy.ReasonKeyMissing}
		im := immediateResponse(d, caller{grpc: true}).GetImmediateResponse()
		if got := codes.Code(im.GetGrpcStatus().GetStatus()); im.GetGrpcStatus() == nil || got != c.code || im.GetDetails() != c.details ||
			string(im.GetBody()) != c.details {
			t.Errorf("%d %s: got %v %q %q, want %v %q twice", c.status, c.body, im.GetGrpcStatus(), im.GetDetails(), im.GetBody(), c.code, c.details)
		}
		denied := checkResponse(d, true).GetDeniedResponse()
		if got := denied.GetHeaders()[0].GetHeader(); got.GetKey() != "grpc-status" || got.GetValue() != strconv.Itoa(int(c.code)) ||
			denied.GetBody() != c.details {
			t.Errorf("%d %s over ext_authz: got %v %q, want grpc-status %d and %q", c.status, c.body, got, denied.GetBody(), c.code, c.details)
		}
		denied = CheckResponse(d).GetDeniedResponse()
		if denied.GetBody() != c.body || denied.GetHeaders()[0].GetHeader().GetKey() != "content-type" {
			t.Errorf("%d %s over ext_authz for HTTP: got %v %q, want no grpc-status and the body", c.status, c.body, denied.GetHeaders(), denied.GetBody())
		}
		if im := ImmediateResponse(d).GetImmediateResponse(); im.GetGrpcStatus() != nil || im.GetDetails() != "tollgate_key_missing" {
			t.Errorf("%d %s over HTTP: got %v %q, want no grpc_status, tollgate_key_missing", c.status, c.body, im.GetGrpcStatus(), im.GetDetails())
		}
	}
}

// TestHeaderOptionsFields: Envoy gets raw_value; a proxyless client gets
// value, except for a value that is not UTF-8 or a -bin header; never both.
func TestHeaderOptionsFields(t *testing.T) {
	hs := []header{{name: "x-a", value: "initech"}, {name: "x-b", value: "\xff\xfe"}, {name: "x-c-bin", value: "ok"}}
	cases := []struct {
		c    caller
		want []string // "value" or "raw" per header
	}{
		{caller{}, []string{"raw", "raw", "raw"}},
		{caller{grpc: true}, []string{"raw", "raw", "raw"}},
		{caller{grpc: true, proxyless: true}, []string{"value", "raw", "raw"}},
	}
	for _, c := range cases {
		for i, o := range headerOptions(hs, c.c) {
			v := o.GetHeader()
			got := "raw"
			if v.GetValue() != "" {
				got = "value"
				if len(v.GetRawValue()) > 0 {
					got = "both"
				}
			}
			if got != c.want[i] || (got == "value" && v.GetValue() != hs[i].value) || (got == "raw" && string(v.GetRawValue()) != hs[i].value) {
				t.Errorf("%+v %s: got %s %q %q, want %s", c.c, hs[i].name, got, v.GetValue(), v.GetRawValue(), c.want[i])
			}
		}
	}
}
