package file

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

// benchOps fills b with a keyed request's batch by customer: four buckets,
// a quota and the usage counter.
func benchOps(b *policy.Batch, customer string, end time.Time) {
	b.Reset()
	b.Ops = append(b.Ops,
		policy.Op{Key: policy.Key{Limit: "plan/pro", Subject: customer}, Tier: policy.TierPlan, Throttle: policy.NewThrottle(1e6, 1e9)},
		policy.Op{Key: policy.Key{Limit: "route"}, Tier: policy.TierRoute, Throttle: policy.NewThrottle(1e9, 1e9)},
		policy.Op{Key: policy.Key{Limit: "stage"}, Tier: policy.TierStage, Throttle: policy.NewThrottle(1e9, 1e9)},
		policy.Op{Key: policy.Key{Limit: "account"}, Tier: policy.TierAccount, Throttle: policy.NewThrottle(1e9, 1e9)},
		policy.Op{Key: policy.Key{Limit: "quota/pro", Subject: customer, Period: dayStart.Unix()}, Tier: policy.TierQuota, Quota: 1 << 40, End: end},
	)
	b.Usage = policy.Key{Limit: "usage/pro", Subject: customer, Period: dayStart.Unix()}
}

// BenchmarkApply compares one keyed request's Apply over 10,000 customers
// on the memory store and on the file store, whose flusher writes the
// changed counters every 100ms (10 times as often as the default) while
// the benchmark runs: the difference is what the journal and the flusher
// cost the decision path.
func BenchmarkApply(b *testing.B) {
	const n = 10000
	customers := make([]string, n)
	for i := range customers {
		customers[i] = fmt.Sprintf("customer-%05d", i)
	}
	run := func(b *testing.B, st policy.State) {
		var bt policy.Batch
		for i, c := range customers {
			benchOps(&bt, c, dayEnd)
			if err := st.Apply(t0.Add(time.Duration(i)), &bt); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			benchOps(&bt, customers[i%n], dayEnd)
			if err := st.Apply(t0.Add(time.Duration(i)*time.Microsecond), &bt); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, memory.New()) })
	b.Run("file", func(b *testing.B) {
		c := testclock.New(t0)
		s, err := Open(b.TempDir(), Options{FlushInterval: 100 * time.Millisecond, Now: c.Now})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
}

// BenchmarkFlush is one flush after each of 10,000 customers made a request:
// 20,000 counters (quota and usage) written in one transaction, with fsync.
func BenchmarkFlush(b *testing.B) {
	c := testclock.New(t0)
	s, err := Open(b.TempDir(), Options{FlushInterval: time.Hour, Now: c.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	customers := make([]string, 10000)
	for i := range customers {
		customers[i] = fmt.Sprintf("customer-%05d", i)
	}
	var bt policy.Batch
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		for _, cu := range customers {
			benchOps(&bt, cu, dayEnd)
			if err := s.Apply(t0.Add(time.Duration(i)*time.Microsecond), &bt); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.StartTimer()
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
