package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Invariant 10, the guard is guarded: a Repository names the Git refs whose updates need
// multi-party approval and which approval policy governs which changed paths. This file holds the
// kind, its validation, and the rule that turns a change (a ref and the paths it touches) into
// the approval it needs (ChangeRequirement). Package change enforces it at the Git server and
// verifies it offline; `rampart policy explain --repository` shows it, all with the functions here
// and in change.go.

// Repository declares a Git repository whose protected refs may only move by approved changes.
type Repository struct {
	Name        string `yaml:"-"`
	Description string `yaml:"description"`
	// Refs are the protected refs (globs such as refs/heads/main, refs/heads/release/*), each
	// with its default rule: the approval policy every update of the ref needs, whatever it
	// touches.
	Refs []RefRule `yaml:"refs"`
	// Paths are path rules (globs such as policy/**, deploy/*.yaml): a change touching a path
	// also needs the strictest approval policy among the rules matching it.
	Paths []PathRule `yaml:"paths"`
	// EmailDomains are the domains whose addresses name Rampart users by their local part
	// (alice@example.com is alice): how commit authors, committers and Co-authored-by trailers
	// are recognised as people. An address in another domain names the user spelled like the
	// whole address.
	EmailDomains []string `yaml:"email_domains"`
	// GitServers are the API clients (service:NAME) whose tokens the Git server's pre-receive hook
	// uses to ask for verdicts and record landings. Nobody else may record a landing.
	GitServers []string `yaml:"git_servers"`

	src source
}

// RefRule is one protected ref pattern and its default approval policy.
type RefRule struct {
	Ref      string `yaml:"ref"`
	Approval string `yaml:"approval"`
}

// PathRule is one path pattern and the approval policy changes to it need.
type PathRule struct {
	Path     string `yaml:"path"`
	Approval string `yaml:"approval"`
}

// Limits on repository rules: written by people; anything larger is a mistake.
const (
	maxGlobLen  = 1024
	maxGlobSegs = 64
)

// ValidateRefPattern checks a protected-ref glob: a full ref name under refs/ ("refs/heads/main"),
// where a segment may contain '*' (any characters within the segment) or be exactly "**" (any
// number of segments).
func ValidateRefPattern(s string) error {
	if !strings.HasPrefix(s, "refs/") {
		return fmt.Errorf("ref pattern %q must be a full ref name starting with refs/ (e.g. refs/heads/main, refs/heads/release/*)", s)
	}
	if err := validateGlob(s, "ref pattern"); err != nil {
		return err
	}
	for _, c := range []string{"..", "@{", "\\", "?", "[", ":", "^", "~", " "} {
		if strings.Contains(s, c) {
			return fmt.Errorf("ref pattern %q contains %q, which Git refuses in ref names", s, c)
		}
	}
	return nil
}

// ValidatePathPattern checks a path glob: a path relative to the repository's root ("deploy/**",
// "policy/*.yaml"), segments separated by '/', where '*' stands for any characters within a
// segment and a segment that is exactly "**" for any number of segments.
func ValidatePathPattern(s string) error { return validateGlob(s, "path pattern") }

func validateGlob(s, what string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxGlobLen:
		return fmt.Errorf("%s is %d bytes; the limit is %d", what, len(s), maxGlobLen)
	case strings.HasPrefix(s, "/"):
		return fmt.Errorf("%s %q starts with '/'; write it relative to the repository's root", what, s)
	}
	segs := strings.Split(s, "/")
	if len(segs) > maxGlobSegs {
		return fmt.Errorf("%s %q has %d segments; the limit is %d", what, s, len(segs), maxGlobSegs)
	}
	for _, seg := range segs {
		switch {
		case seg == "":
			return fmt.Errorf("%s %q has an empty segment (a trailing or doubled '/')", what, s)
		case seg == "." || seg == "..":
			return fmt.Errorf("%s %q contains a %q segment; Git paths have none", what, s, seg)
		case seg != "**" && strings.Contains(seg, "**"):
			return fmt.Errorf("%s %q: \"**\" must be a whole segment (any number of segments); use '*' within a segment", what, s)
		}
		for i := 0; i < len(seg); i++ {
			if seg[i] < 0x20 || seg[i] == 0x7f {
				return fmt.Errorf("%s %q has a control character", what, s)
			}
		}
	}
	return nil
}

// MatchGlob reports whether path matches the glob pattern (see ValidatePathPattern; ref patterns
// match the same way): the matching of resource names (MatchPattern), '*' within a segment and
// '**' across segments, in time proportional to the product of the segment counts.
func MatchGlob(pattern, path string) bool { return MatchPattern(pattern, path) }

func (p *Policy) validateRepository(r *Repository) {
	if len(r.Refs) == 0 {
		r.src.errorf("refs", "list the protected refs, each with its default approval policy: {ref: refs/heads/main, approval: NAME}")
	}
	for i, rr := range r.Refs {
		field := fmt.Sprintf("refs[%d]", i)
		if err := ValidateRefPattern(rr.Ref); err != nil {
			r.src.errorf(field+".ref", "%v", err)
		}
		p.changeApprovalRef(r.src, field+".approval", rr.Approval)
	}
	for i, pr := range r.Paths {
		field := fmt.Sprintf("paths[%d]", i)
		if err := ValidatePathPattern(pr.Path); err != nil {
			r.src.errorf(field+".path", "%v", err)
		}
		p.changeApprovalRef(r.src, field+".approval", pr.Approval)
	}
	for i, s := range r.GitServers {
		if err := ValidateSubject(s); err != nil || SubjectKind(s) != KindService {
			r.src.errorf(fmt.Sprintf("git_servers[%d]", i), "%q: name the Git server's API client as service:NAME", s)
		}
	}
	for i, d := range r.EmailDomains {
		if err := validateDomain(d); err != nil {
			r.src.errorf(fmt.Sprintf("email_domains[%d]", i), "%v", err)
		}
	}
}

func (p *Policy) changeApprovalRef(src source, field, name string) {
	if name == "" {
		src.errorf(field, "name the approval policy (kind: ApprovalPolicy) that governs these changes")
		return
	}
	if p.approvals[name] == nil {
		src.errorf(field, "approval policy %q is not declared; declare it with kind: ApprovalPolicy%s", name, p.suggest(name, keys(p.approvals)))
	}
}

func validateDomain(d string) error {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return fmt.Errorf("email domain %q is not a domain name like example.com", d)
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !isLowerAlnum(c) && c != '.' && c != '-' {
			return fmt.Errorf("email domain %q has %s; write it in lowercase letters, digits, '.' and '-'", d, charAt(d, i))
		}
	}
	return nil
}

func (m Match) empty() bool {
	return len(m.Sensitivity) == 0 && len(m.Tags) == 0 && len(m.Resources) == 0
}

// Repositories returns every Repository, sorted by name.
func (p *Policy) Repositories() []*Repository { return sortedValues(p.repositories) }

// Repository returns a repository by name.
func (p *Policy) Repository(name string) (*Repository, bool) {
	r, ok := p.repositories[name]
	return r, ok
}

// ProtectedRef returns the first ref rule of repo matching ref, in the order declared, and
// whether there is one.
func (r *Repository) ProtectedRef(ref string) (RefRule, bool) {
	for _, rr := range r.Refs {
		if MatchGlob(rr.Ref, ref) {
			return rr, true
		}
	}
	return RefRule{}, false
}

// ErrNotProtected is wrapped by ChangeRequirement for a ref no rule of the repository protects.
var ErrNotProtected = errors.New("ref not protected")

// ChangeRequirement is the approval an update of a protected ref needs.
type ChangeRequirement struct {
	Repository string `json:"repository"`
	Ref        string `json:"ref"`
	// Rules are the approval policies that apply, each once: the ref's default rule first, then
	// for every changed path the strictest policy among the path rules matching it.
	Rules []AppliedRule `json:"rules"`
	// Policy is every rule's steps in one approval policy (AND): one person fills at most one
	// slot of it, however many rules they could count for. Its exclusions are every rule's;
	// RequireStepUp is the shortest of any rule.
	Policy *ApprovalPolicy `json:"-"`
	// StepUp is the shortest require_step_up of the rules (zero: none) and StepUpPolicy the
	// policy it comes from.
	StepUp       time.Duration `json:"-"`
	StepUpPolicy string        `json:"step_up_policy,omitempty"`
	// EmailDomains are the repository's email_domains, for recognising commit identities.
	EmailDomains []string `json:"email_domains,omitempty"`
}

// AppliedRule is one approval policy a change needs, and why.
type AppliedRule struct {
	Approval string `json:"approval"`
	// Why is "the default rule of refs/heads/*" or "paths matching deploy/**".
	Why string `json:"why"`
	// Paths are the changed paths that brought it in (at most maxRulePaths; none for the ref's
	// default rule).
	Paths []string `json:"paths,omitempty"`
}

const maxRulePaths = 20

// ChangeRequirement returns what an update of ref in repository repo that changes paths needs: the
// ref's default rule, and for every changed path the strictest approval policy among the path
// rules matching it (path rules add to the ref's rule, never relax it). An unknown repository is
// an error; a ref no rule protects is an error wrapping ErrNotProtected.
func (p *Policy) ChangeRequirement(repo, ref string, paths []string) (*ChangeRequirement, error) {
	r := p.repositories[repo]
	if r == nil {
		return nil, fmt.Errorf("repository %q is not declared in the policy (kind: Repository)%s", repo, p.suggest(repo, keys(p.repositories)))
	}
	rr, ok := r.ProtectedRef(ref)
	if !ok {
		return nil, fmt.Errorf("%w: %s of repository %q matches none of its protected refs (%s)", ErrNotProtected, ref, repo, joinQuoted(refPatterns(r)))
	}
	req := &ChangeRequirement{Repository: repo, Ref: ref, EmailDomains: r.EmailDomains}
	req.Rules = append(req.Rules, AppliedRule{Approval: rr.Approval, Why: "the default rule of " + rr.Ref})
	index := map[string]int{rr.Approval: 0}
	for _, path := range paths {
		var best *ApprovalPolicy
		var bestRule PathRule
		for _, pr := range r.Paths {
			if !MatchGlob(pr.Path, path) {
				continue
			}
			if ap := p.approvals[pr.Approval]; best == nil || Stricter(ap, best) {
				best, bestRule = ap, pr
			}
		}
		if best == nil {
			continue
		}
		i, seen := index[best.Name]
		if !seen {
			i = len(req.Rules)
			index[best.Name] = i
			req.Rules = append(req.Rules, AppliedRule{Approval: best.Name, Why: "paths matching " + bestRule.Path})
		}
		if i > 0 && len(req.Rules[i].Paths) < maxRulePaths {
			req.Rules[i].Paths = append(req.Rules[i].Paths, path)
		}
	}
	var aps []*ApprovalPolicy
	for _, ar := range req.Rules {
		aps = append(aps, p.approvals[ar.Approval])
	}
	req.Policy = combine(aps)
	req.StepUp, req.StepUpPolicy = req.Policy.RequireStepUp.Std(), req.Policy.stepUpFrom
	return req, nil
}

func refPatterns(r *Repository) []string {
	var out []string
	for _, rr := range r.Refs {
		out = append(out, rr.Ref)
	}
	return out
}

// combine makes one approval policy of several: every step of each (named policy/step), the
// exclusions of any, the shortest require_step_up, the shortest request_ttl and the smallest
// deny_count. A single policy is returned as it is.
func combine(aps []*ApprovalPolicy) *ApprovalPolicy {
	if len(aps) == 1 {
		c := *aps[0]
		c.stepUpFrom = ""
		if c.RequireStepUp > 0 {
			c.stepUpFrom = c.Name
		}
		return &c
	}
	c := &ApprovalPolicy{}
	var names []string
	for _, ap := range aps {
		names = append(names, ap.Name)
		for i, st := range ap.Steps {
			name := st.Name
			if name == "" {
				name = fmt.Sprintf("step %d", i+1)
			}
			c.Steps = append(c.Steps, Step{Name: ap.Name + "/" + name, From: st.From, Count: st.Count})
		}
		c.excludeRequesterGroups = c.excludeRequesterGroups || ap.excludeRequesterGroups
		c.excludeBeneficiaryGroups = c.excludeBeneficiaryGroups || ap.excludeBeneficiaryGroups
		if d := ap.RequireStepUp; d > 0 && (c.RequireStepUp == 0 || d < c.RequireStepUp) {
			c.RequireStepUp, c.stepUpFrom = d, ap.Name
		}
		if c.RequestTTL == 0 || (ap.RequestTTL > 0 && ap.RequestTTL < c.RequestTTL) {
			c.RequestTTL = ap.RequestTTL
		}
		if c.DenyCount == 0 || ap.DenyCount < c.DenyCount {
			c.DenyCount = ap.DenyCount
		}
	}
	c.Name = strings.Join(names, "+")
	return c
}

// ChangeRule is a ChangeRequirement as the ledger records it: enough to count approvals again
// offline (RuleTally), with the group memberships recorded beside it, without the policy files.
type ChangeRule struct {
	Repository string   `json:"repository"`
	Ref        string   `json:"ref"`
	Policies   []string `json:"policies"`
	Steps      []Step   `json:"steps"`
	// ExcludeGroups is on when any policy excludes people sharing a group with a party
	// (requester_groups or beneficiary_groups): for a change, with anyone it must be independent of.
	ExcludeGroups bool     `json:"exclude_groups"`
	StepUp        string   `json:"step_up,omitempty"`
	StepUpPolicy  string   `json:"step_up_policy,omitempty"`
	EmailDomains  []string `json:"email_domains,omitempty"`
}

// Rule returns the requirement in the form the ledger records.
func (r *ChangeRequirement) Rule() ChangeRule {
	cr := ChangeRule{Repository: r.Repository, Ref: r.Ref, Steps: append([]Step(nil), r.Policy.Steps...),
		ExcludeGroups: r.Policy.excludeRequesterGroups || r.Policy.excludeBeneficiaryGroups, StepUpPolicy: r.StepUpPolicy, EmailDomains: r.EmailDomains}
	for _, ar := range r.Rules {
		cr.Policies = append(cr.Policies, ar.Approval)
	}
	for i := range cr.Steps {
		if cr.Steps[i].Name == "" {
			cr.Steps[i].Name = fmt.Sprintf("step %d", i+1)
		}
	}
	if r.StepUp > 0 {
		cr.StepUp = FormatDuration(r.StepUp)
	}
	return cr
}

// Validate checks a recorded rule read from outside (a ledger entry in a repository's notes).
func (cr ChangeRule) Validate() error {
	if len(cr.Steps) == 0 {
		return errors.New("the rule has no steps")
	}
	if len(cr.Steps) > 64 {
		return fmt.Errorf("the rule has %d steps; no policy has that many", len(cr.Steps))
	}
	for i, st := range cr.Steps {
		if st.Count < 1 || st.Count > 64 || len(st.From) == 0 {
			return fmt.Errorf("step %d of the rule needs 1 to 64 approvals from at least one group", i+1)
		}
		for _, g := range st.From {
			if err := ValidateName(g); err != nil {
				return fmt.Errorf("step %d: group: %v", i+1, err)
			}
		}
	}
	if cr.StepUp != "" {
		if _, err := time.ParseDuration(cr.StepUp); err != nil {
			return fmt.Errorf("step_up %q is not a duration", cr.StepUp)
		}
	}
	return nil
}

// StepUpDuration is the rule's require_step_up (zero for none or a malformed one).
func (cr ChangeRule) StepUpDuration() time.Duration {
	d, _ := time.ParseDuration(cr.StepUp)
	return d
}

// Subject returns the Rampart subject a commit identity's email address names under domains:
// the local part for an address in one of them, otherwise the whole address, lowercased. The
// second result is false when the result is no valid user name (then nobody is named: an
// identity that names no user excludes no approver, see docs/change.md).
func IdentitySubject(email string, domains []string) (string, bool) {
	e := strings.ToLower(strings.TrimSpace(email))
	if local, domain, ok := strings.Cut(e, "@"); ok {
		for _, d := range domains {
			if domain == d {
				e = local
				break
			}
		}
	}
	if ValidateSubject(e) != nil || SubjectKind(e) != KindUser {
		return "", false
	}
	return e, true
}
