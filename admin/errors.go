package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate/policy"
)

// The kinds of the admin API's domain errors; status maps each to its HTTP
// status. A domain error wraps its kind (errors.Is), and its text is the
// message the caller sees.
var (
	ErrInvalid         = errors.New("invalid request")      // 400
	ErrUnauthenticated = errors.New("unauthenticated")      // 401
	errForbidden       = errors.New("forbidden")            // 403
	ErrNotFound        = errors.New("not found")            // 404
	errConflict        = errors.New("conflict")             // 409
	errTooLarge        = errors.New("request too large")    // 413
	errOff             = errors.New("the admin API is off") // 503
	errMethod          = errors.New("method not allowed")   // 405
	errNoPath          = errors.New("no such path")         // 404
)

// Error is a domain error: a kind and the message the caller sees.
type Error struct {
	Kind error
	Msg  string
	// Challenge is the WWW-Authenticate header of an ErrUnauthenticated.
	Challenge string
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Kind }

// errorf returns a domain error of kind.
func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// statuses maps the kinds of domain errors to HTTP statuses.
var statuses = []struct {
	kind error
	code int
}{
	{ErrInvalid, http.StatusBadRequest},
	{ErrUnauthenticated, http.StatusUnauthorized},
	{errForbidden, http.StatusForbidden},
	{ErrNotFound, http.StatusNotFound},
	{errNoPath, http.StatusNotFound},
	{errMethod, http.StatusMethodNotAllowed},
	{errConflict, http.StatusConflict},
	{errTooLarge, http.StatusRequestEntityTooLarge},
	{errOff, http.StatusServiceUnavailable},
}

// status returns the HTTP status and message of err, and whether err is a
// store failure: a domain error has its kind's status; a cancelled call
// (the client went away, or the server is stopping) and a store failure
// are 503; a key changed by another call meanwhile is 409.
func status(err error) (code int, msg string, storeFailed bool) {
	var de *Error
	if errors.As(err, &de) {
		for _, s := range statuses {
			if errors.Is(de.Kind, s.kind) {
				return s.code, de.Msg, false
			}
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "the call was cancelled: the server is stopping or the client went away", false
	case errors.Is(err, policy.ErrKeyChanged):
		return http.StatusConflict, fmt.Sprintf("%v while this one ran: read it again and retry", err), false
	}
	return http.StatusServiceUnavailable, fmt.Sprintf("store: %v", err), true
}

// fail answers err with its status (status): the one place where the admin
// API's errors become HTTP answers. A store failure is also logged and
// counted.
func (a *API) fail(w http.ResponseWriter, err error) {
	code, msg, storeFailed := status(err)
	if storeFailed {
		if a.cfg.StoreFailed != nil {
			a.cfg.StoreFailed()
		}
		a.log.Error("admin: store", "err", err)
	}
	var de *Error
	if errors.As(err, &de) && de.Challenge != "" {
		w.Header().Set("WWW-Authenticate", de.Challenge)
	}
	WriteJSON(w, code, ErrorBody{Error: msg})
}

// problems collects the validation errors of one request, reported at once.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errorf(ErrInvalid, "%s", strings.Join(p, "; "))
}

// checkID records a problem when s is not a valid key id or customer
// (policy.ValidKeyID, the one rule): where names it, such as "body: id" or
// "query: customer"; the message says it is not what ("valid", "a key id
// or customer").
func (p *problems) checkID(where, what, s string) {
	if !policy.ValidKeyID(s) {
		p.add("%s: %q is not %s (%s)", where, s, what, policy.KeyIDRule)
	}
}
