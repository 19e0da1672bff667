package policy

import (
	"math/rand/v2"
	"testing"
	"time"
	_ "time/tzdata" // the zone tests must not depend on the machine's zoneinfo
)

// periodLoc loads an IANA zone or fails the test.
func periodLoc(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		tb.Fatalf("load %s: %v", name, err)
	}
	return loc
}

// rfc parses an RFC 3339 instant; the offset written says which local time
// is meant.
func rfc(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		tb.Fatalf("parse %s: %v", s, err)
	}
	return t
}

// windowStep expects Window(now) to be [start, end); all three are RFC 3339.
type windowStep struct {
	now, start, end string
}

func runWindowSteps(t *testing.T, q Quota, steps []windowStep) {
	t.Helper()
	want := q.Location
	if want == nil {
		want = time.UTC
	}
	for i, s := range steps {
		start, end := q.Window(rfc(t, s.now))
		if ws, we := rfc(t, s.start), rfc(t, s.end); !start.Equal(ws) || !end.Equal(we) {
			t.Errorf("step %d: Window(%s): got [%s, %s), want [%s, %s)", i, s.now, start, end, ws.In(want), we.In(want))
		}
		if start.Location() != want || end.Location() != want {
			t.Errorf("step %d: Window(%s): got locations %v, %v, want %v", i, s.now, start.Location(), end.Location(), want)
		}
	}
}

// TestQuotaDayWorkedCheck is the worked check of the package doc's "The decision": with a day quota,
// 23:59:58Z is in the day that ends at 00:00:00Z, which starts a new one.
func TestQuotaDayWorkedCheck(t *testing.T) {
	runWindowSteps(t, Quota{Limit: 5, Period: Day}, []windowStep{
		{"2026-11-20T23:59:58Z", "2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z"},
		{"2026-11-20T23:59:59.999999999Z", "2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z"},
		{"2026-11-21T00:00:00Z", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"},
		{"2026-11-21T00:00:00.000000001Z", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"},
		{"2026-12-31T23:59:59Z", "2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"2028-02-28T12:00:00Z", "2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z"},
		// now written in another zone is the same instant.
		{"2026-11-21T01:30:00+02:00", "2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z"},
	})
}

// TestQuotaDayUsesQuotaZoneNotUTC guards against taking the date of now in
// UTC: 23:30Z on the 20th is already the 21st in Tokyo.
func TestQuotaDayUsesQuotaZoneNotUTC(t *testing.T) {
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "Asia/Tokyo")}, []windowStep{
		{"2026-11-20T14:59:59Z", "2026-11-20T00:00:00+09:00", "2026-11-21T00:00:00+09:00"},
		{"2026-11-20T15:00:00Z", "2026-11-21T00:00:00+09:00", "2026-11-22T00:00:00+09:00"},
		{"2026-11-20T23:30:00Z", "2026-11-21T00:00:00+09:00", "2026-11-22T00:00:00+09:00"},
	})
}

func TestQuotaWeekStartMonday(t *testing.T) {
	// 2026-11-16 is a Monday.
	runWindowSteps(t, Quota{Period: Week, WeekStart: time.Monday, Location: periodLoc(t, "Asia/Tokyo")}, []windowStep{
		{"2026-11-20T12:00:00+09:00", "2026-11-16T00:00:00+09:00", "2026-11-23T00:00:00+09:00"},
		{"2026-11-16T00:00:00+09:00", "2026-11-16T00:00:00+09:00", "2026-11-23T00:00:00+09:00"},
		// Sunday in Tokyo, still Sunday in UTC.
		{"2026-11-15T23:59:59.999999999+09:00", "2026-11-09T00:00:00+09:00", "2026-11-16T00:00:00+09:00"},
		// Monday in Tokyo, Sunday in UTC.
		{"2026-11-15T15:00:00Z", "2026-11-16T00:00:00+09:00", "2026-11-23T00:00:00+09:00"},
		{"2026-11-22T23:59:59+09:00", "2026-11-16T00:00:00+09:00", "2026-11-23T00:00:00+09:00"},
		// Across the year: Thursday 2026-01-01 is in the week of Monday 2025-12-29.
		{"2026-01-01T00:00:00+09:00", "2025-12-29T00:00:00+09:00", "2026-01-05T00:00:00+09:00"},
	})
}

func TestQuotaWeekStartSunday(t *testing.T) {
	runWindowSteps(t, Quota{Period: Week, WeekStart: time.Sunday, Location: periodLoc(t, "America/Los_Angeles")}, []windowStep{
		{"2026-11-22T10:00:00-08:00", "2026-11-22T00:00:00-08:00", "2026-11-29T00:00:00-08:00"},
		{"2026-11-22T00:00:00-08:00", "2026-11-22T00:00:00-08:00", "2026-11-29T00:00:00-08:00"},
		{"2026-11-21T23:59:59.999999999-08:00", "2026-11-15T00:00:00-08:00", "2026-11-22T00:00:00-08:00"},
		// Saturday evening in Los Angeles is Sunday in UTC.
		{"2026-11-22T05:00:00Z", "2026-11-15T00:00:00-08:00", "2026-11-22T00:00:00-08:00"},
		{"2026-11-28T23:59:59-08:00", "2026-11-22T00:00:00-08:00", "2026-11-29T00:00:00-08:00"},
	})
}

func TestQuotaMonthAnchor1(t *testing.T) {
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 1}, []windowStep{
		{"2026-11-20T12:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"2026-10-31T23:59:59.999999999Z", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"},
		{"2026-12-31T23:59:59.999999999Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"2027-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"},
		{"2027-02-14T00:00:00Z", "2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z"},
	})
}

// TestQuotaMonthAnchorZeroMeansFirst guards the zero value of AnchorDay.
func TestQuotaMonthAnchorZeroMeansFirst(t *testing.T) {
	runWindowSteps(t, Quota{Period: Month}, []windowStep{
		{"2026-11-20T12:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
	})
}

// TestQuotaMonthBeforeAnchorStartedLastMonth guards the days of a month
// before its anchor, which belong to the period that started the month
// before (across a year, too).
func TestQuotaMonthBeforeAnchorStartedLastMonth(t *testing.T) {
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 15}, []windowStep{
		{"2026-11-14T23:59:59.999999999Z", "2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z"},
		{"2026-11-15T00:00:00Z", "2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z"},
		{"2026-11-30T12:00:00Z", "2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z"},
		{"2027-01-10T00:00:00Z", "2026-12-15T00:00:00Z", "2027-01-15T00:00:00Z"},
		{"2026-12-20T00:00:00Z", "2026-12-15T00:00:00Z", "2027-01-15T00:00:00Z"},
		{"2027-02-28T00:00:00Z", "2027-02-15T00:00:00Z", "2027-03-15T00:00:00Z"},
	})
}

// TestQuotaMonthAnchor31InThirtyDayMonth guards the short-month rule: the
// period of April starts on April 30, and May's on May 31 again.
func TestQuotaMonthAnchor31InThirtyDayMonth(t *testing.T) {
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 31}, []windowStep{
		{"2026-04-29T12:00:00Z", "2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"},
		{"2026-04-01T00:00:00Z", "2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"},
		{"2026-04-29T23:59:59.999999999Z", "2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"},
		{"2026-04-30T00:00:00Z", "2026-04-30T00:00:00Z", "2026-05-31T00:00:00Z"},
		{"2026-05-30T23:59:59Z", "2026-04-30T00:00:00Z", "2026-05-31T00:00:00Z"},
		{"2026-05-31T00:00:00Z", "2026-05-31T00:00:00Z", "2026-06-30T00:00:00Z"},
		{"2026-12-31T00:00:00Z", "2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z"},
		{"2026-12-30T23:59:59Z", "2026-11-30T00:00:00Z", "2026-12-31T00:00:00Z"},
	})
}

func TestQuotaMonthAnchor31InFebruaryOfNonLeapYear(t *testing.T) {
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 31}, []windowStep{
		{"2027-02-27T23:59:59Z", "2027-01-31T00:00:00Z", "2027-02-28T00:00:00Z"},
		{"2027-02-28T00:00:00Z", "2027-02-28T00:00:00Z", "2027-03-31T00:00:00Z"},
		{"2027-03-30T23:59:59Z", "2027-02-28T00:00:00Z", "2027-03-31T00:00:00Z"},
		{"2027-03-31T00:00:00Z", "2027-03-31T00:00:00Z", "2027-04-30T00:00:00Z"},
		// 2100 is not a leap year.
		{"2100-02-28T00:00:00Z", "2100-02-28T00:00:00Z", "2100-03-31T00:00:00Z"},
	})
}

func TestQuotaMonthAnchor31InFebruaryOfLeapYear(t *testing.T) {
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 31}, []windowStep{
		{"2028-02-28T23:59:59.999999999Z", "2028-01-31T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"2028-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"},
		{"2028-03-30T00:00:00Z", "2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"},
		// 2000 is a leap year.
		{"2000-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2000-03-31T00:00:00Z"},
	})
}

// TestQuotaMonthAnchor29And30InFebruary guards anchors that February has in
// leap years only, or never.
func TestQuotaMonthAnchor29And30InFebruary(t *testing.T) {
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 29}, []windowStep{
		{"2027-02-27T00:00:00Z", "2027-01-29T00:00:00Z", "2027-02-28T00:00:00Z"},
		{"2027-02-28T00:00:00Z", "2027-02-28T00:00:00Z", "2027-03-29T00:00:00Z"},
		{"2028-02-28T00:00:00Z", "2028-01-29T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"2028-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2028-03-29T00:00:00Z"},
	})
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 30}, []windowStep{
		{"2028-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2028-03-30T00:00:00Z"},
		{"2028-03-29T23:59:59Z", "2028-02-29T00:00:00Z", "2028-03-30T00:00:00Z"},
	})
}

// TestQuotaMonthInZoneAcrossDST: November in New York starts in EDT and ends
// in EST, 30 days and one hour.
func TestQuotaMonthInZoneAcrossDST(t *testing.T) {
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 1, Location: periodLoc(t, "America/New_York")}, []windowStep{
		{"2026-12-01T03:00:00Z", "2026-11-01T00:00:00-04:00", "2026-12-01T00:00:00-05:00"},
		{"2026-12-01T05:00:00Z", "2026-12-01T00:00:00-05:00", "2027-01-01T00:00:00-05:00"},
	})
}

// TestQuotaDaySpringForwardIs23Hours: New York skips 02:00-03:00 on
// 2026-03-08, Berlin 02:00-03:00 on 2026-03-29.
func TestQuotaDaySpringForwardIs23Hours(t *testing.T) {
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "America/New_York")}, []windowStep{
		{"2026-03-08T01:59:59-05:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"},
		{"2026-03-08T03:00:00-04:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"},
		{"2026-03-08T23:59:59-04:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"},
		{"2026-03-09T00:00:00-04:00", "2026-03-09T00:00:00-04:00", "2026-03-10T00:00:00-04:00"},
	})
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "Europe/Berlin")}, []windowStep{
		{"2026-03-29T01:59:59+01:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"},
		{"2026-03-29T03:00:00+02:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"},
		{"2026-03-28T23:59:59+01:00", "2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00"},
	})
}

// TestQuotaDayFallBackIs25Hours: New York repeats 01:00-02:00 on 2026-11-01,
// Berlin 02:00-03:00 on 2026-10-25; both repeats are in the same day.
func TestQuotaDayFallBackIs25Hours(t *testing.T) {
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "America/New_York")}, []windowStep{
		{"2026-11-01T01:30:00-04:00", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"},
		{"2026-11-01T01:30:00-05:00", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"},
		{"2026-11-01T23:59:59-05:00", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"},
		{"2026-10-31T23:59:59-04:00", "2026-10-31T00:00:00-04:00", "2026-11-01T00:00:00-04:00"},
	})
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "Europe/Berlin")}, []windowStep{
		{"2026-10-25T02:30:00+02:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"},
		{"2026-10-25T02:30:00+01:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"},
	})
}

// TestQuotaWeekContainsDSTChange: a week with a spring-forward day is 167
// hours, one with a fall-back day 169.
func TestQuotaWeekContainsDSTChange(t *testing.T) {
	runWindowSteps(t, Quota{Period: Week, WeekStart: time.Monday, Location: periodLoc(t, "America/New_York")}, []windowStep{
		{"2026-03-08T12:00:00-04:00", "2026-03-02T00:00:00-05:00", "2026-03-09T00:00:00-04:00"},
		{"2026-03-09T00:00:00-04:00", "2026-03-09T00:00:00-04:00", "2026-03-16T00:00:00-04:00"},
	})
	runWindowSteps(t, Quota{Period: Week, WeekStart: time.Sunday, Location: periodLoc(t, "Europe/Berlin")}, []windowStep{
		{"2026-10-25T02:30:00+01:00", "2026-10-25T00:00:00+02:00", "2026-11-01T00:00:00+01:00"},
		{"2026-10-31T23:59:59+01:00", "2026-10-25T00:00:00+02:00", "2026-11-01T00:00:00+01:00"},
		{"2026-10-24T23:59:59+02:00", "2026-10-18T00:00:00+02:00", "2026-10-25T00:00:00+02:00"},
	})
}

// TestQuotaDayStartsAfterSkippedMidnight guards zones that spring forward at
// midnight: local 00:00 does not exist, and time.Date(.., 0, 0, 0, 0, loc)
// returns 23:00 of the day before (2026-09-05 23:00 -04 in Santiago,
// 2026-03-07 23:00 CST in Havana). The day starts at 01:00, the first instant
// of its local date, and is 23 hours long; the day before keeps its 24.
func TestQuotaDayStartsAfterSkippedMidnight(t *testing.T) {
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "America/Santiago")}, []windowStep{
		{"2026-09-05T23:59:59-04:00", "2026-09-05T00:00:00-04:00", "2026-09-06T01:00:00-03:00"},
		{"2026-09-06T01:00:00-03:00", "2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"},
		{"2026-09-06T12:00:00-03:00", "2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"},
	})
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "America/Havana")}, []windowStep{
		{"2026-03-07T23:00:00-05:00", "2026-03-07T00:00:00-05:00", "2026-03-08T01:00:00-04:00"},
		{"2026-03-07T23:59:59.999999999-05:00", "2026-03-07T00:00:00-05:00", "2026-03-08T01:00:00-04:00"},
		{"2026-03-08T01:00:00-04:00", "2026-03-08T01:00:00-04:00", "2026-03-09T00:00:00-04:00"},
	})
}

// TestQuotaWeekStartsAfterSkippedMidnight: a Sunday week in Santiago whose
// Sunday has no midnight starts at 01:00 and is 167 hours long.
func TestQuotaWeekStartsAfterSkippedMidnight(t *testing.T) {
	runWindowSteps(t, Quota{Period: Week, WeekStart: time.Sunday, Location: periodLoc(t, "America/Santiago")}, []windowStep{
		{"2026-09-06T04:00:00Z", "2026-09-06T01:00:00-03:00", "2026-09-13T00:00:00-03:00"},
		{"2026-09-06T03:59:59Z", "2026-08-30T00:00:00-04:00", "2026-09-06T01:00:00-03:00"},
	})
	runWindowSteps(t, Quota{Period: Month, AnchorDay: 6, Location: periodLoc(t, "America/Santiago")}, []windowStep{
		{"2026-09-20T00:00:00-03:00", "2026-09-06T01:00:00-03:00", "2026-10-06T00:00:00-03:00"},
	})
}

// TestQuotaDayStartsAtFirstOfTwoMidnights guards zones that fall back at
// 01:00 to 00:00 (Havana, 2026-11-01): midnight happens twice and the day
// starts at the first, so it is 25 hours long. Santiago falls back from
// 00:00 to 23:00 (2026-04-05): the day before holds the repeated hour.
func TestQuotaDayStartsAtFirstOfTwoMidnights(t *testing.T) {
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "America/Havana")}, []windowStep{
		{"2026-11-01T00:30:00-04:00", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"},
		{"2026-11-01T00:30:00-05:00", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"},
		{"2026-10-31T23:59:59-04:00", "2026-10-31T00:00:00-04:00", "2026-11-01T00:00:00-04:00"},
	})
	runWindowSteps(t, Quota{Period: Day, Location: periodLoc(t, "America/Santiago")}, []windowStep{
		{"2026-04-04T23:30:00-03:00", "2026-04-04T00:00:00-03:00", "2026-04-05T00:00:00-04:00"},
		{"2026-04-04T23:30:00-04:00", "2026-04-04T00:00:00-03:00", "2026-04-05T00:00:00-04:00"},
		{"2026-04-05T00:00:00-04:00", "2026-04-05T00:00:00-04:00", "2026-04-06T00:00:00-04:00"},
	})
}

// TestQuotaDaySkippedDate guards a local date that never happens: Apia went
// from 2011-12-29 straight to 2011-12-31. The 29th ends where the 31st
// starts, and a Friday week (the 30th was a Friday) starts on the 31st.
func TestQuotaDaySkippedDate(t *testing.T) {
	apia := periodLoc(t, "Pacific/Apia")
	runWindowSteps(t, Quota{Period: Day, Location: apia}, []windowStep{
		{"2011-12-29T23:59:59-10:00", "2011-12-29T00:00:00-10:00", "2011-12-31T00:00:00+14:00"},
		{"2011-12-31T00:00:00+14:00", "2011-12-31T00:00:00+14:00", "2012-01-01T00:00:00+14:00"},
	})
	runWindowSteps(t, Quota{Period: Week, WeekStart: time.Friday, Location: apia}, []windowStep{
		{"2011-12-29T12:00:00-10:00", "2011-12-23T00:00:00-10:00", "2011-12-31T00:00:00+14:00"},
		{"2012-01-05T12:00:00+14:00", "2011-12-31T00:00:00+14:00", "2012-01-06T00:00:00+14:00"},
	})
}

// periodSetting is one quota shape of the property test.
type periodSetting struct {
	name string
	q    Quota
}

var periodSettings = []periodSetting{
	{"day", Quota{Period: Day}},
	{"week monday", Quota{Period: Week, WeekStart: time.Monday}},
	{"week sunday", Quota{Period: Week, WeekStart: time.Sunday}},
	{"week saturday", Quota{Period: Week, WeekStart: time.Saturday}},
	{"month 0", Quota{Period: Month}},
	{"month 15", Quota{Period: Month, AnchorDay: 15}},
	{"month 29", Quota{Period: Month, AnchorDay: 29}},
	{"month 31", Quota{Period: Month, AnchorDay: 31}},
}

var periodZones = []string{
	"", // nil Location: UTC
	"America/New_York", "Europe/Berlin", "America/Santiago", "America/Havana",
	"Asia/Beirut", "Australia/Lord_Howe", "Pacific/Chatham", "Pacific/Apia",
	"Asia/Kathmandu", "America/St_Johns", "Africa/Casablanca", "Europe/Dublin",
	"Pacific/Kiritimati", "America/Sao_Paulo",
}

// refStartDate is the local date the period holding local date y-m-d starts
// on, and the date the next one starts on, computed the slow obvious way.
func refStartDate(q Quota, y int, m time.Month, d int) (start, next time.Time) {
	date := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	anchor := func(y int, m time.Month) time.Time {
		last := date(y, m+1, 0).Day()
		a := q.AnchorDay
		if a == 0 {
			a = 1
		}
		return date(y, m, min(a, last))
	}
	switch q.Period {
	case Week:
		s := date(y, m, d)
		for s.Weekday() != q.WeekStart {
			s = s.AddDate(0, 0, -1)
		}
		return s, s.AddDate(0, 0, 7)
	case Month:
		s := anchor(y, m)
		if date(y, m, d).Before(s) {
			p := date(y, m-1, 1)
			s = anchor(p.Year(), p.Month())
		}
		n := date(s.Year(), s.Month()+1, 1)
		return s, anchor(n.Year(), n.Month())
	default:
		s := date(y, m, d)
		return s, s.AddDate(0, 0, 1)
	}
}

// refFirstInstant is the first instant whose wall clock in loc reads date's
// midnight or later, found by walking loc's zone periods from 18 hours
// before it.
func refFirstInstant(date time.Time, loc *time.Location) time.Time {
	t := time.Unix(date.Unix()-18*3600, 0).In(loc)
	for {
		_, off := t.Zone()
		_, end := t.ZoneBounds()
		c := date.Unix() - int64(off)
		if c <= t.Unix() {
			return t // the zone period begins past date's midnight
		}
		if end.IsZero() || c < end.Unix() {
			return time.Unix(c, 0).In(loc)
		}
		if !end.After(t) {
			// Go's ZoneBounds ends zone periods made by a zone's
			// yearly rule at the year's end, where nothing changes,
			// and there may return t itself.
			end = t.Add(time.Second)
		}
		t = end
	}
}

// refWindow is the period holding now: the one of now's local date, or a
// later one where the clock went back over midnight (America/St_Johns moved
// its clocks at 00:01 until 2011, so midnight happened twice; a period starts
// at the first of them).
func refWindow(q Quota, loc *time.Location, now time.Time) (start, end time.Time) {
	y, m, d := now.In(loc).Date()
	rs, rn := refStartDate(q, y, m, d)
	start, end = refFirstInstant(rs, loc), refFirstInstant(rn, loc)
	for !now.Before(end) {
		rs, rn = refStartDate(q, rn.Year(), rn.Month(), rn.Day())
		start, end = refFirstInstant(rs, loc), refFirstInstant(rn, loc)
	}
	return start, end
}

// checkWindow checks Window(now) against the reference and the partition
// properties: start <= now < end, Window(start) and Window(end-1ns) are the
// same period, Window(end) starts at end.
func checkWindow(t *testing.T, name string, q Quota, loc *time.Location, now time.Time) bool {
	t.Helper()
	start, end := q.Window(now)
	ws, we := refWindow(q, loc, now)
	ok := true
	fail := func(format string, args ...any) {
		t.Errorf("%s: Window(%s): "+format, append([]any{name, now.In(loc).Format(time.RFC3339Nano)}, args...)...)
		ok = false
	}
	if !start.Equal(ws) || !end.Equal(we) {
		fail("got [%s, %s), want [%s, %s)", start, end, ws, we)
	}
	if now.Before(start) || !now.Before(end) {
		fail("got [%s, %s), which does not hold now", start, end)
	}
	if start.Location() != loc || end.Location() != loc {
		fail("got locations %v, %v, want %v", start.Location(), end.Location(), loc)
	}
	if s, e := q.Window(start); !s.Equal(start) || !e.Equal(end) {
		fail("Window(start): got [%s, %s), want [%s, %s)", s, e, start, end)
	}
	if s, e := q.Window(end.Add(-time.Nanosecond)); !s.Equal(start) || !e.Equal(end) {
		fail("Window(end-1ns): got [%s, %s), want [%s, %s)", s, e, start, end)
	}
	if s, _ := q.Window(end); !s.Equal(end) {
		fail("Window(end): got start %s, want %s", s, end)
	}
	return ok
}

// TestQuotaWindowProperties checks random instants from 1900 to 2100 and
// instants around every zone transition from 1970 to 2040, in zones with
// DST at midnight, half-hour DST, skipped dates and large offsets.
func TestQuotaWindowProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(20261120, 1))
	lo := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	hi := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	deltas := []time.Duration{-time.Hour, -time.Nanosecond, 0, time.Nanosecond, time.Hour, 13 * time.Hour}
	for _, zone := range periodZones {
		var loc *time.Location
		if zone != "" {
			loc = periodLoc(t, zone)
		}
		want := loc
		if want == nil {
			want = time.UTC
			zone = "UTC"
		}
		var instants []time.Time
		for range 300 {
			instants = append(instants, time.Unix(0, lo+rng.Int64N(hi-lo)))
		}
		for tr := time.Date(1970, 1, 1, 0, 0, 0, 0, want); tr.Year() < 2040; {
			_, next := tr.ZoneBounds()
			if next.IsZero() {
				break
			}
			for _, d := range deltas {
				instants = append(instants, next.Add(d))
			}
			tr = next
		}
		for _, s := range periodSettings {
			q := s.q
			q.Location = loc
			failed := 0
			for _, now := range instants {
				if !checkWindow(t, zone+" "+s.name, q, want, now) {
					failed++
				}
				if failed > 5 {
					break
				}
			}
		}
	}
}

func TestQuotaWindowDoesNotAllocate(t *testing.T) {
	now := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC)
	for i, zone := range []string{"UTC", "America/New_York", "America/Santiago"} {
		for _, s := range periodSettings {
			q := s.q
			q.Location = periodLoc(t, zone)
			if n := testing.AllocsPerRun(100, func() { q.Window(now) }); n != 0 {
				t.Errorf("step %d: %s %s: got %v allocations, want 0", i, zone, s.name, n)
			}
		}
	}
}

func BenchmarkQuotaWindow(b *testing.B) {
	cases := []struct {
		name string
		q    Quota
	}{
		{"day/UTC", Quota{Period: Day}},
		{"day/America_New_York", Quota{Period: Day, Location: periodLoc(b, "America/New_York")}},
		{"week/Europe_Berlin", Quota{Period: Week, WeekStart: time.Monday, Location: periodLoc(b, "Europe/Berlin")}},
		{"month31/America_Santiago", Quota{Period: Month, AnchorDay: 31, Location: periodLoc(b, "America/Santiago")}},
	}
	t0 := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var i int
			for b.Loop() {
				// A request every 7 minutes over about a year.
				c.q.Window(t0.Add(time.Duration(i%75000) * 7 * time.Minute))
				i++
			}
		})
	}
}
