package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/server"
)

// withRules is the demo policy plus detection rules.
func withRules(t *testing.T, rules string) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(demo.Policy(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), path)
		m[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m["detection-test.yaml"] = &fstest.MapFile{Data: []byte(rules)}
	return m
}

const burstRule = `apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: request-burst}
spec:
  description: One person files several requests at once.
  severity: medium
  mitre: [T1078]
  condition: 'event.code == "request.create"'
  group_by: [actor]
  threshold: {count: 2, window: 10m}
`

// alertEntry is the part of a detect.alert entry the tests read.
type alertEntry struct {
	Seq      int64
	Actor    string
	Severity string
	Class    int
	Unmapped struct {
		Rule     string  `json:"rule"`
		Key      string  `json:"key"`
		Subject  string  `json:"subject"`
		Evidence []int64 `json:"evidence"`
		Count    int     `json:"count"`
	}
	Attacks []string
}

// detectAlerts reads the instance's detect.alert entries of rule and the sequence numbers of
// the entries of code.
func detectAlerts(t *testing.T, in *server.Instance, rule, code string) ([]alertEntry, []int64) {
	t.Helper()
	recs, err := in.Store.Entries(context.Background(), 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var alerts []alertEntry
	var seqs []int64
	for _, r := range recs {
		var e struct {
			ClassUID int    `json:"class_uid"`
			Severity string `json:"severity"`
			Actor    struct {
				User struct {
					Name string `json:"name"`
				} `json:"user"`
			} `json:"actor"`
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
			FindingInfo struct {
				Attacks []struct {
					Technique struct {
						UID string `json:"uid"`
					} `json:"technique"`
				} `json:"attacks"`
			} `json:"finding_info"`
			Unmapped json.RawMessage `json:"unmapped"`
		}
		if err := json.Unmarshal(r.Data, &e); err != nil {
			t.Fatal(err)
		}
		switch e.Metadata.EventCode {
		case "detect.alert":
			a := alertEntry{Seq: r.Seq, Actor: e.Actor.User.Name, Severity: e.Severity, Class: e.ClassUID}
			if err := json.Unmarshal(e.Unmapped, &a.Unmapped); err != nil {
				t.Fatal(err)
			}
			if a.Unmapped.Rule != rule {
				continue // another rule's (the demo policy has its own)
			}
			for _, at := range e.FindingInfo.Attacks {
				a.Attacks = append(a.Attacks, at.Technique.UID)
			}
			alerts = append(alerts, a)
		case code:
			seqs = append(seqs, r.Seq)
		}
	}
	return alerts, seqs
}

// A rule fires from the real workflow on a real server, on SQLite and PostgreSQL: two requests
// by one person are one detect.alert entry (class 2004) whose evidence is their two
// request.create entries, and one open alert.
func TestDetectionFiresFromWorkflow(t *testing.T) {
	for name, kind := range stores(t) {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, dsnFor(t, kind))
			cfg.PolicyFS = withRules(t, burstRule)
			cfg.Detection.PollInterval = policy.Duration(20 * time.Millisecond)
			in := start(t, cfg, server.Options{}, nil)
			defer in.Close()
			ctx := context.Background()
			for i := 0; i < 2; i++ {
				if _, err := in.Access.Create(ctx, access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "eval run", Duration: time.Hour}); err != nil {
					t.Fatal(err)
				}
			}
			var alerts []alertEntry
			var creates []int64
			deadline := time.Now().Add(30 * time.Second) // a failure limit only
			for len(alerts) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no detect.alert entry 30 s after the requests")
				}
				time.Sleep(20 * time.Millisecond)
				alerts, creates = detectAlerts(t, in, "request-burst", "request.create")
			}
			a := alerts[0]
			if len(alerts) != 1 || a.Class != 2004 || a.Actor != "detect:request-burst" || a.Severity != "Medium" ||
				a.Unmapped.Rule != "request-burst" || a.Unmapped.Key != "alice" || a.Unmapped.Subject != "alice" || a.Unmapped.Count != 2 ||
				len(a.Unmapped.Evidence) != 2 || a.Unmapped.Evidence[0] != creates[0] || a.Unmapped.Evidence[1] != creates[1] ||
				len(a.Attacks) != 1 || a.Attacks[0] != "T1078" {
				t.Fatalf("alerts %+v; the request.create entries are %v", alerts, creates)
			}
			as, err := in.Store.Alerts(ctx, detect.AlertFilter{Rule: "request-burst"})
			if err != nil || len(as) != 1 || as[0].Rule != "request-burst" || as[0].Key != "alice" || as[0].FirstSeq != a.Seq || as[0].State != detect.StateOpen {
				t.Fatalf("alert rows %+v, %v", as, err)
			}
		})
	}
}

// Detection is on unless the configuration turns it off, and a
// bad detection block is refused at start with the field named.
func TestDetectionConfig(t *testing.T) {
	dir := t.TempDir()
	load := func(extra string) (server.Config, error) {
		path := filepath.Join(dir, "server.yaml")
		if err := os.WriteFile(path, []byte("data_dir: "+dir+"\npolicy_dir: "+dir+"\n"+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		return server.LoadConfig(path)
	}
	if _, err := load("detection: {batch: -1}\n"); err == nil || !strings.Contains(err.Error(), "detection.batch") {
		t.Fatalf("a negative batch: %v", err)
	}
	if _, err := load("detection: {enabled: true, batch: 50, snapshot_every: 100, poll_interval: 1ms}\n"); err == nil || !strings.Contains(err.Error(), "poll_interval") {
		t.Fatalf("a 1ms poll: %v", err)
	}
	c, err := load("detection: {enabled: true, batch: 50, snapshot_every: 100}\n")
	if err != nil || c.Detection.Enabled == nil || !*c.Detection.Enabled || c.Detection.Batch != 50 {
		t.Fatalf("%+v, %v", c.Detection, err)
	}
}

// A rule fires from real egress: a tunnel through the instance's own gateway carries more than
// the rule's threshold, its egress.transfer entry is the evidence of a detect.alert.
func TestDetectionFiresFromEgress(t *testing.T) {
	port := testenv.TCPEcho(t)
	rules := fmt.Sprintf(`apiVersion: rampart.dev/v1alpha1
kind: EgressPolicy
metadata: {name: local-echo}
spec:
  subjects: [group:researchers]
  mode: enforce
  allow: [{host: "127.0.0.1", ports: [%d]}]
---
apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: test-egress-volume}
spec:
  severity: high
  mitre: [T1048]
  condition: 'event.code == "egress.transfer"'
  group_by: [actor]
  threshold: {sum: bytes_out, over: 2000, window: 1h}
`, port)
	cfg := testConfig(t, "")
	cfg.PolicyFS = withRules(t, rules)
	cfg.Detection.PollInterval = policy.Duration(20 * time.Millisecond)
	in := start(t, cfg, server.Options{}, nil)
	defer in.Close()
	g := in.Gateway(server.GatewayOptions{AllowRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	ln, err := g.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = server.ServeGatewayListener(ctx, g, ln) }()
	defer func() { cancel(); <-done }()
	tok, _, err := in.Tokens.Issue(context.Background(), "alice", identity.KindUser, "test", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf("127.0.0.1:%d", port)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\n\r\n", target, target, tok)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	msg := strings.Repeat("x", 3000)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(br, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	c.Close()
	var alerts []alertEntry
	var transfers []int64
	deadline := time.Now().Add(30 * time.Second) // a failure limit only
	for {
		alerts, transfers = detectAlerts(t, in, "test-egress-volume", "egress.transfer")
		if len(alerts) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no test-egress-volume alert 30 s after the tunnel closed (transfers %v)", transfers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(alerts) != 1 || len(transfers) != 1 || len(alerts[0].Unmapped.Evidence) != 1 || alerts[0].Unmapped.Evidence[0] != transfers[0] ||
		alerts[0].Unmapped.Key != "alice" || alerts[0].Severity != "High" {
		t.Fatalf("alerts %+v; the transfer entries are %v", alerts, transfers)
	}
}
