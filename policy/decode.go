package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A strict decoder for the generic tree a YAML or JSON decoder produces
// (map[string]any, map[any]any, []any, string, bool, numbers, time.Time,
// nil). It never panics and never falls back to a default on a bad value:
// every problem is recorded, with the field's path, and the walk goes on so
// that one pass reports every error of a file.

// decoder collects the errors of one file.
type decoder struct {
	file string
	errs []error
}

// errorf records an error at path. The message should quote the bad value.
func (d *decoder) errorf(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		d.errs = append(d.errs, fmt.Errorf("%s: %s", d.file, msg))
		return
	}
	d.errs = append(d.errs, fmt.Errorf("%s: %s: %s", d.file, path, msg))
}

// err returns every recorded error joined, or nil.
func (d *decoder) err() error { return errors.Join(d.errs...) }

// field returns the path of a map key below path: dotted when the key is a
// plain name, else quoted in brackets (routes["POST /x"]).
func field(path, key string) string {
	if !plainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// index returns the path of a list item below path.
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// FieldPath and IndexPath spell the field paths of Compile's errors: of the
// key below path, and of the list item i below path; for a reader of the
// file that finds errors the generic tree cannot hold (policyfile's keys
// written twice).
func FieldPath(path, key string) string { return field(path, key) }

func IndexPath(path string, i int) string { return index(path, i) }

// plainKey reports whether a map key can be written in a path without
// quotes: letters, digits, "_" and "-".
func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isNameByte(k[i]) || k[i] == '.' {
			return false
		}
	}
	return true
}

// isNameByte reports whether c may appear in a name: [A-Za-z0-9_.-].
func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.'
}

// validName reports whether s is 1 to maxLen characters of [A-Za-z0-9_.-].
func validName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

// show renders a bad scalar value for a message: strings quoted, numbers and
// booleans as written, composite values by their kind.
func show(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(v)
	case json.Number:
		return string(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	case bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("a value of type %T", v)
}

// typeError records that v is not what the field wants.
func (d *decoder) typeError(path string, v any, want string) {
	switch v.(type) {
	case []any, map[string]any, map[any]any:
		d.errorf(path, "got %s, want %s", show(v), want)
	default:
		d.errorf(path, "%s is not %s", show(v), want)
	}
}

// object is a decoded mapping with string keys whose fields are known.
type object struct {
	path string
	m    map[string]any
}

// get returns the field's path and value; ok is false when the field is
// absent.
func (o object) get(name string) (path string, v any, ok bool) {
	v, ok = o.m[name]
	return field(o.path, name), v, ok
}

// mapping returns v as a map with string keys, reporting non-string keys.
// ok is false when v is not a mapping at all.
func (d *decoder) mapping(path string, v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		var bad []string
		for k, e := range m {
			s, ok := k.(string)
			if !ok {
				bad = append(bad, show(k))
				continue
			}
			out[s] = e
		}
		slices.Sort(bad)
		for _, k := range bad {
			d.errorf(path, "key %s is not a string", k)
		}
		return out, true
	}
	d.typeError(path, v, "a mapping")
	return nil, false
}

// object decodes a mapping with the given fields; any other key is an
// error. ok is false when v is not a mapping (null included).
func (d *decoder) object(path string, v any, fields ...string) (object, bool) {
	m, ok := d.mapping(path, v)
	if !ok {
		return object{path: path}, false
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(fields, k) {
			d.errorf(path, "unknown field %q (want %s)", k, oneOf(fields))
		}
	}
	return object{path: path, m: m}, true
}

// section is object for a field where null means "empty" (a section whose
// entries are all commented out).
func (d *decoder) section(path string, v any, fields ...string) (object, bool) {
	if v == nil {
		return object{path: path}, true
	}
	return d.object(path, v, fields...)
}

// entries returns a mapping with keys the user chooses (api names, plan
// names, ...) sorted by key; null is an empty mapping.
func (d *decoder) entries(path string, v any) (keys []string, m map[string]any) {
	if v == nil {
		return nil, nil
	}
	m, ok := d.mapping(path, v)
	if !ok {
		return nil, nil
	}
	return sortedKeys(m), m
}

// list returns v as a list; null is an empty list.
func (d *decoder) list(path string, v any) []any {
	switch l := v.(type) {
	case nil:
		return nil
	case []any:
		return l
	}
	d.typeError(path, v, "a list")
	return nil
}

// str returns v as a string.
func (d *decoder) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.typeError(path, v, "a string")
	}
	return s, ok
}

// boolean returns v as a bool.
func (d *decoder) boolean(path string, v any) (bool, bool) {
	b, ok := v.(bool)
	if !ok {
		d.typeError(path, v, "true or false")
	}
	return b, ok
}

// choice returns v when it is one of choices.
func (d *decoder) choice(path string, v any, choices ...string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.typeError(path, v, "one of "+strings.Join(choices, ", "))
		return "", false
	}
	if !slices.Contains(choices, s) {
		d.errorf(path, "%q is not one of %s", s, strings.Join(choices, ", "))
		return "", false
	}
	return s, true
}

// integer returns v as a whole number in lo..hi. Whole floats are accepted
// (a JSON decoder produces only floats).
func (d *decoder) integer(path string, v any, lo, hi int64) (int64, bool) {
	n, ok := toInt(v)
	if !ok {
		d.typeError(path, v, "an integer")
		return 0, false
	}
	switch {
	case n.big && n.neg || !n.big && n.v < lo:
		d.errorf(path, "%s is below the minimum %d", show(v), lo)
		return 0, false
	case n.big || n.v > hi:
		d.errorf(path, "%s is above the maximum %d", show(v), hi)
		return 0, false
	}
	return n.v, true
}

// intValue is a whole number; big means it does not fit in an int64 (its
// sign is neg).
type intValue struct {
	v        int64
	big, neg bool
}

// toInt converts the number types of a decoded tree to an intValue; ok is
// false when v is not a whole number.
func toInt(v any) (intValue, bool) {
	switch n := v.(type) {
	case int:
		return intValue{v: int64(n), neg: n < 0}, true
	case int8:
		return intValue{v: int64(n), neg: n < 0}, true
	case int16:
		return intValue{v: int64(n), neg: n < 0}, true
	case int32:
		return intValue{v: int64(n), neg: n < 0}, true
	case int64:
		return intValue{v: n, neg: n < 0}, true
	case uint:
		return fromUint(uint64(n)), true
	case uint8:
		return fromUint(uint64(n)), true
	case uint16:
		return fromUint(uint64(n)), true
	case uint32:
		return fromUint(uint64(n)), true
	case uint64:
		return fromUint(n), true
	case float32:
		return fromFloat(float64(n))
	case float64:
		return fromFloat(n)
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return intValue{v: i, neg: i < 0}, true
		}
		f, err := n.Float64()
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return intValue{}, false
		}
		return fromFloat(f)
	}
	return intValue{}, false
}

func fromUint(u uint64) intValue {
	if u > math.MaxInt64 {
		return intValue{big: true}
	}
	return intValue{v: int64(u)}
}

func fromFloat(f float64) (intValue, bool) {
	if math.IsNaN(f) || f != math.Trunc(f) {
		return intValue{}, false
	}
	// 2^63 is the first float64 above MaxInt64.
	if f >= 1<<63 || f < -(1<<63) {
		return intValue{big: true, neg: f < 0}, true
	}
	return intValue{v: int64(f), neg: f < 0}, true
}

// toFloat converts the number types of a decoded tree to a float64.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil || errors.Is(err, strconv.ErrRange)
	}
	if n, ok := toInt(v); ok {
		if n.big {
			if n.neg {
				return math.Inf(-1), true
			}
			return math.Inf(1), true
		}
		return float64(n.v), true
	}
	return 0, false
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// oneOf lists names for a message: "a, b, c".
func oneOf(names []string) string { return strings.Join(names, ", ") }
