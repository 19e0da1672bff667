package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// decodeBody decodes the request's JSON object body into v, strictly: an
// unknown field, a second value after the object or a body over maxBody (the
// handler bounds it) is an error. An empty body decodes as {} when emptyOK.
func decodeBody(r *http.Request, v any, emptyOK bool) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return errorf(errTooLarge, "body: larger than %d bytes", maxBody)
		case errors.Is(err, io.EOF):
			if emptyOK {
				return nil
			}
			return errorf(ErrInvalid, "body: empty (want a JSON object)")
		case errors.As(err, &syntax):
			return errorf(ErrInvalid, "body: malformed JSON at byte %d: %v", syntax.Offset, err)
		case errors.As(err, &typ):
			if typ.Field != "" {
				return errorf(ErrInvalid, "body: %s: got a JSON %s, want %s", typ.Field, typ.Value, jsonKind(typ.Type.Kind().String()))
			}
			return errorf(ErrInvalid, "body: got a JSON %s, want a JSON object", typ.Value)
		default:
			// Unknown fields ("json: unknown field \"x\""), truncated
			// bodies (io.ErrUnexpectedEOF) and the rest.
			return errorf(ErrInvalid, "body: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(errTooLarge, "body: larger than %d bytes", maxBody)
		}
		return errorf(ErrInvalid, "body: unexpected data after the JSON object")
	}
	return nil
}

// jsonKind names a Go kind as a JSON type, for messages.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "a list"
	case "struct", "map", "ptr":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number"
	default:
		return "a number"
	}
}

// queryParams returns the query's single values, checking that every
// parameter is one of allowed and given once.
func queryParams(q url.Values, allowed ...string) (map[string]string, error) {
	out := make(map[string]string, len(q))
	for name, vs := range q {
		if !slices.Contains(allowed, name) {
			return nil, errorf(ErrInvalid, "query: unknown parameter %q (want %v)", name, allowed)
		}
		if len(vs) != 1 {
			return nil, errorf(ErrInvalid, "query: %s: given %d times", name, len(vs))
		}
		out[name] = vs[0]
	}
	return out, nil
}
