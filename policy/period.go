package policy

import "time"

// Window returns the quota period that holds now: [start, end).
func (q *Quota) Window(now time.Time) (start, end time.Time) {
	return now, now
}
