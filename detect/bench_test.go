package detect_test

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"rampart.dev/rampart/detect"
)

// benchEvents are a mix of codes as a busy ledger holds them.
func benchEvents(n int) []detect.Event {
	codes := []string{"weights.read", "request.create", "request.approve", "grant.activate", "egress.transfer", "check.denied", "session.create", "policy.load"}
	evs := make([]detect.Event, n)
	for i := range evs {
		evs[i] = detect.Event{Seq: int64(i + 1), Time: t0.Add(time.Duration(i) * time.Millisecond), Code: codes[i%len(codes)],
			Actor: fmt.Sprint("user", i%1000), User: fmt.Sprint("user", i%777), Resources: []string{fmt.Sprint("model/m", i%13)}, BytesOut: int64(i % 5000)}
	}
	return evs
}

func benchRules(stateful bool) []string {
	codes := []string{"weights.read", "request.create", "request.approve", "grant.activate", "egress.transfer", "check.denied", "x.one", "x.two", "x.three", "x.four"}
	var specs []string
	for i := 0; i < 50; i++ {
		s := fmt.Sprintf("  severity: low\n  condition: 'event.code == %q && event.actor != \"user%d\"'\n  group_by: [actor]\n", codes[i%len(codes)], i)
		if stateful {
			s += fmt.Sprintf("  threshold: {count: %d, window: 1m}\n", 1000+i)
		}
		specs = append(specs, s)
	}
	return specs
}

func benchProcess(b *testing.B, stateful bool) {
	e := engine(b, benchRules(stateful)...)
	evs := benchEvents(1 << 16)
	// On a shared machine wall time counts other processes' turns; the thread's CPU time is
	// what the engine used, and events per CPU-second is the per-core rate.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := threadCPU()
	for i := 0; i < b.N; i++ {
		ev := evs[i&(len(evs)-1)]
		ev.Seq = int64(i + 1)
		ev.Time = t0.Add(time.Duration(i) * time.Millisecond)
		e.Process(ev)
	}
	cpu := threadCPU() - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
	}
}

// BenchmarkProcessStateless: 50 stateless rules over a mixed ledger (target ≥ 1M events/s).
func BenchmarkProcessStateless(b *testing.B) { benchProcess(b, false) }

// BenchmarkProcessThreshold: 50 threshold rules (target ≥ 300k events/s).
func BenchmarkProcessThreshold(b *testing.B) { benchProcess(b, true) }

// threadCPU is the calling thread's CPU time (Linux RUSAGE_THREAD; 0 elsewhere).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
