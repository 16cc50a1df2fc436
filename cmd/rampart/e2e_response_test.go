package main_test

import (
	"strings"
	"testing"
	"time"
)

// responseRules: every request a person files is an alert; one rule responds for real
// (sessions revoked, and an attempt to disable the filer, which the admin guardrail stops for an
// administrator), one only in a dry run.
const responseRules = `apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: any-request}
spec:
  severity: high
  condition: 'event.code == "request.create"'
  group_by: [actor]
  response: {mode: "on", actions: [revoke_sessions, disable_user]}
---
apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: any-request-dry}
spec:
  severity: low
  condition: 'event.code == "request.create"'
  group_by: [actor]
  response: {mode: dry-run, actions: [revoke_grant]}
`

// Issue 17: the real binary (rampart dev) responds to a firing through the services an admin
// uses: erin (an admin) files a request, the rule revokes her credentials (her CLI token stops
// working) but the guardrail keeps her enabled, the dry-run rule changes nothing; the alerts,
// responses and skipped responses are in the ledger (and so in its end-to-end canonical check).
func TestResponseEndToEnd(t *testing.T) {
	addr := freeAddr(t)
	policyDir := detectPolicyDir(t, responseRules)
	startServer(t, addr, "dev", "--addr", addr, "--data", t.TempDir(), "--policy", policyDir)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	erin := strings.TrimSpace(c.ok("login", "--dev", "--user", "erin", "--print-token"))
	if r := c.run([]string{"RAMPART_TOKEN=" + erin}, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "response e2e", "--duration", "1h"); r.code != 0 {
		t.Fatalf("request create: %+v", r)
	}
	deadline := time.Now().Add(60 * time.Second) // a failure limit only
	for {
		r := c.run([]string{"RAMPART_TOKEN=" + erin}, "whoami")
		if r.code != 0 {
			break // her token was revoked by the response
		}
		if time.Now().After(deadline) {
			t.Fatal("erin's token still works 60 s after the firing")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A new sign-in works: she was not disabled (the admin guardrail).
	fresh := strings.TrimSpace(c.ok("login", "--dev", "--user", "erin", "--print-token"))
	var codes []string
	for time.Now().Before(deadline) {
		out := c.run([]string{"RAMPART_TOKEN=" + fresh}, "audit", "tail", "-n", "200", "-o", "json")
		if out.code != 0 {
			t.Fatalf("audit tail: %+v", out)
		}
		codes = nil
		for _, want := range []string{`"detect.alert"`, `"detect.response"`, `"detect.response_skipped"`, `"user.sessions_revoke"`} {
			if strings.Contains(out.out, want) {
				codes = append(codes, want)
			}
		}
		if len(codes) == 4 {
			if !strings.Contains(out.out, "guardrail admin") && !strings.Contains(out.out, `"admin"`) {
				t.Fatalf("the skipped response does not name the admin guardrail:\n%s", out.out)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the ledger shows only %v", codes)
}
