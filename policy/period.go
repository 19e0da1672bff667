package policy

import "time"

// Window returns the calendar period of q that holds now: [start, end), both
// in q.Location (UTC when nil).
//
// A day runs from one local midnight to the next, so a day with a daylight
// saving change is 23 or 25 hours long. A week starts on q.WeekStart at local
// midnight. A month period starts on q.AnchorDay (0 means 1) at local
// midnight; in a month shorter than the anchor it starts on the month's last
// day, so anchor 31 gives Jan 31, Feb 28 (29), Mar 31, Apr 30, ...
//
// Where a zone skips local midnight (America/Santiago, America/Havana move
// their clocks at 00:00), a period starts at the first instant of its local
// day; where midnight happens twice, at the first of them.
//
// Window does not allocate.
func (q *Quota) Window(now time.Time) (start, end time.Time) {
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	local := now.In(loc)
	y, m, d := local.Date()

	// The local date the period starts on; next gives the date the
	// following period starts on.
	switch q.Period {
	case Week:
		d -= (int(local.Weekday()) - int(q.WeekStart) + 7) % 7
	case Month:
		if d < anchorIn(y, m, q.AnchorDay) {
			y, m = prevMonth(y, m)
		}
		d = anchorIn(y, m, q.AnchorDay)
	}

	wall := wallMidnight(y, m, d)
	start = firstInstantAt(wall, loc)
	// Only a zone whose local date runs backwards across a transition can
	// leave now past end; the period is then a later one. A handful of
	// steps covers every such transition of the tz database.
	for range 4 {
		end = firstInstantAt(q.next(wall), loc)
		if now.Before(end) {
			break
		}
		wall, start = q.next(wall), end
	}
	return start, end
}

// next returns the wall midnight (seconds, as if UTC) that the period after
// the one starting at wall starts on.
func (q *Quota) next(wall int64) int64 {
	switch q.Period {
	case Week:
		return wall + 7*secondsPerDay
	case Month:
		y, m, _ := time.Unix(wall, 0).UTC().Date()
		y, m = nextMonth(y, m)
		return wallMidnight(y, m, anchorIn(y, m, q.AnchorDay))
	default:
		return wall + secondsPerDay
	}
}

const (
	secondsPerDay = 24 * 60 * 60
)

// wallMidnight returns the local midnight that starts y-m-d as seconds since
// the Unix epoch as if the wall clock were UTC. d may be out of range (0,
// negative, past the month's end) and is normalized as by time.Date.
func wallMidnight(y int, m time.Month, d int) int64 {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()
}

// firstInstantAt returns the first instant whose wall clock in loc reads
// wall (seconds as if UTC) or later.
//
// time.Date alone does not serve: for a local midnight that falls in a gap
// it may return an instant of the previous day (America/Santiago 2025-09-07
// 00:00 gives 2025-09-06 23:00 -04), and for one that happens twice it may
// return the second.
func firstInstantAt(wall int64, loc *time.Location) time.Time {
	y, m, d := time.Unix(wall, 0).UTC().Date()
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	_, off := t.Zone()
	start, end := t.ZoneBounds()
	switch reads := t.Unix() + int64(off); {
	case reads < wall && !end.IsZero():
		// wall is in a gap and t is before it: the gap's end is the
		// first instant reading wall or later.
		return end
	case reads > wall && !start.IsZero():
		// wall is in a gap and t is after it: the gap's end is the start
		// of t's zone period.
		return start
	case !start.IsZero():
		// The clock may have read wall, or later, before t's zone period
		// began (it went back at start).
		before := start.Add(-time.Second)
		_, prev := before.Zone()
		if c := wall - int64(prev); c < start.Unix() {
			if ps, _ := before.ZoneBounds(); ps.IsZero() || c >= ps.Unix() {
				return time.Unix(c, 0).In(loc)
			}
		}
	}
	return t
}

// anchorIn returns the day a month period with the given anchor starts on in
// month y-m: the anchor, or the month's last day when the month is shorter.
func anchorIn(y int, m time.Month, anchor int) int {
	if anchor < 1 {
		anchor = 1
	}
	return min(anchor, daysIn(y, m))
}

var monthDays = [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

func daysIn(y int, m time.Month) int {
	if m == time.February && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		return 29
	}
	return monthDays[m-1]
}

func prevMonth(y int, m time.Month) (int, time.Month) {
	if m == time.January {
		return y - 1, time.December
	}
	return y, m - 1
}

func nextMonth(y int, m time.Month) (int, time.Month) {
	if m == time.December {
		return y + 1, time.January
	}
	return y, m + 1
}
