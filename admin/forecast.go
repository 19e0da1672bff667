package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// Forecaster estimates when a customer's quota runs out: the recent rate of
// its use (per hour) and the instant the quota is used up at that rate, nil
// when it lasts until periodEnd. The server's implementation is
// alerts.Detector.
type Forecaster interface {
	Forecast(customer, plan string, used, limit int64, periodStart, periodEnd, now time.Time) (ratePerHour float64, exhaustion *time.Time)
}

// forecastOf returns customer's forecast on pl at now; false when pl has no
// quota.
func (a *API) forecastOf(pl *policy.Plan, customer string, now time.Time) (ForecastView, bool, error) {
	q, ok, err := currentQuota(a.cfg.Counters, pl, customer, now)
	if !ok || err != nil {
		return ForecastView{}, ok, err
	}
	v := ForecastView{Customer: customer, Plan: pl.Name, Used: q.Used, Limit: q.Limit + q.Granted,
		PeriodStart: q.PeriodStart, PeriodEnd: q.Reset, Mode: q.Mode}
	if a.cfg.Forecaster != nil {
		v.RatePerHour, v.Exhaustion = a.cfg.Forecaster.Forecast(customer, pl.Name, v.Used, v.Limit, v.PeriodStart, v.PeriodEnd, now)
	}
	if v.Exhaustion != nil {
		t := v.Exhaustion.UTC()
		v.Exhaustion = &t
	}
	return v, true, nil
}

// forecast answers GET /v1/usage/{customer}/forecast?plan=P.
func (a *API) forecast(r *http.Request) (reply, error) {
	q, err := queryParams(r.URL.Query(), "plan")
	if err != nil {
		return reply{}, err
	}
	customer := r.PathValue("customer")
	p, now := a.cfg.Policy(), a.cfg.Now()
	var bad problems
	bad.checkID("path: customer", "valid", customer)
	pl := p.Plan(q["plan"])
	switch {
	case q["plan"] == "":
		bad.add("query: plan: required")
	case pl == nil:
		bad.add("query: plan: %q is not a usage plan (plans: %v)", q["plan"], p.PlanNames())
	}
	if err := bad.err(); err != nil {
		return reply{}, err
	}
	v, has, err := a.forecastOf(pl, customer, now)
	if err != nil {
		return reply{}, err
	}
	if !has {
		return reply{}, errorf(ErrInvalid, "query: plan: %q has no quota to forecast", pl.Name)
	}
	return ok(v), nil
}

// addForecasts adds each customer's forecast to a usage page.
func (a *API) addForecasts(_ context.Context, ans *UsageAnswer, pl *policy.Plan, now time.Time) error {
	for c := range ans.Items {
		v, ok, err := a.forecastOf(pl, c, now)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if ans.Forecasts == nil {
			ans.Forecasts = make(map[string]ForecastView, len(ans.Items))
		}
		ans.Forecasts[c] = v
	}
	return nil
}
