package walkthrough

import (
	"strings"
	"testing"
)

// TestParseKeepsProxiesApart: a README with walkthroughs of two proxies
// gives each only its own requests and answers, the answer after a curl
// to the other proxy going to neither.
func TestParseKeepsProxiesApart(t *testing.T) {
	readme := strings.Join([]string{
		"```sh\ndocker compose up\n```",
		"```sh\ncurl -si http://localhost:8080/status\n```",
		"```http\nHTTP/1.1 200 OK\nratelimit: \"route\";r=999;t=1\n```",
		"```sh\ncurl -si -X POST http://localhost:8081/partners/p-1/transactions -H 'x-api-key: k'\n```",
		"```http\nHTTP/1.1 403 Forbidden\ncontent-type: application/json\n\n{\"message\":\"Forbidden\"}\n```",
		"```sh\nfor i in $(seq 100); do curl -si http://localhost:8080/x > a.txt; grep -q '^HTTP/1.1 429' a.txt && break; done; cat a.txt\n```",
	}, "\n\n")
	envoy := Parse(t, readme, "localhost:8080")
	if len(envoy) != 2 || envoy[0].Want == nil || envoy[0].Want.Status != 200 || envoy[1].Want != nil {
		t.Fatalf("localhost:8080: got %+v, want GET /status shown 200 and a loop not shown", envoy)
	}
	if s := envoy[1]; s.Times != 100 || s.Until != 429 || s.Path != "/x" || s.Block != 4 {
		t.Errorf("the loop: got %+v, want /x up to 100 times until 429, block 4", s)
	}
	nginx := Parse(t, readme, "localhost:8081")
	if len(nginx) != 1 || nginx[0].Method != "POST" || nginx[0].Headers["x-api-key"] != "k" || nginx[0].Want.Body != `{"message":"Forbidden"}` {
		t.Fatalf("localhost:8081: got %+v, want the POST shown 403", nginx)
	}
}

// TestCheck: … matches anything, a header tollgate sets must be shown.
func TestCheck(t *testing.T) {
	want := &Answer{Status: 429, Body: "{}", Headers: [][2]string{{"ratelimit", `"plan";r=0;t=2, …`}}}
	if d := want.Check(429, "{}", map[string]string{"ratelimit": `"plan";r=0;t=2, "quota";r=1;t=5`, "server": "nginx"}, TollgateHeader); len(d) != 0 {
		t.Errorf("got %q, want no difference", d)
	}
	d := want.Check(429, "{}", map[string]string{"ratelimit": `"plan";r=1;t=2, x`, "retry-after": "1"}, TollgateHeader)
	if len(d) != 2 {
		t.Errorf("got %q, want the ratelimit value and the unshown retry-after", d)
	}
}
