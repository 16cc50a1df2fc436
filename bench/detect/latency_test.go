package detectbench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/detect/sigma"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/server"
)

// heard is one alert the server's detection committed, and when the sink heard of it.
type heard struct {
	subject string
	at      time.Time
}

type sinkFunc func(ctx context.Context, recs []detect.Recorded)

func (f sinkFunc) Fired(ctx context.Context, recs []detect.Recorded) { f(ctx, recs) }

// BenchmarkDetectCommitToAlert measures ledger commit → alert in the ledger on a real control
// plane (server.Start, SQLite, the demo policy plus one rule converted from Sigma, detection with
// its defaults: poll interval 200ms): a token is issued (a token.issue entry committed), and the
// time until the server's detection has committed the detect.alert for it (its sink is told
// after the commit) is one sample. Issues are paced one at a time.
func BenchmarkDetectCommitToAlert(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	policyDir := filepath.Join(dir, "policy")
	if err := os.MkdirAll(policyDir, 0o700); err != nil {
		b.Fatal(err)
	}
	demo, err := filepath.Glob("../../internal/demo/policy/*.yaml")
	if err != nil || len(demo) == 0 {
		b.Fatalf("demo policy: %v", err)
	}
	for _, f := range demo {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(policyDir, filepath.Base(f)), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	rules, err := sigma.Convert([]sigma.File{{Name: "latency.yml", Data: []byte(`title: Latency probe token
logsource: {product: rampart, service: token}
detection:
  sel:
    EventCode: token.issue
    User|startswith: lat-
  condition: sel
`)}}, sigma.DefaultMapping())
	if err != nil {
		b.Fatal(err)
	}
	y, err := sigma.Marshal(rules)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policyDir, "detection.yaml"), y, 0o600); err != nil {
		b.Fatal(err)
	}
	heardCh := make(chan heard, 1024)
	sink := sinkFunc(func(_ context.Context, recs []detect.Recorded) {
		now := time.Now()
		for _, r := range recs {
			heardCh <- heard{r.Firing.Subject, now}
		}
	})
	on := true
	cfg := server.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), PolicyDir: policyDir,
		Store: server.StoreConfig{Driver: "sqlite"}, Detection: server.DetectionConfig{Enabled: &on}}
	in, err := server.Start(ctx, cfg, server.Options{DetectSink: sink,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	n := envInt("RAMPART_BENCH_DETECT_ALERTS", 200)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		actor := fmt.Sprintf("lat-%d", i)
		if _, _, err := in.Tokens.Issue(ctx, "service:lat", identity.KindService, "latency probe", actor, time.Hour); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		deadline := time.After(30 * time.Second) // a failure limit, not a wait
		for got := false; !got; {
			select {
			case h := <-heardCh:
				if h.subject == actor {
					lat = append(lat, max(0, h.at.Sub(committed)))
					got = true
				}
			case <-deadline:
				b.Fatalf("no alert for %s within 30s", actor)
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99-ms")
	fmt.Printf("detect ledger commit → alert committed, %d alerts on SQLite, poll interval %s: p50 %s, p99 %s, max %s (target p99 < 1s: %s); %s\n",
		len(lat), server.DefaultDetectPoll, p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond),
		map[bool]string{true: "met", false: "MISSED"}[p(0.99) < time.Second], loadAverage())
}
