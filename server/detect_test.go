package server_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/internal/demo"
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

// detectAlerts reads the instance's detect.alert entries and the sequence numbers of the
// entries of code.
func detectAlerts(t *testing.T, in *server.Instance, code string) ([]alertEntry, []int64) {
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
			if a.Unmapped.Rule != "request-burst" {
				continue // the demo policy's own rules
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
				alerts, creates = detectAlerts(t, in, "request.create")
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

// Detection is off in `rampart server` unless the configuration turns it on, on in dev, and a
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
