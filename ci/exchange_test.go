package ci_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/ci"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/citest"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// env is an exchanger over real parts: the fake CI issuers' HTTP edges, a SQLite store, the
// token service, the change gate (change.Service.Landed) and the decision index.
type env struct {
	t       *testing.T
	clock   *clocktest.Clock
	gh, gl  *citest.FakeCIIssuer
	runners *citest.FakeCIIssuer
	pol     *policy.Policy
	store   *sqlstore.DB
	tokens  *identity.Tokens
	index   *authz.Index
	x       *ci.Exchanger

	mu      sync.Mutex
	refused []audit.Event
}

const (
	approvedSHA = "1111111111111111111111111111111111111111"
	otherSHA    = "2222222222222222222222222222222222222222"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, clock: clocktest.New(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))}
	e.gh = citest.NewFakeGitHubActionsIssuer(t, e.clock.Now)
	e.gl = citest.NewFakeGitLabCIIssuer(t, e.clock.Now)
	e.runners = citest.NewFakeGitHubActionsIssuer(t, e.clock.Now)
	var err error
	e.pol, err = policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(citest.Policy(e.gh.URL, e.gl.URL, e.runners.URL, "http://127.0.0.1:1"))}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e.store, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	// The change gate landed approvedSHA on infra's main.
	if err := e.store.UpdateChanges(ctx, func(tx change.Tx) error {
		return tx.InsertChange(ctx, change.Change{ID: "chg_aaaaaaaaaaaaaaaa", Repository: "infra", Ref: "refs/heads/main", Base: otherSHA, Source: approvedSHA,
			Tree: approvedSHA, Paths: []string{"deploy/x.yaml"}, Commits: []change.Commit{}, Requester: "alice", State: change.StateLanded,
			CreatedAt: e.clock.Now(), DecidedAt: e.clock.Now(), RequestSeq: 1, LandSeq: 2, LandedAs: approvedSHA, Version: 3})
	}); err != nil {
		t.Fatal(err)
	}
	e.tokens = &identity.Tokens{Store: e.store, Now: e.clock.Now, Users: e.store}
	e.index = authz.New(e.store, e.pol, authz.Options{Now: e.clock.Now})
	if err := e.index.Load(ctx); err != nil {
		t.Fatal(err)
	}
	gate := change.NewService(change.Options{Store: e.store, Policy: func() *policy.Policy { return e.pol }, Now: e.clock.Now})
	e.x = e.exchanger(gate)
	return e
}

func (e *env) exchanger(gate ci.ApprovedCommits) *ci.Exchanger {
	return ci.NewExchanger(ci.Options{Policy: func() *policy.Policy { return e.pol }, Verifier: &ci.Verifier{Now: e.clock.Now},
		Decider: e.index, Approved: gate, Now: e.clock.Now,
		Mint: func(ctx context.Context, subject string, ttl time.Duration, ev audit.Event) (ci.Issued, error) {
			secret, tok, err := e.tokens.IssuePipeline(ctx, subject, ttl, ev)
			return ci.Issued{Token: secret, ID: tok.ID, ExpiresAt: tok.ExpiresAt}, err
		},
		Refused: func(ctx context.Context, source string, ev audit.Event) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.refused = append(e.refused, ev)
			return nil
		}})
}

// deploy is a push of an approved commit to infra's protected main, by the GitHub issuer.
func deploy() citest.Run {
	return citest.Run{Repository: "acme/infra", Workflow: "deploy.yml", Ref: "refs/heads/main", SHA: approvedSHA, Event: "push",
		Actor: "alice", Protected: true, Audience: "rampart"}
}

func (e *env) exchange(tok string) (ci.Result, error) {
	e.t.Helper()
	return e.x.Exchange(context.Background(), tok, "address 127.0.0.1/32")
}

// refusedWith checks that err is a refusal on cond saying says, recorded once more in the
// ledger's refusals with the condition and without the token.
func (e *env) refusedWith(err error, tok, cond, says string) {
	e.t.Helper()
	var r *ci.Refusal
	if !errors.As(err, &r) || r.Condition != cond || !strings.Contains(r.Msg, says) {
		e.t.Fatalf("got %v, want a refusal on %s saying %q", err, cond, says)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	last := e.refused[len(e.refused)-1]
	if last.Code != "ci.exchange.refused" || !last.Failed || last.Details["condition"] != cond || !strings.Contains(last.Message, says) {
		e.t.Fatalf("refusal recorded as %+v", last)
	}
	if parts := strings.Split(tok, "."); len(parts) == 3 && len(parts[1]) > 16 && strings.Contains(last.Message+fmtDetails(last.Details), parts[1]) {
		e.t.Fatal("the refusal recorded the token")
	}
}

func fmtDetails(d map[string]any) string {
	var b strings.Builder
	for k, v := range d {
		b.WriteString(k)
		b.WriteString("=")
		if s, ok := v.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

func TestExchangeGitHubAndGitLab(t *testing.T) {
	e := newEnv(t)
	res, err := e.exchange(e.gh.Mint(deploy()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Run.Subject != "ci:github/acme/infra/deploy.yml" || !res.Run.Protected || res.Run.SHA != approvedSHA || res.Run.Actor != "alice" {
		t.Fatalf("run %+v", res.Run)
	}
	if ttl := res.ExpiresAt.Sub(e.clock.Now()); ttl <= 0 || ttl > 15*time.Minute {
		t.Fatalf("token lives %s; at most 15m", ttl)
	}
	p, err := e.tokens.Verify(context.Background(), res.Token)
	if err != nil || p.Subject != res.Run.Subject || p.Kind != identity.KindPipeline || p.SessionID != "" {
		t.Fatalf("the pipeline token authenticates as %+v (%v)", p, err)
	}
	// With it the pipeline reads its own secret, through the standing binding...
	if d := e.index.Check(authz.Query{Subject: p.Subject, Action: "read", Resource: "secrets/deploy-key"}); !d.Allowed {
		t.Fatalf("deploy pipeline reading its secret: %+v", d)
	}
	// ...and after 15 minutes the token is dead.
	e.clock.Advance(15*time.Minute + time.Second)
	if _, err := e.tokens.Verify(context.Background(), res.Token); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("a pipeline token after 15 minutes: %v", err)
	}

	gl := citest.Run{Repository: "acme/web", Ref: "refs/heads/main", SHA: otherSHA, Event: "push", Actor: "bob", Protected: true, Audience: "rampart"}
	res, err = e.exchange(e.gl.Mint(gl))
	if err != nil {
		t.Fatal(err)
	}
	if res.Run.Subject != "ci:gitlab/acme/web/gitlab-ci.yml" || res.Run.Ref != "refs/heads/main" || !res.Run.Protected {
		t.Fatalf("gitlab run %+v", res.Run)
	}
}

// The issue's hostile cases, each refused with the condition that failed, recorded, and the
// service still working after.
func TestExchangeHostile(t *testing.T) {
	e := newEnv(t)
	stranger := citest.NewFakeGitHubActionsIssuer(t, e.clock.Now)
	fork := deploy()
	fork.Event, fork.Ref, fork.Protected, fork.SHA = "pull_request", "refs/pull/7/merge", false, otherSHA
	forkMain := deploy() // a pull_request run whose token names the base branch
	forkMain.Event = "pull_request"
	notApproved := deploy()
	notApproved.SHA = otherSHA
	wrongAud := deploy()
	wrongAud.Audience = "sts.amazonaws.com"
	forged := citest.Run{Repository: "acme/tools", Workflow: "release.yml", Ref: "refs/heads/main", SHA: otherSHA, Event: "push", Protected: true, Audience: "rampart"}
	unprotected := deploy()
	unprotected.Protected = false
	otherBranch := deploy()
	otherBranch.Ref = "refs/heads/feature"
	undeclared := deploy()
	undeclared.Workflow = "exfiltrate.yml"
	dispatchByStranger := deploy()
	dispatchByStranger.Event, dispatchByStranger.Actor = "workflow_dispatch", "mallory"
	future := deploy()
	future.IssuedAt = e.clock.Now().Add(10 * time.Minute)
	badSHA := deploy()
	badSHA.Extra = map[string]any{"sha": "HEAD~1"}
	trick := deploy()
	trick.Extra = map[string]any{"repository": "acme/../secrets"}

	cases := []struct {
		name, tok, cond, says string
	}{
		{"unknown issuer", stranger.Mint(deploy()), ci.CondIssuer, "is not a CIIssuer of the policy"},
		{"wrong audience", e.gh.Mint(wrongAud), ci.CondAudience, `does not include "rampart"`},
		{"alg none", e.gh.MintUnsigned(deploy()), ci.CondAlgorithm, "never none or HMAC"},
		{"signed by another key", e.gh.MintForeign(deploy()), ci.CondSignature, "does not verify"},
		{"not yet valid", e.gh.Mint(future), ci.CondNotYetValid, "not valid before"},
		{"garbage", "not.a.jwt", ci.CondMalformed, "not a signed JWT"},
		{"fork pull request asking for deploy", e.gh.Mint(fork), ci.CondPullRequest, "never accepts it"},
		{"pull request on the protected branch", e.gh.Mint(forkMain), ci.CondPullRequest, "never accepts it"},
		{"sha the gate did not approve", e.gh.Mint(notApproved), ci.CondApproval, "is not a change the change gate landed"},
		{"protected claim forged for an issuer that cannot say", e.runners.Mint(forged), ci.CondProtected, "whose claim mapping establishes no protected ref"},
		{"unprotected ref", e.gh.Mint(unprotected), ci.CondProtected, "is not protected"},
		{"ref not allowed", e.gh.Mint(otherBranch), ci.CondRef, "ref refs/heads/feature is not allowed"},
		{"undeclared pipeline", e.gh.Mint(undeclared), ci.CondPipeline, `no Pipeline "acme/infra/exfiltrate.yml"`},
		{"dispatch by someone without trigger", e.gh.Mint(dispatchByStranger), ci.CondTrigger, "mallory started this workflow_dispatch run but holds no active trigger grant"},
		{"sha that is no commit id", e.gh.Mint(badSHA), ci.CondClaims, "is not a commit id"},
		{"path trick in the repository", e.gh.Mint(trick), ci.CondClaims, "do not make a pipeline name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			_, err := e.exchange(c.tok)
			e.refusedWith(err, c.tok, c.cond, c.says)
		})
	}
	e.t = t
	// Still working: an approved push, and a dispatch by carol, who holds trigger.
	if _, err := e.exchange(e.gh.Mint(deploy())); err != nil {
		t.Fatal(err)
	}
	byCarol := deploy()
	byCarol.Event, byCarol.Actor = "workflow_dispatch", "carol"
	if _, err := e.exchange(e.gh.Mint(byCarol)); err != nil {
		t.Fatalf("a dispatch by carol, who holds trigger: %v", err)
	}
}

// A token replayed after its expiry is refused, though it was accepted while valid.
func TestExchangeReplayAfterExpiry(t *testing.T) {
	e := newEnv(t)
	tok := e.gh.Mint(deploy()) // five minutes
	if _, err := e.exchange(tok); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5*time.Minute + 31*time.Second)
	_, err := e.exchange(tok)
	e.refusedWith(err, tok, ci.CondExpired, "expired at")
}

// After the issuer rotates its key, tokens signed by the new key verify at once (the unknown
// key id refetches the set), and a token signed by the rotated-out key is refused once the
// cached set is refreshed.
func TestExchangeKeyRotation(t *testing.T) {
	e := newEnv(t)
	oldKid := e.gh.KeyID()
	if _, err := e.exchange(e.gh.Mint(deploy())); err != nil {
		t.Fatal(err)
	}
	fetches := e.gh.KeyFetches()
	for range 5 {
		if _, err := e.exchange(e.gh.Mint(deploy())); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.gh.KeyFetches(); n != fetches {
		t.Fatalf("the key set was fetched %d more times; it is cached", n-fetches)
	}
	e.gh.Rotate()
	if _, err := e.exchange(e.gh.Mint(deploy())); err != nil {
		t.Fatalf("a token signed by the new key: %v", err)
	}
	e.clock.Advance(11 * time.Minute)
	tok := e.gh.MintRetired(deploy(), oldKid)
	_, err := e.exchange(tok)
	e.refusedWith(err, tok, ci.CondSignature, "rotated out")
	// A flood of unknown key ids refetches the set at most once per 30 s.
	fetches = e.gh.KeyFetches()
	for range 20 {
		_, _ = e.exchange(e.gh.MintRetired(deploy(), "forged-kid"))
	}
	if n := e.gh.KeyFetches() - fetches; n > 1 {
		t.Fatalf("20 unknown key ids fetched the key set %d times; at most once per 30s", n)
	}
}

// A pipeline token reads its own pipeline's secrets and nobody else's.
func TestPipelineReadsOnlyItsSecrets(t *testing.T) {
	e := newEnv(t)
	run := citest.Run{Repository: "acme/infra", Workflow: "test.yml", Ref: "refs/heads/feature", SHA: otherSHA, Event: "push", Actor: "bob", Audience: "rampart"}
	res, err := e.exchange(e.gh.Mint(run))
	if err != nil {
		t.Fatal(err)
	}
	if d := e.index.Check(authz.Query{Subject: res.Run.Subject, Action: "read", Resource: "secrets/deploy-key"}); d.Allowed {
		t.Fatalf("the test pipeline read the deploy pipeline's secret: %+v", d)
	}
	if d := e.index.Check(authz.Query{Subject: "ci:github/acme/infra/deploy.yml", Action: "read", Resource: "secrets/deploy-key"}); !d.Allowed {
		t.Fatalf("the deploy pipeline: %+v", d)
	}
}

// When the change gate cannot tell whether a commit was approved, or the issuer's keys cannot be
// fetched, the exchange is refused: fail closed.
func TestExchangeFailsClosed(t *testing.T) {
	e := newEnv(t)
	broken, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "broken.db"))
	if err != nil {
		t.Fatal(err)
	}
	broken.Close()
	x := e.exchanger(change.NewService(change.Options{Store: broken, Policy: func() *policy.Policy { return e.pol }}))
	if _, err := x.Exchange(context.Background(), e.gh.Mint(deploy()), "address 127.0.0.1/32"); !errors.Is(err, ci.ErrUnavailable) || !strings.Contains(err.Error(), "cannot tell") {
		t.Fatalf("a gate that cannot answer: %v", err)
	}
	// The unguarded GitLab pipeline does not ask the gate; an issuer that is down is refused.
	gl := citest.Run{Repository: "acme/web", Ref: "refs/heads/main", SHA: otherSHA, Event: "push", Protected: true, Audience: "rampart"}
	tok := e.gl.Mint(gl)
	e.gl.Close()
	if _, err := e.exchange(tok); !errors.Is(err, ci.ErrUnavailable) {
		t.Fatalf("an issuer whose keys cannot be fetched: %v", err)
	}
}
