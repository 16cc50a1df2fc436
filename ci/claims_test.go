package ci_test

import (
	"encoding/json"
	"strings"
	"testing"

	"rampart.dev/rampart/ci"
	"rampart.dev/rampart/internal/citest"
	"rampart.dev/rampart/policy"
)

func fuzzPolicy(t testing.TB) *policy.Policy {
	p, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(citest.Policy("https://gh.example.com", "https://gl.example.com", "https://runners.example.com", "https://api.example.com"))}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzMapClaims feeds hostile claim sets to the claim mapping of each issuer shape: it never
// panics, and whatever it accepts is a valid pipeline subject, a full ref, a commit id, and
// protected only by the word of an issuer whose mapping has a protected claim.
func FuzzMapClaims(f *testing.F) {
	pol := fuzzPolicy(f)
	gh := citest.NewFakeGitHubActionsIssuer(f, nil)
	gl := citest.NewFakeGitLabCIIssuer(f, nil)
	for _, r := range []citest.Run{
		{Repository: "acme/infra", Workflow: "deploy.yml", Ref: "refs/heads/main", SHA: strings.Repeat("a", 40), Event: "push", Actor: "alice", Protected: true},
		{Repository: "Acme/Infra", Workflow: "../../x.yml", Ref: "refs/pull/1/merge", SHA: strings.Repeat("b", 64), Event: "pull_request"},
		{Repository: "acme//infra", Workflow: ".github", Ref: "main", SHA: "x", Event: "PUSH", Actor: "Mallory\u202e"},
	} {
		for _, iss := range []*citest.FakeCIIssuer{gh, gl} {
			b, _ := json.Marshal(iss.Claims(r))
			f.Add(b)
		}
	}
	f.Add([]byte(`{"repository": 1, "workflow_ref": null, "ref_protected": true}`))
	f.Add([]byte(`{"project_path":"a/b","ci_config_ref_uri":"x//.gitlab-ci.yml@refs/heads/main","ref":"main","ref_type":"branch","sha":"` + strings.Repeat("c", 40) + `","pipeline_source":"push"}`))
	issuers := pol.CIIssuers()
	f.Fuzz(func(t *testing.T, raw []byte) {
		var claims map[string]any
		if json.Unmarshal(raw, &claims) != nil {
			return
		}
		for _, iss := range issuers {
			run, err := ci.MapClaims(iss, claims)
			if err != nil {
				continue
			}
			if policy.ValidateSubject(run.Subject) != nil || policy.SubjectKind(run.Subject) != policy.KindPipeline || run.Subject != policy.PipelineSubject(iss.Name, run.Pipeline) {
				t.Fatalf("issuer %s accepted subject %q", iss.Name, run.Subject)
			}
			if policy.ValidateResourceName(policy.PipelineResource(run.Pipeline)) != nil {
				t.Fatalf("pipeline resource of %q is invalid", run.Pipeline)
			}
			if !strings.HasPrefix(run.Ref, "refs/") || strings.ContainsAny(run.Ref, "* ") || strings.Contains(run.Ref, "..") {
				t.Fatalf("ref %q", run.Ref)
			}
			if len(run.SHA) != 40 && len(run.SHA) != 64 || strings.Trim(run.SHA, "0123456789abcdef") != "" {
				t.Fatalf("sha %q", run.SHA)
			}
			if run.Protected && iss.Claims.Protected == "" {
				t.Fatalf("issuer %s has no protected claim, yet the run is protected", iss.Name)
			}
			if run.Actor != "" && (policy.ValidateSubject(run.Actor) != nil || policy.SubjectKind(run.Actor) != policy.KindUser) {
				t.Fatalf("actor %q", run.Actor)
			}
		}
	})
}

func TestMapClaimsShapes(t *testing.T) {
	pol := fuzzPolicy(t)
	gh, _ := pol.CIIssuerByURL("https://gh.example.com")
	gl, _ := pol.CIIssuerByURL("https://gl.example.com")
	sha := strings.Repeat("a", 40)
	run, err := ci.MapClaims(gh, map[string]any{"repository": "Acme/Infra", "workflow_ref": "Acme/Infra/.github/workflows/Deploy.yml@refs/heads/main",
		"ref": "refs/heads/main", "sha": sha, "event_name": "push", "actor": "Alice", "ref_protected": "true"})
	if err != nil || run.Pipeline != "acme/infra/deploy.yml" || run.Actor != "alice" || !run.Protected {
		t.Fatalf("github: %+v %v", run, err)
	}
	run, err = ci.MapClaims(gl, map[string]any{"project_path": "acme/group/web", "ci_config_ref_uri": "gitlab.example.com/acme/group/web//.gitlab-ci.yml@refs/heads/main",
		"ref": "v1.2", "ref_type": "tag", "sha": sha, "pipeline_source": "push", "user_login": "bob", "ref_protected": "false"})
	if err != nil || run.Pipeline != "acme/group/web/gitlab-ci.yml" || run.Ref != "refs/tags/v1.2" || run.Protected {
		t.Fatalf("gitlab: %+v %v", run, err)
	}
}
