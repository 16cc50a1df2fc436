package policy_test

import (
	"strings"
	"testing"

	"rampart.dev/rampart/policy"
)

const ciBase = repoBase + `
---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: pipelines/acme/infra/deploy.yml}
spec: {kind: pipeline, sensitivity: sensitive, owners: [maintainers]}
---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: github}
spec: {issuer: "https://token.actions.githubusercontent.com", audience: rampart, provider: github}
---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: gitlab}
spec:
  issuer: https://gitlab.example.com
  audience: rampart
  provider: gitlab
  claims: {actor: user_email}
---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: runners}
spec:
  issuer: https://ci.internal.example.com
  audience: rampart
  provider: github
  claims: {protected: ""}
`

const ciPipeline = `
---
apiVersion: rampart.dev/v1alpha1
kind: Pipeline
metadata: {name: acme/infra/deploy.yml}
spec:
  issuer: github
  events: [push, workflow_dispatch]
  refs: [refs/heads/main]
  protected_refs_only: true
  approved_changes: infra
  trigger_events: [workflow_dispatch]
  dispatch: {url: "https://api.github.com", token_env: GITHUB_DISPATCH_TOKEN}
`

func TestCIIssuerAndPipeline(t *testing.T) {
	p, err := policy.Parse([]policy.File{{Name: "ci.yaml", Data: []byte(ciBase + ciPipeline)}})
	if err != nil {
		t.Fatal(err)
	}
	gh, ok := p.CIIssuerByURL("https://token.actions.githubusercontent.com")
	if !ok || gh.Name != "github" || gh.Claims.Repository != "repository" || gh.Claims.Workflow != "workflow_ref" || gh.Claims.Protected != "ref_protected" || gh.Claims.ProtectedValue != "true" {
		t.Fatalf("github issuer and its defaults: %+v", gh)
	}
	gl, _ := p.CIIssuerByURL("https://gitlab.example.com")
	if gl.Claims.Repository != "project_path" || gl.Claims.Actor != "user_email" || gl.Claims.RefType != "ref_type" {
		t.Fatalf("gitlab issuer: an override and the defaults: %+v", gl.Claims)
	}
	rn, _ := p.CIIssuerByURL("https://ci.internal.example.com")
	if rn.Claims.Protected != "" {
		t.Fatalf("protected: \"\" must switch the protected claim off, got %q", rn.Claims.Protected)
	}
	pl, ok := p.Pipeline("acme/infra/deploy.yml")
	if !ok || pl.Issuer != "github" || !pl.ProtectedRefsOnly || pl.ApprovedChanges != "infra" {
		t.Fatalf("pipeline: %+v", pl)
	}
	if repo, wf := pl.DispatchTarget(); repo != "acme/infra" || wf != "deploy.yml" {
		t.Fatalf("dispatch target %s %s", repo, wf)
	}
	if err := policy.ValidateSubject("ci:github/acme/infra/deploy.yml"); err != nil || policy.SubjectKind("ci:github/acme/infra/deploy.yml") != policy.KindPipeline {
		t.Fatalf("pipeline subject: %v", err)
	}
	if !policy.IsMachine("ci:github/acme/infra/deploy.yml") {
		t.Fatal("a pipeline is a machine: it never approves")
	}
}

// Each mistake is reported at its file:line with the field, and says what to do.
func TestCIValidationErrors(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"no resource", strings.Replace(ciPipeline, "acme/infra/deploy.yml}", "acme/infra/other.yml}", 1),
			`ci.yaml:88:3: spec: resource "pipelines/acme/infra/other.yml" is not declared`},
		{"unknown issuer", strings.Replace(ciPipeline, "issuer: github", "issuer: gthub", 1), `spec.issuer: CI issuer "gthub" is not declared`},
		{"pull_request on a guarded pipeline", strings.Replace(ciPipeline, "[push, workflow_dispatch]", "[push, workflow_dispatch, pull_request]", 1),
			`spec.events[2]: event "pull_request" runs code proposed by people who may not push`},
		{"trigger event not allowed", strings.Replace(ciPipeline, "trigger_events: [workflow_dispatch]", "trigger_events: [web]", 1), `spec.trigger_events[0]: trigger event "web" is not among events`},
		{"bad ref", strings.Replace(ciPipeline, "refs: [refs/heads/main]", "refs: [main]", 1), `spec.refs[0]: ref pattern "main" must be a full ref name`},
		{"unknown repository", strings.Replace(ciPipeline, "approved_changes: infra", "approved_changes: infr", 1), `spec.approved_changes: repository "infr" is not declared`},
		{"dispatch over http", strings.Replace(ciPipeline, "https://api.github.com", "http://api.github.com", 1), `spec.dispatch.url: dispatch.url "http://api.github.com" must be an https URL`},
		{"pipeline name", strings.Replace(ciPipeline, "acme/infra/deploy.yml}", "deploy.yml}", 1), `must be <repository>/<workflow>`},
		{"issuer over http", `
---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: plain}
spec: {issuer: "http://ci.example.com", audience: rampart, provider: github}`, `spec.issuer: issuer "http://ci.example.com" must be https`},
		{"provider", `
---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: other}
spec: {issuer: "https://ci.example.com", audience: rampart, provider: jenkins}`, `spec.provider: provider "jenkins" is not known; use github or gitlab`},
		{"claim name", `
---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: other}
spec: {issuer: "https://ci.example.com", audience: rampart, provider: github, claims: {sha: "a b"}}`, `spec.claims.sha: claim name "a b" has ' '`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := policy.Parse([]policy.File{{Name: "ci.yaml", Data: []byte(ciBase + c.doc)}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %q", err, c.want)
			}
		})
	}
}

// TestComparePipelines: a policy change that lets more runs obtain a pipeline's identity is
// WEAKENED; taking a pipeline away strengthens.
func TestComparePipelines(t *testing.T) {
	parse := func(extra string) *policy.Policy {
		t.Helper()
		p, err := policy.Parse([]policy.File{{Name: "ci.yaml", Data: []byte(ciBase + extra)}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, old, new string
		kind, obj      string
		verdict        policy.Verdict
		field          string
	}{
		{"pipeline added", "", ciPipeline, "pipeline", "acme/infra/deploy.yml", policy.Weakened, ""},
		{"pipeline removed", ciPipeline, "", "pipeline", "acme/infra/deploy.yml", policy.Strengthened, ""},
		{"event added", ciPipeline, strings.Replace(ciPipeline, "[push, workflow_dispatch]", "[push, workflow_dispatch, schedule]", 1), "pipeline", "acme/infra/deploy.yml", policy.Weakened, "events"},
		{"protected refs off", ciPipeline, strings.Replace(ciPipeline, "protected_refs_only: true", "protected_refs_only: false", 1), "pipeline", "acme/infra/deploy.yml", policy.Weakened, "protected_refs_only"},
		{"approved changes off", ciPipeline, strings.Replace(ciPipeline, "  approved_changes: infra\n", "", 1), "pipeline", "acme/infra/deploy.yml", policy.Weakened, "approved_changes"},
		{"description", ciPipeline, strings.Replace(ciPipeline, "  issuer: github\n", "  issuer: github\n  description: deploys\n", 1), "pipeline", "acme/infra/deploy.yml", policy.Neutral, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			changes := policy.Compare(parse(c.old), parse(c.new)).Find(policy.SectionDefinition, c.kind, c.obj)
			if len(changes) == 0 {
				t.Fatal("no change reported")
			}
			worst := policy.Neutral
			for _, ch := range changes {
				if ch.Verdict == policy.Weakened || (ch.Verdict == policy.Strengthened && worst == policy.Neutral) {
					worst = ch.Verdict
				}
				if ch.Verdict == policy.Weakened && c.field != "" && ch.Field != c.field {
					t.Errorf("weakened field %q, want %q", ch.Field, c.field)
				}
			}
			if worst != c.verdict {
				t.Fatalf("verdict %s, want %s: %+v", worst, c.verdict, changes)
			}
		})
	}
}
