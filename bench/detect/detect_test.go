package detectbench

// Detection: Rampart's engine (package detect) running Sigma rules converted by detect/sigma,
// beside github.com/markuskont/go-sigma-rule-engine running the same Sigma text, over the same
// generated events, in the same process and run, interleaved round by round (DESIGN.md §6).

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	peer "github.com/markuskont/go-sigma-rule-engine"

	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/detect/sigma"
	"rampart.dev/rampart/policy"
)

// detectEvents is how many events each round evaluates (RAMPART_BENCH_DETECT_EVENTS).
func detectEvents() int { return envInt("RAMPART_BENCH_DETECT_EVENTS", 1_000_000) }

// detectRounds is how many interleaved rounds are measured (RAMPART_BENCH_DETECT_ROUNDS).
func detectRounds() int { return envInt("RAMPART_BENCH_DETECT_ROUNDS", 5) }

// detectCodes is the mix of ledger codes, with weights: egress and weights traffic dominate, as
// in a lab where training jobs read checkpoints and tunnels report bytes every minute.
var detectCodes = []struct {
	code   string
	weight int
}{
	{"egress.transfer", 25}, {"weights.read", 18}, {"token.issue", 10}, {"signin.success", 9},
	{"secret.read", 8}, {"request.create", 5}, {"request.approve", 5}, {"grant.activate", 5},
	{"egress.denied", 4}, {"weights.denied", 2}, {"signin.refused", 2}, {"grant.expire", 3},
	{"session.step_up", 2}, {"policy.load", 1}, {"kube.binding.create", 1},
}

var detectWords = []string{"checkpoint", "eval", "training", "export", "nightly", "rollout", "debug", "shard"}

// detectRuleFiles returns the 50 Sigma rules of the comparison, as text. Every rule names the
// event code (as Sigma rules for one product's events do) and one to three other fields, and
// matches a small share of the events (detection rules are meant to match rarely: about 6.5 rule
// matches per 100 events); the values are lowercase, as the generated events are, so the
// peer (whose matching is case-sensitive) and Rampart (case-insensitive, as Sigma specifies)
// give the same answers.
func detectRuleFiles(threshold bool) map[string]string {
	out := map[string]string{}
	codes := []string{"weights.read", "secret.read", "token.issue", "signin.success", "grant.activate", "request.create"}
	agg := func(cond string) string {
		if !threshold {
			return "  condition: " + cond + "\n"
		}
		return "  timeframe: 10m\n  condition: " + cond + " | count() by User > 5\n"
	}
	for i := range 50 {
		var det string
		switch {
		case i < 15: // a code and a user prefix (about 2% of users)
			det = fmt.Sprintf("  sel:\n    EventCode: %s\n    User|startswith: u%d\n", codes[i%len(codes)], 10*(i%9+1)+i%10) + agg("sel")
		case i < 25: // egress to one of two hosts of a domain, or to another domain
			det = fmt.Sprintf("  sel:\n    EventCode: egress.transfer\n    dst_endpoint.hostname|endswith: ['h%d.d%d.example', 'h%d.d%d.example', '.d%d.example']\n", i, i, i+1, i, i+40) + agg("sel")
		case i < 35: // some checkpoints of one model, but not by its two owners
			det = fmt.Sprintf("  sel:\n    EventCode: weights.read\n    Resource|contains: /m%d/ckpt-4\n  filter:\n    User: [u%d, u%d]\n", i-25, i, i+100) + agg("sel and not filter")
		case i < 45: // refusals, or a request whose reason mentions a word
			det = fmt.Sprintf("  sel_refused:\n    EventCode: [signin.refused, egress.denied, weights.denied]\n    User|endswith: '%d7'\n  sel_request:\n    EventCode: request.create\n    User|startswith: u%d\n    Message|contains: %s\n", i%10, i-30, detectWords[i%len(detectWords)]) + agg("1 of sel_*")
		default: // a code and a list of users
			users := make([]string, 5)
			for k := range users {
				users[k] = fmt.Sprintf("u%d", 37*i+k)
			}
			det = fmt.Sprintf("  sel:\n    EventCode: %s\n    User: [%s]\n", codes[i%len(codes)], strings.Join(users, ", ")) + agg("sel")
		}
		title := fmt.Sprintf("bench rule %02d", i)
		out[fmt.Sprintf("rule%02d.yml", i)] = fmt.Sprintf("title: %s\nid: 00000000-0000-4000-8000-%012d\nlevel: medium\nlogsource: {product: rampart}\ndetection:\n%s", title, i, det)
	}
	return out
}

// detectEventSet generates n events deterministically.
func detectEventSet(n int, users int) []detect.Event {
	rng := rand.New(rand.NewPCG(2026, 17))
	total := 0
	for _, c := range detectCodes {
		total += c.weight
	}
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	evs := make([]detect.Event, n)
	for i := range evs {
		w := rng.IntN(total)
		code := detectCodes[0].code
		for _, c := range detectCodes {
			if w < c.weight {
				code = c.code
				break
			}
			w -= c.weight
		}
		// A few users do most of the work (a skewed draw).
		u := int(float64(users) * rng.Float64() * rng.Float64())
		ev := detect.Event{Seq: int64(i + 1), Time: t0.Add(time.Duration(i) * 100 * time.Millisecond), Code: code,
			Actor: fmt.Sprintf("u%d", u), ClassUID: 6003, SeverityID: 1}
		switch code {
		case "egress.transfer":
			ev.DstHost = fmt.Sprintf("h%d.d%d.example", rng.IntN(500), rng.IntN(40))
			ev.DstIP = fmt.Sprintf("203.0.%d.%d", rng.IntN(256), rng.IntN(256))
			ev.DstPort = 443
			ev.BytesOut = int64(rng.IntN(1 << 20))
			ev.Message = "tunnel bytes"
		case "weights.read", "weights.denied":
			ev.Resources = []string{fmt.Sprintf("frontier/m%d/ckpt-%d", rng.IntN(12), rng.IntN(50))}
			ev.Message = "weights read"
		case "request.create":
			ev.Message = "request for " + detectWords[rng.IntN(len(detectWords))] + " work"
			ev.Resources = []string{fmt.Sprintf("frontier/m%d", rng.IntN(12))}
		default:
			ev.Message = code
		}
		evs[i] = ev
	}
	return evs
}

// peerEvent adapts an event to the peer's Event interface, under the Sigma field names of the
// default mapping.
type peerEvent struct{ ev *detect.Event }

func (p peerEvent) Keywords() ([]string, bool) { return []string{p.ev.Message}, true }

func (p peerEvent) Select(key string) (any, bool) {
	switch key {
	case "EventCode":
		return p.ev.Code, true
	case "User":
		return p.ev.Actor, true
	case "Message":
		return p.ev.Message, true
	case "dst_endpoint.hostname":
		if p.ev.DstHost == "" {
			return nil, false
		}
		return p.ev.DstHost, true
	case "Resource":
		if len(p.ev.Resources) == 0 {
			return nil, false
		}
		return p.ev.Resources[0], true
	}
	return nil, false
}

// detectSetup converts the rules for Rampart and loads them in the peer.
func detectSetup(tb testing.TB, threshold bool) ([]*policy.DetectionRule, *peer.Ruleset) {
	tb.Helper()
	texts := detectRuleFiles(threshold)
	dir := tb.TempDir()
	var files []sigma.File
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range texts {
			if !yield(k) {
				return
			}
		}
	}) {
		files = append(files, sigma.File{Name: name, Data: []byte(texts[name])})
		if err := os.WriteFile(filepath.Join(dir, name), []byte(texts[name]), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	rules, err := sigma.Convert(files, sigma.DefaultMapping())
	if err != nil {
		tb.Fatal(err)
	}
	loaded, err := sigma.Load(rules)
	if err != nil {
		tb.Fatal(err)
	}
	if threshold {
		return loaded, nil
	}
	// The peer's fastest mode: no whitespace collapsing of values (it costs a regexp per match).
	rs, err := peer.NewRuleset(peer.Config{Directory: []string{dir}, FailOnRuleParse: true, FailOnYamlParse: true, NoCollapseWS: true})
	if err != nil {
		tb.Fatal(err)
	}
	if rs.Ok != 50 {
		tb.Fatalf("the peer loaded %d of 50 rules (%d failed, %d unsupported)", rs.Ok, rs.Failed, rs.Unsupported)
	}
	return loaded, rs
}

// TestDetectPeersAgree: on 100,000 events, every rule matches the same events in Rampart
// (converted from Sigma) and in the peer (reading the Sigma text), so the speed comparison
// compares engines answering the same question.
func TestDetectPeersAgree(t *testing.T) {
	rules, rs := detectSetup(t, false)
	evs := detectEventSet(100_000, 5000)
	byTitle := map[string]*peer.Tree{}
	for _, tr := range rs.Rules {
		byTitle[strings.ReplaceAll(tr.Rule.Title, " ", "-")] = tr
	}
	var act policy.EventActivation
	matches := 0
	for i := range evs {
		act.Reset(&evs[i])
		for _, r := range rules {
			got, err := r.Match(&act)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := byTitle[r.Name].Match(peerEvent{&evs[i]})
			if got != want {
				t.Fatalf("event %+v, rule %s: rampart %v, peer %v\ncondition %s", evs[i], r.Name, got, want, r.Condition)
			}
			if got {
				matches++
			}
		}
	}
	if matches < 1000 {
		t.Fatalf("only %d matches: the rules do not exercise the engines", matches)
	}
	t.Logf("%d events × %d rules agree; %d matches", len(evs), len(rules), matches)
}

// cpuTime is the CPU time the process has used (user and system, every thread: the garbage
// collector's work counts).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measured is one engine's pass over the events: wall time, CPU time and results.
type measured struct {
	wall, cpu time.Duration
	results   int
}

// runRampart processes evs through a fresh engine.
func runRampart(tb testing.TB, rules []*policy.DetectionRule, evs []detect.Event) measured {
	eng, err := detect.NewEngine(rules, detect.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	fired := 0
	c0, t0 := cpuTime(), time.Now()
	for i := range evs {
		fired += len(eng.Process(evs[i]))
	}
	return measured{time.Since(t0), cpuTime() - c0, fired}
}

func runPeer(rs *peer.Ruleset, evs []detect.Event) measured {
	matched := 0
	c0, t0 := cpuTime(), time.Now()
	for i := range evs {
		if res, ok := rs.EvalAll(peerEvent{&evs[i]}); ok {
			matched += len(res)
		}
	}
	return measured{time.Since(t0), cpuTime() - c0, matched}
}

// BenchmarkDetect measures events per CPU-second (the per-core rate: the process's CPU time,
// garbage collection included, with GOMAXPROCS=1 while it runs; wall-clock rates are printed
// too): stateless, Rampart beside the peer in interleaved rounds; with threshold windows (the
// same 50 selections, each counting per user over 10 minutes; the peer has no aggregations),
// Rampart alone; and the heap of an engine holding 100,000 active keys.
func BenchmarkDetect(b *testing.B) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	n := detectEvents()
	rules, rs := detectSetup(b, false)
	trules, _ := detectSetup(b, true)
	evs := detectEventSet(n, 5000)
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	var ratios, ramp, peers, thr, rampWall, peerWall []float64
	var r, p, t measured
	for round := range detectRounds() {
		runtime.GC()
		if round%2 == 0 {
			r = runRampart(b, rules, evs)
			runtime.GC()
			p = runPeer(rs, evs)
		} else {
			p = runPeer(rs, evs)
			runtime.GC()
			r = runRampart(b, rules, evs)
		}
		runtime.GC()
		t = runRampart(b, trules, evs)
		ramp, peers, thr = append(ramp, rate(r.cpu)), append(peers, rate(p.cpu)), append(thr, rate(t.cpu))
		ratios = append(ratios, rate(r.cpu)/rate(p.cpu))
		rampWall, peerWall = append(rampWall, rate(r.wall)), append(peerWall, rate(p.wall))
		fmt.Printf("detect round %d: rampart %.0f ev/CPU-s (%.0f ev/s wall), peer %.0f ev/CPU-s (%.0f ev/s wall), threshold %.0f ev/CPU-s; %s\n",
			round+1, rate(r.cpu), rate(r.wall), rate(p.cpu), rate(p.wall), rate(t.cpu), loadAverage())
	}
	slices.Sort(ratios)
	heapKeys, keys := detectHeap(b)
	b.ReportMetric(median(ramp), "rampart-events/cpu-s")
	b.ReportMetric(median(peers), "peer-events/cpu-s")
	b.ReportMetric(median(ratios), "ratio-median")
	b.ReportMetric(ratios[0], "ratio-min")
	b.ReportMetric(median(thr), "threshold-events/cpu-s")
	b.ReportMetric(float64(heapKeys)/(1<<20), "heap-MiB-100k-keys")
	met := map[bool]string{true: "met", false: "MISSED"}
	fmt.Printf("detect, %d events × 50 rules, one core, %d rounds interleaved: rampart median %.0f ev/CPU-s (min %.0f; wall median %.0f ev/s), peer (markuskont/go-sigma-rule-engine v0.3.0) median %.0f ev/CPU-s (wall median %.0f ev/s); rampart/peer min %.2fx median %.2fx (target ≥1M ev/s per core and faster than the peer: %s); %d firings (deduplicated per rule and user), %d peer matches\n",
		n, len(ratios), median(ramp), slices.Min(ramp), median(rampWall), median(peers), median(peerWall), ratios[0], median(ratios), met[slices.Min(ramp) >= 1e6 && ratios[0] > 1], r.results, p.results)
	fmt.Printf("detect with threshold windows (50 rules, count by user > 5 over 10m): median %.0f ev/CPU-s (min %.0f; target ≥300k: %s), %d firings\n",
		median(thr), slices.Min(thr), met[slices.Min(thr) >= 300e3], t.results)
	fmt.Printf("detect memory: %d active keys held (MaxKeys %d) by a threshold rule after 1,000,000 events from 300,000 users: heap %.1f MiB above the empty engine; %s\n",
		keys, detect.DefaultMaxKeys, float64(heapKeys)/(1<<20), loadAverage())
}

// detectHeap feeds one grouped threshold rule 1,000,000 events from 300,000 users (more keys
// than MaxKeys) and returns the live heap the engine holds and its key count.
func detectHeap(b *testing.B) (uint64, int) {
	src := []byte("title: many per user\ndetection:\n  sel: {EventCode: weights.read}\n  timeframe: 1h\n  condition: sel | count() by User > 1000\n")
	rules, err := sigma.Convert([]sigma.File{{Name: "heap.yml", Data: src}}, sigma.DefaultMapping())
	if err != nil {
		b.Fatal(err)
	}
	loaded, err := sigma.Load(rules)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	eng, err := detect.NewEngine(loaded, detect.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ev := detect.Event{Code: "weights.read"}
	users := make([]string, 300_000)
	for i := range users {
		users[i] = fmt.Sprintf("user-%06d", i)
	}
	for i := range 1_000_000 {
		ev.Seq, ev.Time, ev.Actor = int64(i+1), t0.Add(time.Duration(i)*time.Millisecond), users[(i*7919)%len(users)]
		eng.Process(ev)
	}
	users = nil
	runtime.GC()
	runtime.ReadMemStats(&ms)
	snap, err := eng.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	keys := strings.Count(string(snap), `"key":`)
	runtime.KeepAlive(eng)
	return ms.HeapAlloc - before, keys
}
