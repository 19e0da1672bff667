package policy

import (
	"math"
	"math/bits"
	"time"
)

// nanoTokens is the fixed-point unit of bucket arithmetic: one token is 1e9
// units, so a bucket refills exactly for any rate with up to six decimals.
const nanoTokens = 1_000_000_000

// maxBurst bounds burst so that a full bucket fits in int64 nano-tokens.
const maxBurst = 1_000_000_000

// maxRateMicro bounds rate (1e9 requests per second) in micro-requests.
const maxRateMicro = 1_000_000_000 * 1_000_000

// forever stands for "never admits" (rate 0 or burst 0): callers cap it.
const forever = time.Duration(math.MaxInt64)

// Throttle is a token-bucket limit: Rate requests per second refill a bucket
// of Burst tokens. The zero Throttle admits nothing (the 0/0 switch).
type Throttle struct {
	// RateMicro is the refill rate in millionths of a request per second.
	RateMicro uint64
	Burst     int64
	// Shadow is mode: shadow (SPEC §10): the bucket is counted but never
	// denies. The bucket arithmetic ignores it, and so does the limit's
	// state key: a limit switched between modes keeps its state.
	Shadow bool
}

// NewThrottle returns the throttle of rate requests per second and burst.
// Rate is rounded to six decimals.
func NewThrottle(rate float64, burst int64) Throttle {
	return Throttle{RateMicro: uint64(math.Round(rate * 1e6)), Burst: burst}
}

// Rate returns the refill rate in requests per second.
func (t Throttle) Rate() float64 { return float64(t.RateMicro) / 1e6 }

// Bucket is the state of one token bucket. The zero Bucket is a new, full
// bucket: Last zero means "never used".
type Bucket struct {
	// Tokens is the bucket's content in nano-tokens at Last.
	Tokens int64
	// Last is the instant of Tokens in Unix nanoseconds.
	Last int64
}

// At returns the bucket refilled up to now. A clock that goes backwards
// refills nothing and never moves Last back.
func (t Throttle) At(b Bucket, now time.Time) Bucket {
	full := t.Burst * nanoTokens
	n := now.UnixNano()
	if b.Last == 0 {
		return Bucket{Tokens: full, Last: n}
	}
	if n <= b.Last {
		return b
	}
	if b.Tokens >= full {
		return Bucket{Tokens: full, Last: n}
	}
	hi, lo := bits.Mul64(t.RateMicro, uint64(n-b.Last))
	if hi >= 1_000_000 {
		return Bucket{Tokens: full, Last: n}
	}
	add, _ := bits.Div64(hi, lo, 1_000_000)
	if add >= uint64(full-b.Tokens) {
		return Bucket{Tokens: full, Last: n}
	}
	return Bucket{Tokens: b.Tokens + int64(add), Last: n}
}

// Admits reports whether a refilled bucket holds a whole token.
func (t Throttle) Admits(b Bucket) bool { return b.Tokens >= nanoTokens }

// Take returns a refilled bucket less one token. Call it only when Admits.
func (t Throttle) Take(b Bucket) Bucket {
	b.Tokens -= nanoTokens
	return b
}

// Remaining returns the whole tokens in a refilled bucket.
func (t Throttle) Remaining(b Bucket) int64 { return b.Tokens / nanoTokens }

// Wait returns how long a refilled bucket needs until it holds a whole token;
// forever when it never will.
func (t Throttle) Wait(b Bucket) time.Duration {
	if b.Tokens >= nanoTokens {
		return 0
	}
	return t.fillTime(nanoTokens - b.Tokens)
}

// Reset returns how long a refilled bucket needs until it is full.
func (t Throttle) Reset(b Bucket) time.Duration {
	full := t.Burst * nanoTokens
	if b.Tokens >= full {
		return 0
	}
	return t.fillTime(full - b.Tokens)
}

// Window returns the time an empty bucket takes to fill.
func (t Throttle) Window() time.Duration {
	if t.Burst == 0 {
		return 0
	}
	return t.fillTime(t.Burst * nanoTokens)
}

// Full reports whether a bucket last seen as b is full at now: such a bucket
// carries no information and may be dropped.
func (t Throttle) Full(b Bucket, now time.Time) bool {
	return t.At(b, now).Tokens >= t.Burst*nanoTokens
}

// fillTime returns the time to add need nano-tokens, rounded up to the
// nanosecond.
func (t Throttle) fillTime(need int64) time.Duration {
	if t.RateMicro == 0 || need > t.Burst*nanoTokens {
		return forever
	}
	// need nano-tokens at RateMicro/1e6 tokens per second take
	// need*1e6/RateMicro nanoseconds.
	hi, lo := bits.Mul64(uint64(need), 1_000_000)
	if hi >= t.RateMicro {
		return forever
	}
	q, r := bits.Div64(hi, lo, t.RateMicro)
	if r != 0 {
		q++
	}
	if q > math.MaxInt64 {
		return forever
	}
	return time.Duration(q)
}
