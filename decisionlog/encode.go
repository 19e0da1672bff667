package decisionlog

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// tsLayout is RFC 3339 with nine digits of nanoseconds, always: the lines'
// timestamps sort as text, and a replay reads the instants back exactly.
const tsLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Line is one decision log line (SPEC §10) as a reader decodes it with
// encoding/json: the reader's side of what appendLine writes, for the
// tools that read the log (tollgate replay). TS is RFC 3339 with nine
// digits of nanoseconds, in UTC; IP is "" when the address was unknown;
// KeyID, Customer and Plan are "" when no key was used; Reason is "" when
// the request was allowed; Shadow is the list of the shadow limits that
// would have denied (often empty). A reader ignores the fields it does not
// know (encoding/json does), so that a log written by a newer tollgate
// still reads.
type Line struct {
	TS       string   `json:"ts"`
	API      string   `json:"api"`
	Stage    string   `json:"stage"`
	Route    string   `json:"route"`
	Method   string   `json:"method"`
	Path     string   `json:"path"`
	IP       string   `json:"ip"`
	KeyID    string   `json:"key_id"`
	Customer string   `json:"customer"`
	Plan     string   `json:"plan"`
	Status   int      `json:"status"`
	Reason   string   `json:"reason"`
	Shadow   []string `json:"shadow"`
}

// appendLine appends r's JSON line (SPEC §10, Line) and a newline to b.
// The fields are always all there, in the same order; "shadow" is the list
// of the shadow limits that would have denied (often empty).
func appendLine(b []byte, r *Record) []byte {
	b = append(b, `{"ts":"`...)
	b = r.Time.UTC().AppendFormat(b, tsLayout)
	b = append(b, `","api":`...)
	b = appendString(b, r.API)
	b = append(b, `,"stage":`...)
	b = appendString(b, r.Stage)
	b = append(b, `,"route":`...)
	b = appendString(b, r.Route)
	b = append(b, `,"method":`...)
	b = appendString(b, r.Method)
	b = append(b, `,"path":`...)
	b = appendString(b, r.Path)
	b = append(b, `,"ip":"`...)
	if r.IP.IsValid() {
		b = r.IP.AppendTo(b)
	}
	b = append(b, `","key_id":`...)
	b = appendString(b, r.KeyID)
	b = append(b, `,"customer":`...)
	b = appendString(b, r.Customer)
	b = append(b, `,"plan":`...)
	b = appendString(b, r.Plan)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"reason":`...)
	b = appendString(b, r.Reason)
	b = append(b, `,"shadow":[`...)
	for rest, i := r.Shadow, 0; rest != ""; i++ {
		var reason string
		reason, rest, _ = strings.Cut(rest, ",")
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, reason)
	}
	b = append(b, "]}\n"...)
	return b
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. Control characters are escaped
// and bytes that are not UTF-8 become U+FFFD, as encoding/json does, so a
// method or path a client sent cannot break the line.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
