package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/internal/changetest"
	"rampart.dev/rampart/internal/citest"
)

// CI job identity end to end: the real binary as server and as the job's CLI, the fakes of the
// CI systems' HTTP edges (ID token issuers, GitHub's dispatch API) in front. A GitHub Actions job
// logs in through the Actions token endpoint and a GitLab job with an id_tokens variable; each
// pipeline token reads (POST /v1/check, and `rampart secret get` from the secrets store) only its
// own pipeline's secrets; hostile tokens are
// refused with the condition that failed; a person with trigger starts a run, one without is
// refused, and every step is in the ledger.
func TestCIJobIdentityEndToEnd(t *testing.T) {
	gh := citest.NewFakeGitHubActionsIssuer(t, nil)
	gl := citest.NewFakeGitLabCIIssuer(t, nil)
	runners := citest.NewFakeGitHubActionsIssuer(t, nil)
	dispatch := citest.NewFakeGitHubDispatchAPI(t, "dispatch-secret")
	t.Setenv("FAKE_DISPATCH_TOKEN", "dispatch-secret")
	t.Setenv("FAKE_DISPATCH_STALE_TOKEN", "revoked-long-ago")

	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	changetest.Write(t, pdir, map[string]string{"p.yaml": citest.Policy(gh.URL, gl.URL, runners.URL, dispatch.URL)})
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(dir, "data"), "--policy", pdir)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN=", "ACTIONS_ID_TOKEN_REQUEST_URL=", "ACTIONS_ID_TOKEN_REQUEST_TOKEN="}}
	sha := strings.Repeat("ab", 20)

	// ciLogin runs `rampart ci login -o json` in a job with env and returns the answer, or the
	// failure.
	type answer struct {
		Token   string `json:"token"`
		Subject string `json:"subject"`
		Expires string `json:"expires_at"`
	}
	ciLogin := func(env []string, args ...string) (answer, result) {
		t.Helper()
		r := c.run(env, append([]string{"-o", "json", "ci", "login"}, args...)...)
		var a answer
		if r.code == 0 {
			if err := json.Unmarshal([]byte(r.out), &a); err != nil {
				t.Fatalf("ci login: %v\n%s", err, r.out)
			}
		}
		return a, r
	}
	refused := func(r result, cond string) {
		t.Helper()
		if r.code != 3 || !strings.Contains(r.err, "refused ("+cond+")") {
			t.Fatalf("want exit 3 refused (%s), got %d:\n%s%s", cond, r.code, r.out, r.err)
		}
	}

	// A GitHub Actions job of the unguarded test pipeline, on a feature branch.
	testRun := citest.Run{Repository: "acme/infra", Workflow: "test.yml", Ref: "refs/heads/feature", SHA: sha, Event: "push", Actor: "bob"}
	a, r := ciLogin(gh.Job(testRun))
	if r.code != 0 {
		t.Fatalf("ci login in a GitHub Actions job: %d\n%s", r.code, r.err)
	}
	if a.Subject != "ci:github/acme/infra/test.yml" || !strings.HasPrefix(a.Token, "rpt_") {
		t.Fatalf("ci login: %+v", a)
	}
	testTok := a.Token
	if exp, err := time.Parse(time.RFC3339Nano, a.Expires); err != nil || time.Until(exp) > 15*time.Minute {
		t.Fatalf("pipeline token expires %s (%v); at most 15 minutes", a.Expires, err)
	}
	// It reads nothing: not the deploy pipeline's secret, and it may not ask about the deploy
	// pipeline either.
	if r := c.as(a.Token, "check", a.Subject, "read", "secrets/deploy-key"); r.code != 3 {
		t.Fatalf("the test pipeline reading the deploy key: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if r := c.as(a.Token, "check", "ci:github/acme/infra/deploy.yml", "read", "secrets/deploy-key"); r.code != 3 || !strings.Contains(r.err, "may only check their own access") {
		t.Fatalf("the test pipeline asking about the deploy pipeline: exit %d\n%s%s", r.code, r.out, r.err)
	}
	// A pipeline token is a machine's: whoami says so, and it never triggers a pipeline (people do).
	if r := c.as(a.Token, "whoami"); r.code != 0 || !strings.Contains(r.out, "pipeline") {
		t.Fatalf("whoami with a pipeline token: %d\n%s%s", r.code, r.out, r.err)
	}
	if r := c.as(a.Token, "pipeline", "trigger", "acme/infra/test.yml", "--ref", "refs/heads/main"); r.code != 3 || !strings.Contains(r.err, "a person does") {
		t.Fatalf("a pipeline token triggering: %d\n%s%s", r.code, r.out, r.err)
	}

	// A GitLab job of the web pipeline, its token in an id_tokens variable.
	glTok := gl.Mint(citest.Run{Repository: "acme/web", Ref: "refs/heads/main", SHA: sha, Event: "push", Actor: "bob", Protected: true, Audience: "rampart"})
	a, r = ciLogin([]string{"RAMPART_ID_TOKEN=" + glTok}, "--id-token-env", "RAMPART_ID_TOKEN")
	if r.code != 0 || a.Subject != "ci:gitlab/acme/web/gitlab-ci.yml" {
		t.Fatalf("ci login in a GitLab job: %d %+v\n%s", r.code, a, r.err)
	}
	// It reads its pipeline's secret from the secrets store; the test pipeline's token does not.
	carolTok := strings.TrimSpace(c.ok("login", "--dev", "--user", "carol", "--print-token"))
	valueFile := filepath.Join(dir, "web-key")
	if err := os.WriteFile(valueFile, []byte("web-deploy-value-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.as(carolTok, "secret", "put", "web-key", "--file", valueFile); r.code != 0 {
		t.Fatalf("carol putting web-key: %d\n%s%s", r.code, r.out, r.err)
	}
	if r := c.as(a.Token, "secret", "get", "web-key"); r.code != 0 || !strings.Contains(r.out, "web-deploy-value-1") {
		t.Fatalf("the web pipeline reading its secret: %d\n%s%s", r.code, r.out, r.err)
	}
	if r := c.as(testTok, "secret", "get", "web-key"); r.code != 3 || strings.Contains(r.out+r.err, "web-deploy-value-1") {
		t.Fatalf("the test pipeline reading the web pipeline's secret: %d\n%s%s", r.code, r.out, r.err)
	}
	// And from a file.
	tokFile := filepath.Join(dir, "id_token")
	if err := os.WriteFile(tokFile, []byte(glTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, r = ciLogin(nil, "--id-token-file", tokFile); r.code != 0 {
		t.Fatalf("ci login --id-token-file: %d\n%s", r.code, r.err)
	}

	// Hostile jobs.
	deploy := citest.Run{Repository: "acme/infra", Workflow: "deploy.yml", Ref: "refs/heads/main", SHA: sha, Event: "push", Actor: "alice", Protected: true}
	fork := deploy
	fork.Event, fork.Ref, fork.Protected = "pull_request", "refs/pull/9/merge", false
	_, r = ciLogin(gh.Job(fork))
	refused(r, "pull_request")
	_, r = ciLogin(gh.Job(deploy)) // protected main, but the gate landed no such commit
	refused(r, "approved_change")
	_, r = ciLogin(gh.Job(deploy), "--audience", "sts.amazonaws.com")
	refused(r, "audience")
	old := deploy
	old.Audience, old.IssuedAt = "rampart", time.Now().Add(-10*time.Minute)
	_, r = ciLogin([]string{"T=" + gh.Mint(old)}, "--id-token-env", "T")
	refused(r, "expired")
	deploy.Audience = "rampart"
	_, r = ciLogin([]string{"T=" + gh.MintUnsigned(deploy)}, "--id-token-env", "T")
	refused(r, "algorithm")
	stranger := citest.NewFakeGitHubActionsIssuer(t, nil)
	_, r = ciLogin(stranger.Job(deploy))
	refused(r, "issuer")
	forged := citest.Run{Repository: "acme/tools", Workflow: "release.yml", Ref: "refs/heads/main", SHA: sha, Event: "push", Protected: true}
	_, r = ciLogin(runners.Job(forged))
	refused(r, "protected_ref")
	// The issuer rotates its key: a token from the old key id under a key it never published
	// does not verify; a token from the new key does.
	gh.Rotate()
	_, r = ciLogin([]string{"T=" + gh.MintForeign(deploy)}, "--id-token-env", "T")
	refused(r, "signature")
	if _, r = ciLogin(gh.Job(testRun)); r.code != 0 {
		t.Fatalf("after rotation: %d\n%s", r.code, r.err)
	}

	// Triggering: alice holds no trigger grant; carol holds it standing.
	alice := strings.TrimSpace(c.ok("login", "--dev", "--user", "alice", "--print-token"))
	carol := strings.TrimSpace(c.ok("login", "--dev", "--user", "carol", "--print-token"))
	if r := c.as(alice, "pipeline", "trigger", "acme/infra/deploy.yml", "--ref", "refs/heads/main"); r.code != 3 || !strings.Contains(r.err, "holds no active trigger grant") {
		t.Fatalf("alice triggering: %d\n%s%s", r.code, r.out, r.err)
	}
	if r := c.as(carol, "pipeline", "trigger", "acme/infra/deploy.yml", "--ref", "refs/heads/feature"); r.code != 1 || !strings.Contains(r.err, "is not allowed for pipeline") {
		t.Fatalf("carol triggering a ref the pipeline does not allow: %d\n%s%s", r.code, r.out, r.err)
	}
	if n := len(dispatch.Calls()); n != 0 {
		t.Fatalf("%d dispatches before any allowed trigger", n)
	}
	if r := c.as(carol, "pipeline", "trigger", "acme/infra/deploy.yml", "--ref", "refs/heads/main"); r.code != 0 || !strings.Contains(r.out, "Dispatched") {
		t.Fatalf("carol triggering: %d\n%s%s", r.code, r.out, r.err)
	}
	calls := dispatch.Calls()
	if len(calls) != 1 || calls[0].Path != "/repos/acme/infra/actions/workflows/deploy.yml/dispatches" || calls[0].Ref != "refs/heads/main" || calls[0].Auth != "Bearer dispatch-secret" {
		t.Fatalf("dispatches: %+v", calls)
	}
	// The CI system refuses the test pipeline's stale token: recorded, and a 503 for carol.
	if r := c.as(carol, "pipeline", "trigger", "acme/infra/test.yml", "--ref", "refs/heads/feature"); r.code != 1 || !strings.Contains(r.err, "dispatch API answered 401") {
		t.Fatalf("a dispatch the CI system refuses: %d\n%s%s", r.code, r.out, r.err)
	}

	// The ledger: exchanges, refusals (with their conditions), triggers.
	erin := strings.TrimSpace(c.ok("login", "--dev", "--user", "erin", "--print-token"))
	out := c.as(erin, "audit", "export")
	if out.code != 0 {
		t.Fatalf("audit entries: %d\n%s", out.code, out.err)
	}
	for _, want := range []string{`"ci.exchange"`, `"ci.exchange.refused"`, `"condition":"approved_change"`, `"condition":"pull_request"`,
		`"pipeline.trigger"`, `"pipeline.trigger.refused"`, `"pipeline.trigger.failed"`} {
		if !strings.Contains(strings.ReplaceAll(out.out, `": "`, `":"`), want) {
			t.Errorf("the ledger has no %s", want)
		}
	}
	if strings.Contains(out.out, glTok[strings.LastIndex(glTok, ".")+1:]) || strings.Contains(out.out, "dispatch-secret") {
		t.Fatal("the ledger holds a token")
	}
}
