// Package ci gives CI jobs an identity: a job presents the OpenID Connect ID token its CI system
// issued it (GitHub Actions, GitLab CI), and gets a short Rampart token for its pipeline's
// subject ci:<issuer>/<repository>/<workflow> — only when the policy declares that pipeline and
// the run's event and ref are allowed by its rule, and, for protected refs, the change gate
// approved the run's commit. It also starts runs (Trigger: GitHub's workflow_dispatch) for people
// who hold a trigger grant on the pipeline.
//
// Invariants: 6 (fail closed) — an issuer whose keys cannot be fetched, a change gate that cannot
// say whether a commit was approved, or a decision engine that cannot be trusted refuses the
// exchange; 10 (the guard is guarded) — a pipeline that needs approved changes gets its identity
// only for commits the change gate landed; 8 — a pipeline token is a machine's, bound to no
// session: it never approves; 4 — every exchange and every trigger is in the ledger, in the
// transaction that issues the token; 11 — refusals, which anyone can provoke, are recorded
// aggregated per client network and condition (Options.Refused).
//
// ID tokens are verified against the issuer's discovery document and key set (Verifier):
// asymmetric algorithms only (never none or HMAC), issuer, audience, exp, nbf, with 30 s of
// leeway; the key set is cached and refetched for an unknown key id (rotation) or after
// 10 minutes. Each refusal is a *Refusal naming the condition that failed (Cond*).
package ci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// MaxTokenTTL is the longest life of a pipeline token.
const MaxTokenTTL = 15 * time.Minute

// Conditions an exchange can fail on, as a Refusal's Condition and the ledger's details.
const (
	CondMalformed   = "malformed"
	CondAlgorithm   = "algorithm"
	CondIssuer      = "issuer"
	CondSignature   = "signature"
	CondAudience    = "audience"
	CondExpired     = "expired"
	CondNotYetValid = "not_yet_valid"
	CondClaims      = "claims"
	CondPipeline    = "pipeline"
	CondEvent       = "event"
	CondRef         = "ref"
	CondProtected   = "protected_ref"
	CondPullRequest = "pull_request"
	CondApproval    = "approved_change"
	CondTrigger     = "trigger_grant"
)

// ErrUnavailable means something the decision needs could not be reached (an issuer's keys, the
// change gate, the decision engine): the exchange is refused (503), never allowed.
var ErrUnavailable = errors.New("unavailable")

// Refusal is a refused exchange: which condition failed and why, in words for the job's log.
type Refusal struct {
	Condition string
	Msg       string
}

func (r *Refusal) Error() string { return r.Msg }

func refuse(cond, format string, args ...any) *Refusal {
	return &Refusal{Condition: cond, Msg: fmt.Sprintf(format, args...)}
}

// Decider answers whether a subject may act on a resource (the decision engine, *authz.Index).
type Decider interface {
	Check(authz.Query) authz.Decision
}

// ApprovedCommits tells whether the change gate landed a commit on a ref of a repository (a
// Repository of the policy). An error means it cannot tell; the exchange then refuses.
type ApprovedCommits interface {
	Landed(ctx context.Context, repository, ref, sha string) (bool, error)
}

// Issued is a pipeline token as the minter made it.
type Issued struct {
	Token     string
	ID        string
	ExpiresAt time.Time
}

// Minter issues a pipeline token for subject with ttl and records e (ci.exchange) in the same
// transaction.
type Minter func(ctx context.Context, subject string, ttl time.Duration, e audit.Event) (Issued, error)

// Options configure an Exchanger.
type Options struct {
	Policy   func() *policy.Policy
	Verifier *Verifier
	Decider  Decider
	Approved ApprovedCommits
	Mint     Minter
	// Refused records a refusal, aggregated per source (refusals.Recorder.Record).
	Refused func(ctx context.Context, source string, e audit.Event) error
	// TTL is the tokens' life (MaxTokenTTL if zero; never more).
	TTL    time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Exchanger turns verified CI ID tokens into pipeline tokens.
type Exchanger struct{ o Options }

// NewExchanger returns an Exchanger.
func NewExchanger(o Options) *Exchanger {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TTL <= 0 || o.TTL > MaxTokenTTL {
		o.TTL = MaxTokenTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Verifier == nil {
		o.Verifier = &Verifier{Now: o.Now}
	}
	return &Exchanger{o: o}
}

// Result is a successful exchange.
type Result struct {
	Issued
	Run Run
}

// Exchange verifies idToken and, if the run may have its pipeline's identity, issues a token for
// it. source is the client's network, for aggregating refusals. A refusal is a *Refusal (it is
// recorded); an error wrapping ErrUnavailable means the answer could not be established (also
// recorded, and refused).
func (x *Exchanger) Exchange(ctx context.Context, idToken, source string) (Result, error) {
	pol := x.o.Policy()
	v, err := x.o.Verifier.Verify(ctx, pol, idToken)
	var run Run
	if err == nil {
		run, err = MapClaims(v.Issuer, v.Claims)
	}
	if err == nil {
		err = x.allowed(ctx, pol, run)
	}
	if err != nil {
		x.refused(ctx, source, run, err)
		return Result{}, err
	}
	now := x.o.Now()
	ttl := x.o.TTL
	e := audit.Event{Code: "ci.exchange", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
		Severity: audit.SeverityLow, Time: now, Actor: run.Subject, User: run.Subject, Resources: []string{policy.PipelineResource(run.Pipeline)},
		Message: fmt.Sprintf("pipeline %s (run of %s at %s, event %s, by %s) exchanged its CI ID token for a token valid %s", run.Subject, run.Ref, short(run.SHA), run.Event, orNobody(run.Actor), ttl),
		Details: runDetails(run)}
	iss, err := x.o.Mint(ctx, run.Subject, ttl, e)
	if err != nil {
		return Result{}, fmt.Errorf("%w: issue the pipeline token: %v", ErrUnavailable, err)
	}
	return Result{Issued: iss, Run: run}, nil
}

// allowed applies the pipeline's rule to the run.
func (x *Exchanger) allowed(ctx context.Context, pol *policy.Policy, run Run) error {
	pl, ok := pol.Pipeline(run.Pipeline)
	if !ok || pl.Issuer != run.Issuer {
		return refuse(CondPipeline, "no Pipeline %q of issuer %s is declared; declare it (kind: Pipeline) to give its runs an identity", run.Pipeline, run.Issuer)
	}
	guarded := pl.ProtectedRefsOnly || pl.ApprovedChanges != ""
	if guarded && policy.IsPullRequestEvent(run.Event) {
		return refuse(CondPullRequest, "event %s runs code proposed by people who may not push (a fork, perhaps); pipeline %s guards protected refs and never accepts it", run.Event, run.Pipeline)
	}
	if !containsString(pl.Events, run.Event) {
		return refuse(CondEvent, "event %s is not allowed for pipeline %s (allowed: %v)", run.Event, run.Pipeline, pl.Events)
	}
	refOK := false
	for _, r := range pl.Refs {
		if policy.MatchGlob(r, run.Ref) {
			refOK = true
			break
		}
	}
	if !refOK {
		return refuse(CondRef, "ref %s is not allowed for pipeline %s (allowed: %v)", run.Ref, run.Pipeline, pl.Refs)
	}
	if pl.ProtectedRefsOnly && !run.Protected {
		return refuse(CondProtected, "ref %s is not protected by the token's word (issuer %s%s); pipeline %s runs only on protected refs", run.Ref, run.Issuer, protectedHow(pol, run.Issuer), run.Pipeline)
	}
	if pl.ApprovedChanges != "" && (run.Protected || protectedByGate(pol, pl.ApprovedChanges, run.Ref)) {
		if x.o.Approved == nil {
			return fmt.Errorf("%w: no change gate is configured to tell whether commit %s was approved", ErrUnavailable, run.SHA)
		}
		ok, err := x.o.Approved.Landed(ctx, pl.ApprovedChanges, run.Ref, run.SHA)
		if err != nil {
			return fmt.Errorf("%w: the change gate cannot tell whether commit %s was approved: %v", ErrUnavailable, run.SHA, err)
		}
		if !ok {
			return refuse(CondApproval, "commit %s is not a change the change gate landed on %s of repository %s; pipeline %s runs only approved commits", run.SHA, run.Ref, pl.ApprovedChanges, run.Pipeline)
		}
	}
	if containsString(pl.TriggerEvents, run.Event) {
		if run.Actor == "" {
			return refuse(CondTrigger, "event %s needs the person who started the run to hold trigger on %s, and the token names no actor", run.Event, policy.PipelineResource(run.Pipeline))
		}
		d := x.o.Decider.Check(authz.Query{Subject: run.Actor, Action: "trigger", Resource: policy.PipelineResource(run.Pipeline)})
		if d.Unavailable {
			return fmt.Errorf("%w: the decision engine: %s", ErrUnavailable, d.Reason)
		}
		if !d.Allowed {
			return refuse(CondTrigger, "%s started this %s run but holds no active trigger grant on %s: %s", run.Actor, run.Event, policy.PipelineResource(run.Pipeline), d.Reason)
		}
	}
	return nil
}

// protectedByGate reports whether the change gate protects ref of repository: then a run on it
// needs an approved commit whatever the token says about protection.
func protectedByGate(pol *policy.Policy, repository, ref string) bool {
	r, ok := pol.Repository(repository)
	if !ok {
		return true // cannot tell: ask the gate, which fails closed
	}
	for _, rr := range r.Refs {
		if policy.MatchGlob(rr.Ref, ref) {
			return true
		}
	}
	return false
}

func protectedHow(pol *policy.Policy, issuer string) string {
	for _, c := range pol.CIIssuers() {
		if c.Name == issuer && c.Claims.Protected == "" {
			return ", whose claim mapping establishes no protected ref"
		}
	}
	return ""
}

func (x *Exchanger) refused(ctx context.Context, source string, run Run, err error) {
	cond := "unavailable"
	var r *Refusal
	if errors.As(err, &r) {
		cond = r.Condition
	}
	d := runDetails(run)
	d["condition"] = cond
	actor := run.Subject
	if actor == "" {
		actor = "anonymous"
	}
	e := audit.Event{Code: "ci.exchange.refused", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
		Severity: audit.SeverityMedium, Time: x.o.Now(), Actor: actor, User: run.Subject, Failed: true,
		Message: fmt.Sprintf("CI token exchange refused (%s): %v", cond, err), Details: d}
	if run.Pipeline != "" {
		e.Resources = []string{policy.PipelineResource(run.Pipeline)}
	}
	if x.o.Refused == nil {
		return
	}
	if rerr := x.o.Refused(ctx, source+" "+cond, e); rerr != nil {
		x.o.Logger.Error("cannot record a refused CI token exchange", "err", rerr, "condition", cond)
	}
}

func runDetails(run Run) map[string]any {
	d := map[string]any{}
	if run.Subject != "" {
		d["issuer"], d["pipeline"], d["ref"], d["sha"], d["event"], d["protected"] = run.Issuer, run.Pipeline, run.Ref, run.SHA, run.Event, run.Protected
		if run.Actor != "" {
			d["ci_actor"] = run.Actor
		}
	}
	return d
}

func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func orNobody(s string) string {
	if s == "" {
		return "an unnamed actor"
	}
	return s
}
