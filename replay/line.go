package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/decisionlog"
	"github.com/tollgate/tollgate/policy"
)

// entry is a parsed line with its instant and where it was read. Fields a
// line has that decisionlog.Line does not know are ignored, so that a log
// written by a newer tollgate still replays.
type entry struct {
	decisionlog.Line
	at    time.Time
	nanos int64 // at in Unix nanoseconds: the merge's order
	file  int   // index of the file in Options.Files
	no    int64 // line number in the file, from 1
}

// errNoTS and errNoStatus name a line that is JSON but not a decision.
var (
	errNoTS     = errors.New(`no "ts"`)
	errNoStatus = errors.New(`no "status"`)
)

// parse reads raw (one line, without its newline) into e.
func (e *entry) parse(raw []byte) error {
	e.Line = decisionlog.Line{}
	if err := json.Unmarshal(raw, &e.Line); err != nil {
		return err
	}
	if e.TS == "" {
		return errNoTS
	}
	at, err := time.Parse(time.RFC3339Nano, e.TS)
	if err != nil {
		return fmt.Errorf("ts %q is not an RFC 3339 instant", e.TS)
	}
	if e.Status < 100 || e.Status > 999 {
		if e.Status == 0 {
			return errNoStatus
		}
		return fmt.Errorf("status %d is not an HTTP status", e.Status)
	}
	e.at, e.nanos = at, at.UnixNano()
	return nil
}

// unreplayable reports whether e cannot be replayed faithfully: a line
// denied 503 store:error without a key id. Its key, if it had one, was never
// resolved (the key store could not be reached), so the log does not say
// whether it was sent one, or which; replayed without a key it would read
// as a change the candidate made (key:missing). (Without a key id it may
// also be a state store outage on a request without a key; the log cannot
// tell the two apart.) A store:error line with a key id is replayed.
func (e *entry) unreplayable() bool {
	return e.Reason == string(policy.ReasonStore) && e.KeyID == ""
}

// unnamedStage stands for a stage that Envoy named and the logged policy did
// not have: the log has no name for it (route:unknown without api and
// stage), and no policy has a stage of this name, so the request is again
// route:unknown.
const unnamedStage = "\x00/\x00"

// request fills r, whose Headers map is owned by the caller, with the
// request of e for a policy whose API key header is keyHeader; key is the
// synthetic key value ("" for none). The logged path is the path as routes
// matched it, and normalization leaves such a path as it is (the escapes it
// keeps, %25 %3F %23 %3B, it keeps again). Host is not logged: the logged
// stage is named instead.
func (e *entry) request(r *policy.Request, keyHeader, key string) {
	r.Method = e.Method
	r.Path = e.Path
	r.Peer = e.IP
	r.API, r.Stage = e.API, e.Stage
	if e.API == "" && e.Stage == "" && e.Reason == string(policy.ReasonRouteUnknown) {
		r.Stage = unnamedStage
	}
	clear(r.Headers)
	if key != "" {
		r.Headers[keyHeader] = key
	}
}
