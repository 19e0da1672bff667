// Package envoy translates between Envoy's external authorization and
// external processing APIs and tollgate's decision core: a CheckRequest or an
// ext_proc request_headers message becomes a policy.Request, a
// policy.Decision becomes a CheckResponse or ext_proc answers. It decides
// nothing itself and reads no clock; AuthzServer and ProcessServer hand each
// request to a Decider (the server) and answer with what it decided. The
// Envoy configurations that users copy live beside it (ext_authz.yaml,
// ext_proc.yaml).
//
// # Requests
//
//	CheckRequest field                                policy.Request
//	attributes.request.http.method                    Method
//	attributes.request.http.path (with query)         Path
//	attributes.request.http.host                      Host
//	attributes.request.http.headers                   Headers (the same map, not a copy)
//	attributes.request.http.header_map                Headers, only when headers is empty
//	attributes.source.address.socket_address.address  Peer (empty for a pipe)
//	attributes.context_extensions["api"]              API
//	attributes.context_extensions["stage"]            Stage
//
// A missing piece stays empty, and the evaluator answers 400
// request:invalid for a request it cannot read.
//
// # Responses
//
//	decision            status.code          http_response
//	allow               OK                   ok_response
//	deny 400            INVALID_ARGUMENT     denied_response
//	deny 429            RESOURCE_EXHAUSTED   denied_response
//	deny 403 or other   PERMISSION_DENIED    denied_response
//
// An ok_response sets the upstream headers x-tollgate-customer,
// x-tollgate-key-id and x-tollgate-plan when a key was used and removes
// them otherwise, removes the API key header when strip_api_key is set,
// and adds the rate-limit headers to the client's response. A
// denied_response carries the status, the JSON body, content-type,
// x-tollgate-reason (key:* reasons only with explain: true), retry-after on
// every 429 and the rate-limit headers. Every header is lower case and
// overwrites one of the same name.
//
// The rate-limit headers follow the decision's header mode: ietf sends
// RateLimit-Policy and RateLimit with one item per limit, most constrained
// first; legacy sends X-RateLimit-Limit, -Remaining and -Reset of the most
// constrained limit; both sends both; none sends neither. Seconds are
// rounded up.
//
// # ext_proc
//
// ProcessServer serves one stream per request. Its request_headers message
// is translated like a CheckRequest (pseudo-headers :method, :path and
// :authority, else the request.method, request.path and request.host
// attributes; the source.address request attribute; the stage from the
// stream's gRPC metadata "api" and "stage", the attributes or the metadata
// context's "tollgate" namespace) with a Lease, so that the route's
// concurrency cap applies. A denial is an ImmediateResponse with the status,
// body and headers a denied_response would carry; an allowance is a request
// header mutation with the upstream headers of an ok_response, and the
// response_headers message gets the rate-limit headers. The slot a request
// took is released exactly once, by a Releaser, on response_headers or when
// the stream ends or is cancelled.
//
// Two kinds of client call ext_proc: Envoy, and gRPC's own ext_proc client
// (gRFC A93, a proxyless gRPC service). A proxyless client sends no
// pseudo-headers and no source.address, only the request.* attributes: its
// address is the stream's gRPC peer. A gRPC request (content-type
// application/grpc*, or a proxyless client) is denied with grpc_status too
// (400 INVALID_ARGUMENT, 403 PERMISSION_DENIED, 429 RESOURCE_EXHAUSTED, 503
// UNAVAILABLE) and the body's message in details. Header values go in one
// field only, the one the client reads: raw_value for Envoy (with its
// default runtime guard send_header_raw_value it reads nothing else, and it
// rejects a mutation with both), value for a proxyless client (grpc-go reads
// value for text headers), raw_value for -bin headers and non-UTF-8 values.
//
// # Example
//
//	srv := grpc.NewServer()
//	authv3.RegisterAuthorizationServer(srv, &envoy.AuthzServer{Decider: d})
//	extprocv3.RegisterExternalProcessorServer(srv, &envoy.ProcessServer{Decider: d, Releaser: d})
//
// # Concurrency
//
// RequestFromCheck, RequestFromProcess, CheckResponse and ImmediateResponse
// are pure functions and safe for concurrent use. AuthzServer and
// ProcessServer are safe for concurrent use when their Decider and Releaser
// are; they hold no state of their own beyond one stream's decision. A policy.Request filled by
// RequestFromCheck shares the CheckRequest's header map and must not
// outlive it.
package envoy
