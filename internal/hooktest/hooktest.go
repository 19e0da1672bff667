// Package hooktest is a webhook receiver for the tests of quota events: a
// real HTTP server on loopback that records every request (headers, body,
// the CloudEvent's id) and answers it as the test says.
//
//	r := hooktest.New(t, hooktest.Always(http.StatusOK))
//	// point a sink at r.URL, make events, then
//	hooktest.WaitFor(t, "two events", func() bool { return len(r.Accepted()) == 2 })
//
// A Receiver is safe for concurrent use; it closes when the test ends.
package hooktest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Delivery is one request a Receiver got.
type Delivery struct {
	Header http.Header
	Body   []byte
	// ID is the CloudEvent's id ("" when the body is not one).
	ID string
	// At is when it came, on the Receiver's clock.
	At time.Time
	// Status is the answer it got (0: none, the client gave up).
	Status int
}

// Receiver is a webhook on loopback. Its Now (time.Now by default) stamps
// the deliveries; set it before the first request.
type Receiver struct {
	*httptest.Server
	Now func() time.Time

	answer func(id string, n int) int

	mu  sync.Mutex
	got []Delivery
}

// New starts a Receiver that answers each request with answer(id, n) (n:
// the requests of that event id so far, this one included); an answer of 0
// holds the request until the client gives up.
func New(t testing.TB, answer func(id string, n int) int) *Receiver {
	r := &Receiver{Now: time.Now, answer: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// Always answers every request with status.
func Always(status int) func(string, int) int { return func(string, int) int { return status } }

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var ce struct {
		ID string `json:"id"`
	}
	json.Unmarshal(body, &ce)
	r.mu.Lock()
	n := 1
	for _, d := range r.got {
		if d.ID == ce.ID {
			n++
		}
	}
	status := r.answer(ce.ID, n)
	r.got = append(r.got, Delivery{Header: req.Header.Clone(), Body: body, ID: ce.ID, At: r.Now(), Status: status})
	r.mu.Unlock()
	if status == 0 {
		<-req.Context().Done() // no answer: the client's timeout ends it
		return
	}
	w.WriteHeader(status)
}

// Deliveries returns what the Receiver got so far, in order.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.got...)
}

// Accepted counts the 2xx answers by event id.
func (r *Receiver) Accepted() map[string]int {
	out := map[string]int{}
	for _, d := range r.Deliveries() {
		if d.Status/100 == 2 {
			out[d.ID]++
		}
	}
	return out
}

// WaitFor polls cond until it holds. The deadline (a minute) only stops a
// test that would hang: deliveries come when the deliverer's loop gets to
// them, later on a loaded machine, never at a time a test may count on.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after a minute waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
