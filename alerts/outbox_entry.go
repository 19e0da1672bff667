package alerts

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// EntryKey returns the key of the outbox entry of event id for sink: the
// id's length first, so that no id and sink run into another pair's.
func EntryKey(id, sink string) string {
	return strconv.Itoa(len(id)) + ":" + id + sink
}

// entryJSON is how an outbox keeps an entry on disk or in Redis.
type entryJSON struct {
	ID   string    `json:"id"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Sink string    `json:"sink"`
	Data Data      `json:"data"`
}

// MarshalEntry encodes the entry of e for sink, as the bbolt and Redis
// outboxes keep it.
func MarshalEntry(e Event, sink string) ([]byte, error) {
	return json.Marshal(entryJSON{ID: e.ID, Type: e.Type, Time: e.Time, Sink: sink, Data: e.Data})
}

// UnmarshalEntry decodes what MarshalEntry encoded; attempts is the entry's
// count of failed deliveries, kept beside it.
func UnmarshalEntry(b []byte, attempts int) (Pending, error) {
	var j entryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Pending{}, fmt.Errorf("outbox entry: %w", err)
	}
	e := Event{ID: j.ID, Type: j.Type, Time: j.Time, Sinks: []string{j.Sink}, Data: j.Data}
	return Pending{Event: e, Sink: j.Sink, Created: j.Time, Attempts: attempts}, nil
}
