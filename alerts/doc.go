// Package alerts sends quota events (package doc of policy, "Alerts"): a
// customer's use of a plan's quota reaching a threshold, and a forecast that
// it runs out before its period ends.
//
// A Detector watches every decision (Observe, about 100 ns and no
// allocation on a plan with alerts): from the quota's count after the
// decision's take, which the store's atomic step returned, it makes the
// threshold events a customer's plan reached in this period, once per
// process, and keeps an exponentially weighted rate of the quota's use
// (time constant Tau) for forecasts. Every replica and every restart names
// an event with the same id (EventID), so the Outbox, which adds an id once
// ever, keeps one: exactly one event per customer, plan, period and
// threshold.
//
// A Deliverer takes events from the decision path without waiting
// (Enqueue), adds them to the Outbox of the store (memory, the file store's
// bbolt file, Redis), claims the due ones with a lease and POSTs each to its
// sink as a CloudEvent, signed with HMAC-SHA256 when the sink has a secret:
// a 2xx ends it, anything else is retried with backoff until DefaultGiveUp.
// Delivery is at least once, with the same id every time.
package alerts
