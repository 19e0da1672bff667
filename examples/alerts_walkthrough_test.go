package examples_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The README's alert story: its requests and the event it shows.
var (
	alertSection = regexp.MustCompile("(?s)## Quota alerts.*?\n## ")
	alertLoop    = regexp.MustCompile(`for i in \$\(seq (\d+)\); do curl -s -o /dev/null -X POST http://localhost:8080(\S+) -H 'x-api-key: (\S+)'; done`)
	jsonBlock    = regexp.MustCompile("(?s)```json\n(.*?)```")
)

// receiver is a webhook that keeps the bodies it is sent.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, body)
	r.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (r *receiver) got() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// TestAlertWalkthrough sends the requests of the payments README's alert
// story to tollgate (the payments policy, its sink pointed at a receiver of
// the test's) and checks that the receiver gets the event the README shows,
// once.
func TestAlertWalkthrough(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(paymentsDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := alertSection.FindString(string(readme))
	loop, shown := alertLoop.FindStringSubmatch(section), jsonBlock.FindStringSubmatch(section)
	if loop == nil || shown == nil {
		t.Fatalf("README.md: no alert story (a loop of curl requests with a key, then a json block) in %q", section)
	}
	var want any
	if err := json.Unmarshal([]byte(shown[1]), &want); err != nil {
		t.Fatalf("README.md: the event shown: %v", err)
	}
	n, _ := strconv.Atoi(loop[1])

	rec := &receiver{}
	hook := httptest.NewServer(rec)
	t.Cleanup(hook.Close)
	addr, _ := startTollgate(t, paymentsPolicy(t, "http://echo:8080/hooks/tollgate", hook.URL+"/hooks/tollgate"))
	for i := range n {
		req, _ := http.NewRequest("POST", "http://"+addr+"/ext_authz"+loop[2], nil)
		req.Host = "localhost:8080"
		req.Header.Set("X-Api-Key", loop[3])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: got %d, want 200", i+1, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(rec.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	bodies := rec.got()
	if len(bodies) != 1 {
		t.Fatalf("got %d events in 30s, want 1", len(bodies))
	}
	var got any
	if err := json.Unmarshal(bodies[0], &got); err != nil {
		t.Fatalf("the event %s: %v", bodies[0], err)
	}
	if !matches(got, want) {
		t.Errorf("the receiver got\n%s\nthe README shows\n%s", bodies[0], shown[1])
	}
}

// matches compares decoded JSON, where the string "…" in want stands for
// any value but a missing one.
func matches(got, want any) bool {
	switch w := want.(type) {
	case string:
		if w == "…" {
			return true
		}
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !matches(gv, wv) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}

// The README's "…" must not hide what a reader relies on.
func TestAlertWalkthroughShowsWho(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(paymentsDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	shown := jsonBlock.FindStringSubmatch(alertSection.FindString(string(readme)))
	if shown == nil {
		t.Fatal("README.md: no event shown")
	}
	for _, field := range []string{`"type": "io.tollgate.quota.threshold"`, `"threshold": 80`, `"customer": "wayne"`, `"used": 8`, `"limit": 10`} {
		if !strings.Contains(shown[1], field) {
			t.Errorf("README.md's event does not show %s", field)
		}
	}
}
