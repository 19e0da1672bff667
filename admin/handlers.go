package admin

import (
	"net/http"
)

// The handlers of the routes: each decodes its request, calls a domain
// function and returns the answer; handle writes it, or the error.

// getKey answers GET /v1/keys/{id}.
func (a *API) getKey(r *http.Request) (reply, error) {
	v, err := a.Key(r.PathValue("id"))
	return ok(v), err
}

// listKeys answers GET /v1/keys: a page of keys in id order, never a value,
// of a customer and on a plan when the query names them (keyPage).
func (a *API) listKeys(r *http.Request) (reply, error) {
	q, err := queryParams(r.URL.Query(), "customer", "plan", "limit", "after")
	if err != nil {
		return reply{}, err
	}
	pg, err := pageParams(q)
	if err != nil {
		return reply{}, err
	}
	if c, ok := q["customer"]; ok {
		var bad problems
		bad.checkID("query: customer", "valid", c)
		if err := bad.err(); err != nil {
			return reply{}, err
		}
	}
	ans, err := keyPage(r.Context(), allKeys{a.cfg.Keys, a.cfg.Policy()}, q["customer"], q["plan"], pg)
	return ok(ans), err
}

// createKey answers POST /v1/keys: 201 with the new key and its value.
func (a *API) createKey(r *http.Request) (reply, error) {
	var body CreateKeyBody
	if err := decodeBody(r, &body, false); err != nil {
		return reply{}, err
	}
	v, err := a.CreateKey(body)
	return created(v), err
}

// patchKey answers PATCH /v1/keys/{id}: 200 with the changed key.
func (a *API) patchKey(r *http.Request) (reply, error) {
	var body PatchKeyBody
	if err := decodeBody(r, &body, false); err != nil {
		return reply{}, err
	}
	v, err := a.PatchKey(r.PathValue("id"), body)
	return ok(v), err
}

// deleteKey answers DELETE /v1/keys/{id}: 204.
func (a *API) deleteKey(r *http.Request) (reply, error) {
	return reply{code: http.StatusNoContent}, a.DeleteKey(r.PathValue("id"))
}

// rotateKey answers POST /v1/keys/{id}/rotate: 201 with the new key and its
// value.
func (a *API) rotateKey(r *http.Request) (reply, error) {
	var body RotateKeyBody
	if err := decodeBody(r, &body, true); err != nil {
		return reply{}, err
	}
	v, err := a.RotateKey(r.PathValue("id"), body)
	return created(v), err
}

// usage answers GET /v1/usage?plan=P&customer=C&start=YYYY-MM-DD&end=YYYY-MM-DD
// (usageReport), with &forecast=true each customer's forecast too.
func (a *API) usage(r *http.Request) (reply, error) {
	q, err := queryParams(r.URL.Query(), "plan", "customer", "start", "end", "limit", "after", "forecast")
	if err != nil {
		return reply{}, err
	}
	p, now := a.cfg.Policy(), a.cfg.Now()
	uq, err := parseUsageQuery(p, q)
	if err != nil {
		return reply{}, err
	}
	ans, err := a.usageReport(r.Context(), p, uq, now)
	if err == nil && uq.forecast {
		err = a.addForecasts(r.Context(), &ans, uq.plan, now)
	}
	return ok(ans), err
}

// grant answers POST /v1/usage/{customer}/grant: 200 with the quota.
func (a *API) grant(r *http.Request) (reply, error) {
	var body GrantBody
	if err := decodeBody(r, &body, false); err != nil {
		return reply{}, err
	}
	v, err := a.Grant(r.Context(), r.PathValue("customer"), body)
	return ok(v), err
}

// me answers GET /v1/me for the API key in the policy's key header. It
// needs no admin token.
func (a *API) me(r *http.Request) (reply, error) {
	v, err := a.Me(r.Header)
	return ok(v), err
}
