package bench

import (
	"slices"
	"time"
)

// Latencies summarises individually timed calls.
type Latencies struct {
	N             int
	P50, P99, Max time.Duration
}

// Summarize sorts d in place and returns its percentiles. It returns the zero value for no
// samples.
func Summarize(d []time.Duration) Latencies {
	if len(d) == 0 {
		return Latencies{}
	}
	slices.Sort(d)
	return Latencies{N: len(d), P50: Percentile(d, 50), P99: Percentile(d, 99), Max: d[len(d)-1]}
}

// Percentile returns the p-th percentile (nearest rank) of sorted, which must not be empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

// TimeEach calls f n times, timing each call, and returns the durations. Query i%len(qs) is
// passed to call i.
func TimeEach(n int, qs []Query, f func(Query)) []time.Duration {
	out := make([]time.Duration, n)
	for i := range n {
		q := qs[i%len(qs)]
		t0 := time.Now()
		f(q)
		out[i] = time.Since(t0)
	}
	return out
}
