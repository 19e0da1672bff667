package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Event types (CloudEvents "type").
const (
	TypeThreshold = "io.tollgate.quota.threshold"
	TypeForecast  = "io.tollgate.quota.forecast"
)

// Event is one quota event: a threshold of a customer's quota reached, or a
// forecast that the quota runs out before its period ends. Its ID is the
// same for every delivery and for every replica that sees it.
type Event struct {
	ID   string
	Type string
	// Time is when it was seen.
	Time time.Time
	// Sinks names the sinks (notifications.sinks) it goes to.
	Sinks []string
	Data  Data
}

// Data is an event's CloudEvents data.
type Data struct {
	Customer string `json:"customer"`
	Plan     string `json:"plan"`
	// Threshold is the percent reached; absent on forecasts.
	Threshold   *int       `json:"threshold,omitempty"`
	Used        int64      `json:"used"`
	Limit       int64      `json:"limit"`
	PeriodStart time.Time  `json:"period_start"`
	PeriodEnd   time.Time  `json:"period_end"`
	Exhaustion  *time.Time `json:"exhaustion"`
}

// EventID is the id of the event of type typ for a customer's plan in the
// period that starts at periodStart; threshold is the percent (0 for a
// forecast). One event per customer, plan, period and threshold: one id.
func EventID(typ, customer, plan string, periodStart time.Time, threshold int) string {
	h := sha256.New()
	for _, s := range []string{typ, customer, plan, periodStart.UTC().Format(time.RFC3339), strconv.Itoa(threshold)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Pending is an event waiting in an outbox for delivery to one sink.
type Pending struct {
	// Event is the event; its Sinks holds Sink alone.
	Event Event
	Sink  string
	// Created is when it was added (its Event.Time), Attempts how many
	// deliveries failed.
	Created  time.Time
	Attempts int
}

// Outbox keeps events until they are delivered: in memory, in the file
// store's bbolt file, or in Redis, where the replicas share it. It holds
// one entry per event and sink, so that each sink's delivery ends on its own
// (a sink that fails does not make another get the event again). An entry is
// added once per id and sink, ever: a second Add of the same id (another
// replica, or after a restart) is a no-op, also after the first was delivered
// (the id is kept for keep after the event's Time; in Redis, after the Add,
// on Redis's clock).
type Outbox interface {
	// Add stores an entry of e for each of e.Sinks, due at once, unless
	// that id and sink were added before; it reports whether one was new.
	Add(ctx context.Context, e Event, keep time.Duration) (bool, error)
	// Claim returns up to n entries due at now, the longest due first, and
	// hides them from other claims until now+lease. An entry that cannot
	// be read is claimed too, and reported in the error beside the others.
	Claim(ctx context.Context, now time.Time, n int, lease time.Duration) ([]Pending, error)
	// Done ends the delivery of event id to sink; an entry that is gone
	// is not an error.
	Done(ctx context.Context, id, sink string) error
	// Retry makes event id due again for sink at next, with one more
	// failed attempt; an entry that is gone is not an error.
	Retry(ctx context.Context, id, sink string, next time.Time) error
	// Stats returns how many entries wait and when the oldest was added
	// (zero when none).
	Stats(ctx context.Context) (pending int, oldest time.Time, err error)
}
