package ci

import (
	"fmt"
	"strings"

	"rampart.dev/rampart/policy"
)

// Run is what a verified ID token says about the job that presents it, in Rampart's terms.
type Run struct {
	// Issuer is the CIIssuer's name.
	Issuer string `json:"issuer"`
	// Pipeline is <repository>/<workflow>, lowercased; Subject is ci:<issuer>/<pipeline>.
	Pipeline string `json:"pipeline"`
	Subject  string `json:"subject"`
	// Ref is a full ref name (refs/heads/main), SHA the commit, Event what started the run.
	Ref   string `json:"ref"`
	SHA   string `json:"sha"`
	Event string `json:"event"`
	// Actor is the CI system's user who started the run (lowercased), "" when the token names none.
	Actor string `json:"actor,omitempty"`
	// Protected is set only when the issuer's mapping names a protected claim and the token
	// carries its protected value.
	Protected bool `json:"protected"`
}

// Limits on claim values: a CI system's claims are short; anything longer is refused.
const maxClaimLen = 512

// MapClaims turns a verified token's claims into a Run, by the issuer's claim mapping. Every
// value is checked: a string of at most 512 bytes, no control characters; the repository and
// workflow must make a valid pipeline name; the ref a full ref name; the sha 40 or 64 hex
// digits. Names are lowercased (CI systems' repository and user names are case-insensitive).
func MapClaims(iss *policy.CIIssuer, claims map[string]any) (Run, error) {
	m := iss.Claims
	str := func(name string, required bool) (string, error) {
		raw, ok := claims[name]
		if !ok || raw == nil {
			if required {
				return "", refuse(CondClaims, "claim %q is missing (issuer %s)", name, iss.Name)
			}
			return "", nil
		}
		s, ok := raw.(string)
		if !ok {
			if b, isBool := raw.(bool); isBool {
				s = fmt.Sprint(b)
			} else {
				return "", refuse(CondClaims, "claim %q is not a string", name)
			}
		}
		if len(s) > maxClaimLen {
			return "", refuse(CondClaims, "claim %q is %d bytes; the limit is %d", name, len(s), maxClaimLen)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == 0x7f {
				return "", refuse(CondClaims, "claim %q has a control character", name)
			}
		}
		if required && s == "" {
			return "", refuse(CondClaims, "claim %q is empty", name)
		}
		return s, nil
	}
	r := Run{Issuer: iss.Name}
	repo, err := str(m.Repository, true)
	if err != nil {
		return Run{}, err
	}
	wf, err := str(m.Workflow, true)
	if err != nil {
		return Run{}, err
	}
	if r.Ref, err = str(m.Ref, true); err != nil {
		return Run{}, err
	}
	if r.SHA, err = str(m.SHA, true); err != nil {
		return Run{}, err
	}
	if r.Event, err = str(m.Event, true); err != nil {
		return Run{}, err
	}
	if r.Actor, err = str(m.Actor, false); err != nil {
		return Run{}, err
	}
	r.Actor = strings.ToLower(r.Actor)
	if m.Protected != "" {
		v, err := str(m.Protected, false)
		if err != nil {
			return Run{}, err
		}
		r.Protected = v == m.ProtectedValue
	}
	if m.RefType != "" && !strings.HasPrefix(r.Ref, "refs/") {
		rt, err := str(m.RefType, true)
		if err != nil {
			return Run{}, err
		}
		switch rt {
		case "branch":
			r.Ref = "refs/heads/" + r.Ref
		case "tag":
			r.Ref = "refs/tags/" + r.Ref
		default:
			return Run{}, refuse(CondClaims, "claim %q is %q; expected branch or tag", m.RefType, rt)
		}
	}
	if err := policy.ValidateRefPattern(r.Ref); err != nil || strings.Contains(r.Ref, "*") {
		return Run{}, refuse(CondClaims, "claim %q: %q is not a full ref name", m.Ref, r.Ref)
	}
	if !isHex(r.SHA) || (len(r.SHA) != 40 && len(r.SHA) != 64) {
		return Run{}, refuse(CondClaims, "claim %q: %q is not a commit id (40 or 64 hex digits)", m.SHA, r.SHA)
	}
	r.SHA = strings.ToLower(r.SHA)
	if policy.ValidateName(r.Event) != nil {
		return Run{}, refuse(CondClaims, "claim %q: %q is not an event name", m.Event, r.Event)
	}
	// The workflow is the last path segment of its claim, before any @ref, without leading dots
	// (octo/infra/.github/workflows/deploy.yml@refs/heads/main is deploy.yml; GitLab's
	// gitlab.com/acme/infra//.gitlab-ci.yml@refs/heads/main is gitlab-ci.yml).
	if i := strings.Index(wf, "@"); i >= 0 {
		wf = wf[:i]
	}
	wf = strings.TrimLeft(wf[strings.LastIndex(wf, "/")+1:], ".")
	r.Pipeline = strings.ToLower(strings.Trim(repo, "/") + "/" + wf)
	if err := policy.ValidateResourceName(r.Pipeline); err != nil || strings.Count(r.Pipeline, "/") < 1 {
		return Run{}, refuse(CondClaims, "claims %q and %q do not make a pipeline name <repository>/<workflow>: %q", m.Repository, m.Workflow, r.Pipeline)
	}
	r.Subject = policy.PipelineSubject(iss.Name, r.Pipeline)
	if err := policy.ValidateSubject(r.Subject); err != nil {
		return Run{}, refuse(CondClaims, "%v", err)
	}
	if r.Actor != "" && (policy.ValidateSubject(r.Actor) != nil || policy.SubjectKind(r.Actor) != policy.KindUser) {
		// An actor that is not a valid user name is kept out of trigger checks.
		r.Actor = ""
	}
	return r, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}
