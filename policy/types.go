package policy

import (
	"fmt"
	"strings"
	"time"

	"rampart.dev/rampart/internal/strictyaml"
)

// APIVersion is the only policy document version this build understands.
const APIVersion = "rampart.dev/v1alpha1"

// Sensitivity is a resource's tier. The zero value is unset and invalid in a loaded policy.
type Sensitivity int

// Sensitivity tiers, least to most sensitive.
const (
	SensitivityUnset Sensitivity = iota
	Public
	Internal
	Sensitive
	Critical
)

var sensitivityNames = [...]string{"", "public", "internal", "sensitive", "critical"}

func (s Sensitivity) String() string {
	if s < 0 || int(s) >= len(sensitivityNames) {
		return fmt.Sprintf("sensitivity(%d)", int(s))
	}
	return sensitivityNames[s]
}

// UnmarshalText parses one of public, internal, sensitive, critical.
func (s *Sensitivity) UnmarshalText(b []byte) error {
	for i, n := range sensitivityNames {
		if i > 0 && string(b) == n {
			*s = Sensitivity(i)
			return nil
		}
	}
	return fmt.Errorf("unknown sensitivity %q; use one of public, internal, sensitive, critical", b)
}

// MarshalText returns the tier name.
func (s Sensitivity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Duration is a time.Duration written in policy files as Go duration text ("90m", "8h").
type Duration time.Duration

// UnmarshalText parses Go duration syntax and refuses negative values.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration; write it like 30s, 15m, 8h or 1h30m", b)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Group is a named set of people or workloads. Approval steps, owners and standing bindings
// refer to groups; identity providers' groups are mapped onto them.
type Group struct {
	Name        string   `yaml:"-"`
	Description string   `yaml:"description"`
	Members     []string `yaml:"members"`
	// IdPGroups are identity-provider group names or ids (the groups claim) whose members belong
	// to this group while their sign-in says so.
	IdPGroups []string `yaml:"idp_groups"`

	src source
}

// Resource is something worth protecting, named like a path (weights/frontier-7).
type Resource struct {
	Name        string      `yaml:"-"`
	Kind        string      `yaml:"kind"`
	Sensitivity Sensitivity `yaml:"sensitivity"`
	Owners      []string    `yaml:"owners"`
	Tags        []string    `yaml:"tags"`
	Description string      `yaml:"description"`
	// Aliases are other names people use for the resource, in any language ("基座模型",
	// "the base model"). Only suggestions read them: they name nothing in decisions.
	Aliases []string `yaml:"aliases"`
	// Kubernetes names the cluster objects that hold this resource: mounting them needs a grant
	// on the resource (the admission webhook asks the decision engine).
	Kubernetes *ResourceKubernetes `yaml:"kubernetes"`

	src source
}

// HasTag reports whether the resource carries tag.
func (r *Resource) HasTag(tag string) bool {
	for _, t := range r.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// Role is a set of actions on resources, named by glob patterns. A role gives nothing by itself:
// it is reached through a grant or a standing binding.
type Role struct {
	Name        string `yaml:"-"`
	Description string `yaml:"description"`
	Rules       []Rule `yaml:"rules"`
	// Kubernetes, when set, makes an active grant of the role a Kubernetes RBAC binding.
	Kubernetes *RoleKubernetes `yaml:"kubernetes"`

	src source
}

// Rule allows Actions on every catalogue resource matched by one of Resources. The action "*"
// means every action.
type Rule struct {
	Actions   []string `yaml:"actions" json:"actions"`
	Resources []string `yaml:"resources" json:"resources"`
}

// ApprovalPolicy says what a request for a role touching the resources it matches must satisfy.
type ApprovalPolicy struct {
	Name        string `yaml:"-"`
	Description string `yaml:"description"`
	Match       Match  `yaml:"match"`
	// Steps are all required (AND); each is M-of-N over its groups.
	Steps []Step `yaml:"steps"`
	// Exclude lists extra exclusions. The requester and the beneficiary (and the owners of a
	// machine party) never count as approvers whatever this says (invariant 1);
	// "requester_groups" also excludes anyone sharing a group with the requester, and
	// "beneficiary_groups" anyone sharing a group with the beneficiary (for a machine, with its
	// owners). beneficiary_groups is on whatever this says when the request's role reaches a
	// critical resource.
	Exclude []string `yaml:"exclude"`
	// RequestFor says who may file requests for someone else; without a rule, people file only
	// for themselves. Break-glass is always for oneself.
	RequestFor      []RequestFor `yaml:"request_for"`
	MaxDuration     Duration     `yaml:"max_duration"`
	DefaultDuration Duration     `yaml:"default_duration"`
	MinDuration     Duration     `yaml:"min_duration"`
	RequestTTL      Duration     `yaml:"request_ttl"`
	Renewable       bool         `yaml:"renewable"`
	RequireReason   bool         `yaml:"require_reason"`
	DenyCount       int          `yaml:"deny_count"`
	BreakGlass      BreakGlass   `yaml:"break_glass"`
	// RequireStepUp, when set, is how recent an approver's multi-factor authentication must be
	// for their approval to be accepted; zero means no step-up. Denials never need one.
	RequireStepUp Duration `yaml:"require_step_up"`
	// Conditions are CEL expressions over the request; all must be true.
	Conditions []Condition `yaml:"conditions"`

	excludeRequesterGroups   bool
	excludeBeneficiaryGroups bool
	// critical is this policy as applied to roles that reach a critical resource: the same,
	// with beneficiary_groups on (itself when that is already on). Set by compile.
	critical *ApprovalPolicy
	// stepUpFrom names the policy RequireStepUp comes from, in a combined change policy.
	stepUpFrom string
	src        source
}

// Match selects resources. Every field that is set must match (AND); within a field any listed
// value may match (OR).
type Match struct {
	Sensitivity []Sensitivity `yaml:"sensitivity"`
	Tags        []string      `yaml:"tags"`
	Resources   []string      `yaml:"resources"`
}

// Step is one required group of approvals: Count distinct eligible approvers from the members of
// From.
type Step struct {
	Name  string   `yaml:"name"`
	From  []string `yaml:"from"`
	Count int      `yaml:"count"`
}

// BreakGlass controls emergency self-activation.
type BreakGlass struct {
	Allowed     bool     `yaml:"allowed"`
	MaxDuration Duration `yaml:"max_duration"`
}

// StandingBinding gives subjects roles without a request. It may not reach a critical resource
// (invariant 3: critical access exists only as grants).
type StandingBinding struct {
	Name string `yaml:"-"`
	// Subjects are user names, workload subjects, or group:NAME.
	Subjects []string `yaml:"subjects"`
	Roles    []string `yaml:"roles"`

	src source
}

// Settings holds deployment-wide policy: who administers and who audits, and how the ledger
// is checkpointed.
type Settings struct {
	Name               string   `yaml:"-"`
	AdminGroup         string   `yaml:"admin_group"`
	AuditorGroup       string   `yaml:"auditor_group"`
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// SigningKey is the file holding the ledger's checkpoint signing key. A relative path is
	// resolved against the server's data directory.
	SigningKey string `yaml:"signing_key"`
	// EgressDeny lists destination hosts (exact or "*." suffix) the egress gateway always refuses,
	// whatever a rule or a grant says.
	EgressDeny []string `yaml:"egress_deny"`
	// Kubernetes configures enforcement in clusters (kube/rbac, the admission webhook).
	Kubernetes *KubernetesSettings `yaml:"kubernetes"`
	// Refusals bounds what refused attempts write to the ledger (invariant 11).
	Refusals Refusals `yaml:"refusals"`
	// MaxPendingRequests is how many pending requests one person (or machine) may have filed
	// at a time, renewals included (invariant 11). Default DefaultMaxPendingRequests.
	MaxPendingRequests int `yaml:"max_pending_requests"`
	// BreakGlassCooldown is how long after the after-the-fact review of someone's break-glass
	// rejected it they may not take break-glass again (invariant 11). Default
	// DefaultBreakGlassCooldown.
	BreakGlassCooldown Duration `yaml:"break_glass_cooldown"`
	// Notifications configures who is told about requests and where (no secrets: sinks name
	// where the server reads them).
	Notifications Notifications `yaml:"notifications"`
	// Detection configures detection's guardrails and alert webhook (optional).
	Detection *DetectionSettings `yaml:"detection"`

	src source
}

// source remembers where an object was declared, to report cross-reference errors there.
type source struct {
	doc    *strictyaml.Document
	prefix string
}

func (s source) errorf(field, format string, args ...any) {
	path := s.prefix
	if field != "" {
		path = s.prefix + "." + field
	}
	s.doc.Errorf(path, format, args...)
}

// has reports whether the object's document wrote field, even with an empty or zero value,
// and decoding it raised no error (which would already have been reported).
func (s source) has(field string) bool {
	if s.doc == nil {
		return false
	}
	path := s.prefix + "." + field
	if _, ok := s.doc.Pos[path]; !ok {
		return false
	}
	for _, e := range s.doc.Errs {
		if e.Path == path {
			return false
		}
	}
	return true
}

// Location returns "file:line" of the object's declaration, for messages.
func (s source) location() string {
	if s.doc == nil {
		return ""
	}
	pos := s.doc.Pos.Lookup("metadata.name")
	return fmt.Sprintf("%s:%d", s.doc.File, pos.Line)
}

// Condition is a CEL expression that must evaluate to true for a request to be accepted.
type Condition struct {
	Expression string `yaml:"expression"`
	// Message is shown to the requester when the condition is false.
	Message string `yaml:"message"`

	program celProgram
}

func joinQuoted(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
