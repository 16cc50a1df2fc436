package ci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// Triggerer starts runs of pipelines for people who hold trigger on them, through the CI
// system's dispatch API in GitHub's workflow_dispatch shape:
// POST {url}/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches {"ref": REF}.
type Triggerer struct {
	Policy  func() *policy.Policy
	Decider Decider
	// Record appends an entry to the ledger; a trigger that cannot be recorded is not made.
	Record func(ctx context.Context, e audit.Event) error
	// Refused records a refused trigger, aggregated per source (refusals.Recorder.Record).
	Refused func(ctx context.Context, source string, e audit.Event) error
	// Getenv reads the dispatch token's environment variable (os.Getenv).
	Getenv func(string) string
	Client *http.Client
	Now    func() time.Time
}

// TriggerInput is one person's request to start a run.
type TriggerInput struct {
	Caller   string
	Pipeline string
	Ref      string
}

// Errors of Trigger are *Refusal (403 or 400: Condition CondTrigger, CondPipeline or CondRef) or
// wrap ErrUnavailable (503: the decision engine, the ledger or the CI system).

// Trigger checks that the caller holds trigger on pipelines/<pipeline>, that ref is one the
// pipeline allows, records the trigger (pipeline.trigger) and calls the dispatch API.
func (t *Triggerer) Trigger(ctx context.Context, in TriggerInput) error {
	now := t.Now()
	pol := t.Policy()
	res := policy.PipelineResource(in.Pipeline)
	ev := audit.Event{Code: "pipeline.trigger", Class: audit.ClassAPIActivity, Activity: audit.ActivityCreate, Severity: audit.SeverityMedium,
		Time: now, Actor: in.Caller, Resources: []string{res}, Details: map[string]any{"pipeline": in.Pipeline, "ref": in.Ref}}
	fail := func(err error) error {
		e := ev
		e.Code, e.Failed, e.Message = "pipeline.trigger.refused", true, fmt.Sprintf("%s may not trigger %s at %s: %v", in.Caller, in.Pipeline, in.Ref, err)
		if t.Refused != nil {
			_ = t.Refused(ctx, "subject "+in.Caller, e)
		}
		return err
	}
	pl, ok := pol.Pipeline(in.Pipeline)
	if !ok {
		return fail(refuse(CondPipeline, "no Pipeline %q is declared", in.Pipeline))
	}
	if pl.Dispatch == nil {
		return fail(refuse(CondPipeline, "pipeline %s has no dispatch settings; add spec.dispatch (url, token_env) to trigger it from Rampart", in.Pipeline))
	}
	if err := policy.ValidateRefPattern(in.Ref); err != nil || strings.Contains(in.Ref, "*") {
		return fail(refuse(CondRef, "ref %q must be a full ref name such as refs/heads/main", in.Ref))
	}
	refOK := false
	for _, r := range pl.Refs {
		refOK = refOK || policy.MatchGlob(r, in.Ref)
	}
	if !refOK {
		return fail(refuse(CondRef, "ref %s is not allowed for pipeline %s (allowed: %v)", in.Ref, in.Pipeline, pl.Refs))
	}
	d := t.Decider.Check(authz.Query{Subject: in.Caller, Action: "trigger", Resource: res})
	if d.Unavailable {
		return fmt.Errorf("%w: the decision engine: %s", ErrUnavailable, d.Reason)
	}
	if !d.Allowed {
		return fail(refuse(CondTrigger, "%s holds no active trigger grant on %s: %s; request one (rampart request create)", in.Caller, res, d.Reason))
	}
	ev.Details["grant_id"], ev.Details["binding"] = d.GrantID, d.Binding
	ev.Message = fmt.Sprintf("%s triggered pipeline %s at %s (grant %s)", in.Caller, in.Pipeline, in.Ref, orNobody(d.GrantID+d.Binding))
	if err := t.Record(ctx, ev); err != nil {
		return fmt.Errorf("%w: record the trigger, so it was not made: %v", ErrUnavailable, err)
	}
	if err := t.dispatch(ctx, pl, in.Ref); err != nil {
		e := ev
		e.Code, e.Failed, e.Message = "pipeline.trigger.failed", true, fmt.Sprintf("the CI system refused to start %s at %s for %s: %v", in.Pipeline, in.Ref, in.Caller, err)
		_ = t.Record(ctx, e)
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

func (t *Triggerer) dispatch(ctx context.Context, pl *policy.Pipeline, ref string) error {
	repo, wf := pl.DispatchTarget()
	owner, name, _ := strings.Cut(repo, "/")
	u := strings.TrimSuffix(pl.Dispatch.URL, "/") + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) +
		"/actions/workflows/" + url.PathEscape(wf) + "/dispatches"
	body, _ := json.Marshal(map[string]string{"ref": ref})
	req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	token := t.Getenv(pl.Dispatch.TokenEnv)
	if token == "" {
		return fmt.Errorf("the server's environment variable %s (spec.dispatch.token_env) is empty", pl.Dispatch.TokenEnv)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Content-Type", "application/json")
	client := t.Client
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("dispatch API: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("dispatch API answered %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}
