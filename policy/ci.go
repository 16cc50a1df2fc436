package policy

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// CI job identity: a CIIssuer is a CI system whose jobs carry OpenID Connect ID tokens, and how
// the claims of those tokens name a pipeline; a Pipeline is one workflow of one repository, the
// runs that may obtain its identity (the subject ci:<issuer>/<repository>/<workflow>) and, for
// protected refs, the change gate that must have approved the commit. Package ci verifies the
// tokens and applies these rules; this file holds the kinds and their validation.

// CI provider shapes: how a CI system's ID tokens spell the facts Rampart needs.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
)

// CIIssuer declares a CI system whose jobs' ID tokens Rampart exchanges for pipeline tokens.
type CIIssuer struct {
	// Name is the issuer's name in pipeline subjects (ci:<name>/<repository>/<workflow>).
	Name        string `yaml:"-"`
	Description string `yaml:"description"`
	// Issuer is the tokens' iss, an https URL whose /.well-known/openid-configuration names
	// the JWKS that signs them.
	Issuer string `yaml:"issuer"`
	// Audience is the aud the tokens must carry (the job asks its CI system for it).
	Audience string `yaml:"audience"`
	// Provider is the shape of the tokens: github or gitlab. It sets the default claim names
	// and how a ref is spelled (GitLab's ref is a bare branch or tag name).
	Provider string `yaml:"provider"`
	// Claims overrides the provider's claim names; in a loaded policy every field not written
	// holds the provider's default.
	Claims ClaimMapping `yaml:"claims"`

	src source
}

// ClaimMapping names the claims that carry each fact about a run. A field left out takes the
// provider's default.
type ClaimMapping struct {
	// Repository is the repository's path (owner/name, group/subgroup/project).
	Repository string `yaml:"repository"`
	// Workflow names the workflow: the claim's value is a path (optionally followed by @ref),
	// whose last segment, without leading dots, is the workflow's name.
	Workflow string `yaml:"workflow"`
	Ref      string `yaml:"ref"`
	// RefType is the claim saying branch or tag, for providers whose ref is a bare name.
	RefType string `yaml:"ref_type"`
	SHA     string `yaml:"sha"`
	Event   string `yaml:"event"`
	Actor   string `yaml:"actor"`
	// Protected is the claim that says the ref is protected, and ProtectedValue the value that
	// means so. Write protected: "" for an issuer whose tokens must never establish a
	// protected ref (a self-hosted issuer anyone with runner access could mint for): its runs
	// then never satisfy protected_refs_only.
	Protected      string `yaml:"protected"`
	ProtectedValue string `yaml:"protected_value"`
}

// Defaults of the claim mapping, per provider.
var claimDefaults = map[string]ClaimMapping{
	ProviderGitHub: {Repository: "repository", Workflow: "workflow_ref", Ref: "ref", SHA: "sha", Event: "event_name", Actor: "actor",
		Protected: "ref_protected", ProtectedValue: "true"},
	ProviderGitLab: {Repository: "project_path", Workflow: "ci_config_ref_uri", Ref: "ref", RefType: "ref_type", SHA: "sha", Event: "pipeline_source", Actor: "user_login",
		Protected: "ref_protected", ProtectedValue: "true"},
}

// PullRequestEvents are the events of runs on code proposed by someone who may not push: such a
// run never obtains the identity of a pipeline that needs protected refs or approved changes.
var PullRequestEvents = []string{"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment", "merge_request_event", "external_pull_request_event"}

// IsPullRequestEvent reports whether event is one of PullRequestEvents.
func IsPullRequestEvent(event string) bool {
	for _, e := range PullRequestEvents {
		if e == event {
			return true
		}
	}
	return false
}

// Pipeline declares one workflow of one repository whose runs may obtain a pipeline token.
// Its name is <repository>/<workflow> (acme/infra/deploy.yml); the resource
// pipelines/<repository>/<workflow> must be declared too: triggering it needs the action
// trigger on that resource.
type Pipeline struct {
	Name        string `yaml:"-"`
	Description string `yaml:"description"`
	// Issuer names the CIIssuer whose tokens identify runs of this pipeline.
	Issuer string `yaml:"issuer"`
	// Events are the run events allowed (push, workflow_dispatch, schedule, web, ...).
	Events []string `yaml:"events"`
	// Refs are the ref globs allowed (refs/heads/main, refs/tags/v*).
	Refs []string `yaml:"refs"`
	// ProtectedRefsOnly refuses runs whose token does not say the ref is protected (by the
	// issuer's protected claim).
	ProtectedRefsOnly bool `yaml:"protected_refs_only"`
	// ApprovedChanges names a Repository (kind: Repository) whose change gate must have landed
	// the run's commit on its ref, for runs on protected refs. When the gate cannot tell, the
	// run is refused.
	ApprovedChanges string `yaml:"approved_changes"`
	// TriggerEvents are events (workflow_dispatch, web, api) whose runs are accepted only when
	// the token's actor holds an active trigger grant on the pipeline's resource.
	TriggerEvents []string `yaml:"trigger_events"`
	// Dispatch is how `rampart pipeline trigger` starts a run (GitHub's workflow_dispatch).
	Dispatch *Dispatch `yaml:"dispatch"`

	src source
}

// Dispatch is the CI system's API that starts a run of a pipeline.
type Dispatch struct {
	// URL is the API's base URL (https://api.github.com, or a GitHub Enterprise /api/v3).
	URL string `yaml:"url"`
	// Repository and Workflow are the owner/name and workflow file the dispatch names (default:
	// the pipeline's name's repository and workflow).
	Repository string `yaml:"repository"`
	Workflow   string `yaml:"workflow"`
	// TokenEnv names the server's environment variable holding the API token (never the token
	// itself: the policy holds no secrets).
	TokenEnv string `yaml:"token_env"`
}

// PipelineResource returns the resource name of a pipeline: pipelines/<name>.
func PipelineResource(name string) string { return "pipelines/" + name }

// PipelineSubject returns a pipeline's subject: ci:<issuer>/<name>.
func PipelineSubject(issuer, name string) string { return "ci:" + issuer + "/" + name }

// CIIssuers returns the CI issuers, sorted by name.
func (p *Policy) CIIssuers() []*CIIssuer { return sortedValues(p.ciIssuers) }

// CIIssuerByURL returns the CI issuer whose iss is issuer.
func (p *Policy) CIIssuerByURL(issuer string) (*CIIssuer, bool) {
	for _, c := range p.ciIssuers {
		if c.Issuer == issuer {
			return c, true
		}
	}
	return nil, false
}

// Pipeline returns the pipeline named <repository>/<workflow>.
func (p *Policy) Pipeline(name string) (*Pipeline, bool) { pl, ok := p.pipelines[name]; return pl, ok }

// Pipelines returns the pipelines, sorted by name.
func (p *Policy) Pipelines() []*Pipeline { return sortedValues(p.pipelines) }

// validatePipelineName checks a pipeline's name: a resource-name path of at least two segments
// (the repository's path, then the workflow).
func validatePipelineName(s string) error {
	if err := ValidateResourceName(s); err != nil {
		return fmt.Errorf("pipeline name: %v", err)
	}
	if strings.Count(s, "/") < 1 {
		return fmt.Errorf("pipeline name %q must be <repository>/<workflow> (e.g. acme/infra/deploy.yml)", s)
	}
	if len(PipelineResource(s)) > maxResourceLen {
		return fmt.Errorf("pipeline name %q is too long: pipelines/<name> must be at most %d characters", s, maxResourceLen)
	}
	return nil
}

func (p *Policy) validateCIIssuer(c *CIIssuer) {
	def, ok := claimDefaults[c.Provider]
	if !ok {
		c.src.errorf("provider", "provider %q is not known; use github or gitlab", c.Provider)
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		c.src.errorf("issuer", "issuer is required: the tokens' iss (e.g. https://token.actions.githubusercontent.com)")
	case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		c.src.errorf("issuer", "issuer %q is not an absolute URL without query, fragment or user info", c.Issuer)
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		c.src.errorf("issuer", "issuer %q must be https (plain http only on a loopback address, for tests)", c.Issuer)
	}
	if c.Audience == "" {
		c.src.errorf("audience", "audience is required: the aud your jobs ask their CI system for (e.g. rampart)")
	}
	m := &c.Claims
	fill := func(field string, v *string, d string) {
		if !c.src.has("claims." + field) {
			*v = d
		}
	}
	fill("repository", &m.Repository, def.Repository)
	fill("workflow", &m.Workflow, def.Workflow)
	fill("ref", &m.Ref, def.Ref)
	fill("ref_type", &m.RefType, def.RefType)
	fill("sha", &m.SHA, def.SHA)
	fill("event", &m.Event, def.Event)
	fill("actor", &m.Actor, def.Actor)
	fill("protected", &m.Protected, def.Protected)
	fill("protected_value", &m.ProtectedValue, def.ProtectedValue)
	for field, v := range map[string]string{"repository": m.Repository, "workflow": m.Workflow, "ref": m.Ref, "sha": m.SHA, "event": m.Event, "actor": m.Actor} {
		if v == "" {
			c.src.errorf("claims."+field, "claims.%s is empty; name the claim that carries it", field)
		}
	}
	for field, v := range map[string]string{"repository": m.Repository, "workflow": m.Workflow, "ref": m.Ref, "ref_type": m.RefType, "sha": m.SHA, "event": m.Event, "actor": m.Actor, "protected": m.Protected} {
		if err := validateClaimName(v); err != nil {
			c.src.errorf("claims."+field, "%v", err)
		}
	}
	if m.Protected != "" && m.ProtectedValue == "" {
		c.src.errorf("claims.protected_value", "protected_value is empty; say which value of %q means a protected ref (e.g. \"true\")", m.Protected)
	}
	for _, o := range p.ciIssuers {
		if o != c && o.Issuer == c.Issuer && o.Name < c.Name {
			c.src.errorf("issuer", "issuer %q is also declared by CIIssuer %q; one issuer URL, one name", c.Issuer, o.Name)
		}
	}
}

func validateClaimName(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("claim name %.20q... is over 64 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLowerAlnum(c) && !(c >= 'A' && c <= 'Z') && c != '_' && c != '-' && c != '.' {
			return fmt.Errorf("claim name %q has %s; use letters, digits, '_', '-' and '.'", s, charAt(s, i))
		}
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "::1" || strings.HasPrefix(host, "127.")
}

func (p *Policy) validatePipeline(pl *Pipeline) {
	if pl.Issuer == "" {
		pl.src.errorf("issuer", "issuer is required: the name of a CIIssuer")
	} else if p.ciIssuers[pl.Issuer] == nil {
		pl.src.errorf("issuer", "CI issuer %q is not declared; declare it with kind: CIIssuer%s", pl.Issuer, p.suggest(pl.Issuer, keys(p.ciIssuers)))
	} else if err := ValidateSubject(PipelineSubject(pl.Issuer, pl.Name)); err != nil {
		pl.src.errorf("issuer", "%v", err)
	}
	if res := PipelineResource(pl.Name); p.resources[res] == nil {
		pl.src.errorf("", "resource %q is not declared; declare it (kind: Resource, metadata.name: %s, spec.kind: pipeline) so that trigger grants and secret bindings can name it", res, res)
	}
	if len(pl.Events) == 0 {
		pl.src.errorf("events", "list the run events allowed (e.g. push, workflow_dispatch)")
	}
	guarded := pl.ProtectedRefsOnly || pl.ApprovedChanges != ""
	for i, e := range pl.Events {
		if err := validateEvent(e); err != nil {
			pl.src.errorf(fmt.Sprintf("events[%d]", i), "%v", err)
		} else if guarded && IsPullRequestEvent(e) {
			pl.src.errorf(fmt.Sprintf("events[%d]", i), "event %q runs code proposed by people who may not push (forks included); a pipeline with protected_refs_only or approved_changes never accepts it", e)
		}
	}
	for i, e := range pl.TriggerEvents {
		field := fmt.Sprintf("trigger_events[%d]", i)
		if err := validateEvent(e); err != nil {
			pl.src.errorf(field, "%v", err)
		} else if !slices.Contains(pl.Events, e) {
			pl.src.errorf(field, "trigger event %q is not among events; add it there too", e)
		}
	}
	if len(pl.Refs) == 0 {
		pl.src.errorf("refs", "list the ref globs allowed (e.g. refs/heads/main)")
	}
	for i, r := range pl.Refs {
		if err := ValidateRefPattern(r); err != nil {
			pl.src.errorf(fmt.Sprintf("refs[%d]", i), "%v", err)
		}
	}
	if pl.ApprovedChanges != "" && p.repositories[pl.ApprovedChanges] == nil {
		pl.src.errorf("approved_changes", "repository %q is not declared; declare it with kind: Repository%s", pl.ApprovedChanges, p.suggest(pl.ApprovedChanges, keys(p.repositories)))
	}
	if d := pl.Dispatch; d != nil {
		u, err := url.Parse(d.URL)
		switch {
		case d.URL == "":
			pl.src.errorf("dispatch.url", "dispatch.url is required (e.g. https://api.github.com)")
		case err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))):
			pl.src.errorf("dispatch.url", "dispatch.url %q must be an https URL (plain http only on a loopback address, for tests)", d.URL)
		}
		if d.TokenEnv == "" {
			pl.src.errorf("dispatch.token_env", "dispatch.token_env is required: the server's environment variable holding the CI system's API token")
		}
		if d.Repository != "" && (strings.Count(d.Repository, "/") != 1 || strings.ContainsAny(d.Repository, " ?#%\\")) {
			pl.src.errorf("dispatch.repository", "dispatch.repository %q must be owner/name", d.Repository)
		}
		if strings.ContainsAny(d.Workflow, "/?#% \\") {
			pl.src.errorf("dispatch.workflow", "dispatch.workflow %q must be a workflow file name (deploy.yml) or id", d.Workflow)
		}
	}
}

func validateEvent(e string) error {
	if e == "" || len(e) > maxNameLen {
		return fmt.Errorf("event %q must be 1 to %d characters", e, maxNameLen)
	}
	for i := 0; i < len(e); i++ {
		if c := e[i]; !isLowerAlnum(c) && c != '_' && c != '-' {
			return fmt.Errorf("event %q has %s; use lowercase letters, digits, '_' and '-'", e, charAt(e, i))
		}
	}
	return nil
}

// DispatchTarget returns the repository and workflow a dispatch of the pipeline names.
func (pl *Pipeline) DispatchTarget() (repository, workflow string) {
	i := strings.LastIndex(pl.Name, "/")
	repository, workflow = pl.Name[:i], pl.Name[i+1:]
	if pl.Dispatch != nil && pl.Dispatch.Repository != "" {
		repository = pl.Dispatch.Repository
	}
	if pl.Dispatch != nil && pl.Dispatch.Workflow != "" {
		workflow = pl.Dispatch.Workflow
	}
	return repository, workflow
}
