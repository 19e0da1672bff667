package admin

import (
	"encoding/json"
	"time"
)

// The wire types: the JSON bodies of the admin API's calls and answers, as
// the server writes them and the CLI (cmd/tollgate) reads them.

// Sources of a key, as KeyView.Source shows them.
const (
	sourcePolicy = "policy"
	sourceAPI    = "api"
)

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// KeyView is a key as the admin API shows it: never its value, except in the
// answer that creates it.
type KeyView struct {
	ID       string     `json:"id"`
	Customer string     `json:"customer"`
	Name     string     `json:"name"`
	Plans    []string   `json:"plans"`
	Enabled  bool       `json:"enabled"`
	Expires  *time.Time `json:"expires"` // null: never
	Created  *time.Time `json:"created"` // null: a policy-file key
	Source   string     `json:"source"`  // "policy" or "api"
	Hash     string     `json:"hash"`    // "sha256:<hex>"
	// RotatedTo is the key that replaced this one: it works until its
	// grace ends (expires). Absent when it was never rotated.
	RotatedTo string `json:"rotated_to,omitempty"`
	// Value is the key itself, shown once: when it is created.
	Value string `json:"value,omitempty"`
}

// KeyList is the body of GET /v1/keys.
type KeyList struct {
	Items []KeyView `json:"items"`
	// Next is the after of the next page; absent on the last page.
	Next string `json:"next,omitempty"`
}

// CreateKeyBody is the body of POST /v1/keys. A field left nil takes its
// default: a fresh id, the id as customer, no name, no expiry.
type CreateKeyBody struct {
	ID       *string  `json:"id,omitempty"`
	Customer *string  `json:"customer,omitempty"`
	Name     *string  `json:"name,omitempty"`
	Plans    []string `json:"plans"`
	Expires  *string  `json:"expires,omitempty"`
}

// PatchKeyBody is the body of PATCH /v1/keys/{id}: the fields to change.
// Expires is raw so that null (never expires) and absent (unchanged) differ.
type PatchKeyBody struct {
	Enabled *bool           `json:"enabled,omitempty"`
	Plans   []string        `json:"plans,omitempty"`
	Name    *string         `json:"name,omitempty"`
	Expires json.RawMessage `json:"expires,omitempty"`
}

// RotateKeyBody is the body of POST /v1/keys/{id}/rotate; it may be empty.
type RotateKeyBody struct {
	Grace *string `json:"grace,omitempty"` // a duration; nil: DefaultGrace
	ID    *string `json:"id,omitempty"`    // the new key's id; nil: a fresh one
}

// GrantBody is the body of POST /v1/usage/{customer}/grant.
type GrantBody struct {
	Plan     string `json:"plan"`
	Requests int64  `json:"requests"`
}

// UsagePair is one UTC day of a usage report: [used, remaining]; remaining
// is null for a plan without a quota.
type UsagePair [2]*int64

// UsageAnswer is the body of GET /v1/usage, in the shape of AWS API
// Gateway's GetUsage: for each customer, one pair per UTC day from start to
// end.
type UsageAnswer struct {
	Plan  string                 `json:"plan"`
	Start string                 `json:"start"`
	End   string                 `json:"end"`
	Items map[string][]UsagePair `json:"items"`
	// Next is the after of the next page of customers; absent on the last
	// page and when the report names its customer.
	Next string `json:"next,omitempty"`
	// Forecasts holds each customer's forecast for the current period,
	// with ?forecast=true.
	Forecasts map[string]ForecastView `json:"forecasts,omitempty"`
}

// ForecastView is a customer's forecast on a plan in the current quota
// period: the recent rate of its use and when the quota runs out at that
// rate, null when it lasts the period.
type ForecastView struct {
	Customer    string     `json:"customer"`
	Plan        string     `json:"plan"`
	Used        int64      `json:"used"`
	Limit       int64      `json:"limit"` // grants included
	PeriodStart time.Time  `json:"period_start"`
	PeriodEnd   time.Time  `json:"period_end"`
	RatePerHour float64    `json:"rate_per_hour"`
	Exhaustion  *time.Time `json:"exhaustion"`
	// Mode is "shadow" for a quota in shadow mode (QuotaView.Mode): its
	// use is counted, but the rate is of enforced quotas only (0).
	Mode string `json:"mode,omitempty"`
}

// QuotaView is a customer's quota in the current period.
type QuotaView struct {
	Customer    string    `json:"customer,omitempty"`
	Plan        string    `json:"plan,omitempty"`
	Limit       int64     `json:"limit"`
	Period      string    `json:"period"`
	Timezone    string    `json:"timezone"`
	PeriodStart time.Time `json:"period_start"`
	Reset       time.Time `json:"reset"` // the period's end
	Granted     int64     `json:"granted"`
	Used        int64     `json:"used"`
	Remaining   int64     `json:"remaining"`
	// Mode is "shadow" for a quota in shadow mode (SPEC §10): counted,
	// never denying; absent for an enforced one.
	Mode string `json:"mode,omitempty"`
}

// MeAnswer is the body of GET /v1/me.
type MeAnswer struct {
	KeyID    string     `json:"key_id"`
	Customer string     `json:"customer"`
	Name     string     `json:"name"`
	Expires  *time.Time `json:"expires"`
	Plans    []MePlan   `json:"plans"`
}

// MePlan is one of the caller's plans: its limits and, with a quota, the
// current period's use.
type MePlan struct {
	Plan     string        `json:"plan"`
	Stages   []string      `json:"stages"`
	Throttle *ThrottleView `json:"throttle"` // null: no plan throttle
	Quota    *QuotaView    `json:"quota"`    // null: unlimited
	Forecast *ForecastView `json:"forecast"` // null: no quota
}

// ThrottleView is a plan's throttle.
type ThrottleView struct {
	Rate  float64 `json:"rate"`
	Burst int64   `json:"burst"`
}
