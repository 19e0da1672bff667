package alerts

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// The CloudEvents 1.0 envelope's fixed values and the HTTP headers of a
// delivery (SPEC §9).
const (
	// ContentType is the media type of a CloudEvent in structured JSON.
	ContentType = "application/cloudevents+json"
	// Source is every event's "source".
	Source = "tollgate"
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// body, keyed with the sink's secret.
	SignatureHeader = "X-Tollgate-Signature"
)

// cloudEvent is the structured JSON envelope of a CloudEvent 1.0 whose data
// is JSON (the spec's JSON event format: the attributes are top-level
// members, data a JSON value).
type cloudEvent struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            Data   `json:"data"`
}

// CloudEvent returns e as a CloudEvent 1.0 in structured JSON: the body of
// every delivery of e, the same bytes each time.
func CloudEvent(e Event) ([]byte, error) {
	return json.Marshal(cloudEvent{
		SpecVersion:     "1.0",
		ID:              e.ID,
		Source:          Source,
		Type:            e.Type,
		Subject:         e.Data.Customer,
		Time:            e.Time.UTC().Format(time.RFC3339Nano),
		DataContentType: "application/json",
		Data:            e.Data,
	})
}

// Signature returns the value of SignatureHeader for body signed with
// secret: "sha256=" and the hex HMAC-SHA256 of the exact bytes.
func Signature(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
