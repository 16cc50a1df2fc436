package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"rampart.dev/rampart/internal/strictyaml"
)

// File is one policy file's name (for messages) and content.
type File struct {
	Name string
	Data []byte
}

// Limits on policy input. A policy repository is written by people; anything larger is a mistake
// or an attack on the loader.
const (
	MaxFileSize  = 1 << 20
	MaxFiles     = 1000
	MaxDocuments = 20000
)

// Defaults applied to approval policies that leave a field out.
const (
	DefaultMinDuration     = time.Second
	DefaultDefaultDuration = time.Hour
	DefaultRequestTTL      = 24 * time.Hour
	DefaultBreakGlassMax   = time.Hour
	DefaultCheckpointEvery = time.Second
)

// Bounds on an approval policy's require_step_up. Below MinStepUp a person cannot reliably
// step up and then approve inside the window (a browser round trip to the identity provider,
// replicas' clocks); above MaxStepUp the authentication is a day old and proves nothing fresh.
const (
	MinStepUp = time.Minute
	MaxStepUp = 24 * time.Hour
)

// ReadFS reads every *.yaml and *.yml file under fsys (skipping names that start with '.'), in
// lexical order. It is the only function here that touches a file system, and only through fsys.
func ReadFS(fsys fs.FS) ([]File, error) {
	var files []File
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return nil
		}
		if len(files) == MaxFiles {
			return fmt.Errorf("more than %d policy files; split the repository or remove stray files", MaxFiles)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > MaxFileSize {
			return fmt.Errorf("%s: %d bytes is over the %d byte limit for a policy file", p, info.Size(), MaxFileSize)
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, File{Name: p, Data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no policy files (*.yaml, *.yml) found")
	}
	return files, nil
}

// Load reads and parses a policy from fsys.
func Load(fsys fs.FS) (*Policy, error) {
	files, err := ReadFS(fsys)
	if err != nil {
		return nil, err
	}
	return Parse(files)
}

// Parse parses and validates policy files. On failure the error is a strictyaml.Errors listing
// every problem with file:line:column and field path.
func Parse(files []File) (*Policy, error) {
	p := &Policy{
		groups:    map[string]*Group{},
		resources: map[string]*Resource{},
		roles:     map[string]*Role{},
		approvals: map[string]*ApprovalPolicy{},
		bindings:  map[string]*StandingBinding{},
		egress:    map[string]*EgressPolicy{},
		workloads: map[string]*Workload{},

		repositories: map[string]*Repository{},
		ciIssuers:    map[string]*CIIssuer{},
		pipelines:    map[string]*Pipeline{},
		detections:   map[string]*DetectionRule{},
	}
	var docs []*strictyaml.Document
	var errs strictyaml.Errors
	h := sha256.New()
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	total := 0
	unread := false // a file could not be read at all: it may hold the Settings
	for _, f := range sorted {
		fmt.Fprintf(h, "%d:%s\n%d:", len(f.Name), f.Name, len(f.Data))
		h.Write(f.Data)
		if len(f.Data) > MaxFileSize {
			errs = append(errs, &strictyaml.Error{File: f.Name, Msg: fmt.Sprintf("%d bytes is over the %d byte limit for a policy file", len(f.Data), MaxFileSize)})
			continue
		}
		nodes, err := strictyaml.SplitDocuments(f.Name, f.Data)
		if err != nil {
			errs = append(errs, err.(*strictyaml.Error))
			unread = true
			continue
		}
		total += len(nodes)
		if total > MaxDocuments {
			errs = append(errs, &strictyaml.Error{File: f.Name, Msg: fmt.Sprintf("more than %d policy documents in all", MaxDocuments)})
			break
		}
		for _, n := range nodes {
			doc := &strictyaml.Document{File: f.Name}
			p.addDocument(doc, n)
			docs = append(docs, doc)
		}
	}
	p.Digest = hex.EncodeToString(h.Sum(nil))
	// Cross-references are checked only once every document is known.
	p.validate()
	for _, d := range docs {
		errs = append(errs, d.Errs...)
	}
	if p.settings == nil && !unread {
		errs = append(errs, &strictyaml.Error{File: "(policy)", Msg: "no Settings document; add one (kind: Settings) naming at least admin_group"})
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	p.compile()
	return p, nil
}

type header struct {
	APIVersion string    `yaml:"apiVersion"`
	Kind       string    `yaml:"kind"`
	Metadata   metadata  `yaml:"metadata"`
	Spec       yaml.Node `yaml:"spec"`
}

type metadata struct {
	Name string `yaml:"name"`
}

func (p *Policy) addDocument(doc *strictyaml.Document, n *yaml.Node) {
	var h header
	doc.Decode("", n, &h)
	if len(doc.Errs) > 0 {
		return
	}
	if h.APIVersion != APIVersion {
		doc.Errorf("apiVersion", "apiVersion is %q; this version of Rampart reads %q", h.APIVersion, APIVersion)
		return
	}
	name := h.Metadata.Name
	spec := &h.Spec
	if spec.Kind == 0 {
		spec = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	}
	src := source{doc: doc, prefix: "spec"}
	switch h.Kind {
	case "Group":
		declare(doc, spec, h.Kind, name, ValidateName, p.groups, &Group{Name: name, src: src})
	case "Resource":
		declare(doc, spec, h.Kind, name, ValidateResourceName, p.resources, &Resource{Name: name, src: src})
	case "Role":
		declare(doc, spec, h.Kind, name, ValidateName, p.roles, &Role{Name: name, src: src})
	case "ApprovalPolicy":
		declare(doc, spec, h.Kind, name, ValidateName, p.approvals, &ApprovalPolicy{Name: name, src: src})
	case "StandingBinding":
		declare(doc, spec, h.Kind, name, ValidateName, p.bindings, &StandingBinding{Name: name, src: src})
	case "EgressPolicy":
		declare(doc, spec, h.Kind, name, ValidateName, p.egress, &EgressPolicy{Name: name, src: src})
	case "Workload":
		declare(doc, spec, h.Kind, name, ValidateName, p.workloads, &Workload{Name: name, src: src})
	case "Repository":
		declare(doc, spec, h.Kind, name, ValidateName, p.repositories, &Repository{Name: name, src: src})
	case "CIIssuer":
		declare(doc, spec, h.Kind, name, ValidateName, p.ciIssuers, &CIIssuer{Name: name, src: src})
	case "Pipeline":
		declare(doc, spec, h.Kind, name, validatePipelineName, p.pipelines, &Pipeline{Name: name, src: src})
	case "DetectionRule":
		declare(doc, spec, h.Kind, name, ValidateName, p.detections, &DetectionRule{Name: name, src: src})
	case "Settings":
		s := &Settings{Name: name, src: src}
		doc.Decode("spec", spec, s)
		if p.settings != nil {
			doc.Errorf("kind", "a second Settings document; the first is at %s", p.settings.src.location())
			return
		}
		p.settings = s
	case "":
		doc.Errorf("kind", "document has no kind; use one of Group, Resource, Role, ApprovalPolicy, StandingBinding, EgressPolicy, Workload, Repository, CIIssuer, Pipeline, DetectionRule, Settings")
	default:
		doc.Errorf("kind", "unknown kind %q; use one of Group, Resource, Role, ApprovalPolicy, StandingBinding, EgressPolicy, Workload, Repository, CIIssuer, Pipeline, DetectionRule, Settings", h.Kind)
	}
}

// declare decodes a document's spec into obj and records it under name, unless the name is
// invalid or already taken by another object of the same kind.
func declare[T any](doc *strictyaml.Document, spec *yaml.Node, kind, name string, validate func(string) error, m map[string]*T, obj *T) {
	doc.Decode("spec", spec, obj)
	if err := validate(name); err != nil {
		doc.Errorf("metadata.name", "%v", err)
		return
	}
	if m[name] != nil {
		doc.Errorf("metadata.name", "%s %q is declared twice", kind, name)
		return
	}
	m[name] = obj
}

// validate checks every object and every reference between objects, recording errors on the
// documents where the objects were declared.
func (p *Policy) validate() {
	for _, g := range p.groups {
		for i, m := range g.Members {
			if err := ValidateSubject(m); err != nil {
				g.src.errorf(fmt.Sprintf("members[%d]", i), "%v", err)
			}
		}
	}
	for _, r := range p.resources {
		p.validateResource(r)
		p.validateResourceKubernetes(r)
	}
	p.validateProtectedUnique()
	for _, r := range p.roles {
		p.validateRole(r)
		p.validateRoleKubernetes(r)
	}
	forChanges := map[string]bool{}
	for _, r := range p.repositories {
		p.validateRepository(r)
		for _, rr := range r.Refs {
			forChanges[rr.Approval] = true
		}
		for _, pr := range r.Paths {
			forChanges[pr.Approval] = true
		}
	}
	for _, a := range p.approvals {
		p.validateApproval(a, forChanges[a.Name])
	}
	for _, b := range p.bindings {
		p.validateBinding(b)
	}
	for _, e := range p.egress {
		p.validateEgress(e)
	}
	for _, w := range p.workloads {
		p.validateWorkload(w)
	}
	for _, c := range p.ciIssuers {
		p.validateCIIssuer(c)
	}
	for _, pl := range p.pipelines {
		p.validatePipeline(pl)
	}
	for _, d := range p.detections {
		p.validateDetectionRule(d)
	}
	if s := p.settings; s != nil {
		if s.AdminGroup == "" {
			s.src.errorf("admin_group", "admin_group is required: the group whose members administer Rampart")
		} else {
			p.groupRef(s.src, "admin_group", s.AdminGroup)
		}
		if s.AuditorGroup != "" {
			p.groupRef(s.src, "auditor_group", s.AuditorGroup)
		}
		if s.CheckpointInterval == 0 {
			s.CheckpointInterval = Duration(DefaultCheckpointEvery)
		} else if s.CheckpointInterval.Std() < time.Second {
			s.src.errorf("checkpoint_interval", "checkpoint_interval must be at least 1s")
		}
		if strings.ContainsRune(s.SigningKey, 0) {
			s.src.errorf("signing_key", "signing_key contains a NUL byte")
		}
		p.validateKubernetesSettings(s)
		validateRefusals(s)
		validateLimits(s)
		p.validateNotifications(s)
		p.validateDetectionSettings(s)
		for i, h := range s.EgressDeny {
			if err := ValidateEgressHost(h); err != nil {
				s.src.errorf(fmt.Sprintf("egress_deny[%d]", i), "%v", err)
			}
		}
	}
}

func (p *Policy) groupRef(src source, field, name string) {
	if p.groups[name] == nil {
		src.errorf(field, "group %q is not declared; declare it with kind: Group%s", name, p.suggest(name, keys(p.groups)))
	}
}

func (p *Policy) validateResource(r *Resource) {
	if err := ValidateName(r.Kind); err != nil {
		r.src.errorf("kind", "kind: %v (e.g. weights, dataset, namespace)", err)
	}
	if r.Sensitivity == SensitivityUnset {
		r.src.errorf("sensitivity", "sensitivity is required: one of public, internal, sensitive, critical")
	}
	for i, o := range r.Owners {
		p.groupRef(r.src, fmt.Sprintf("owners[%d]", i), o)
	}
	for i, t := range r.Tags {
		if err := ValidateName(t); err != nil {
			r.src.errorf(fmt.Sprintf("tags[%d]", i), "tag: %v", err)
		}
	}
	validateAliases(r)
}

// Limits on Resource.aliases: enough for every name a lab uses, small enough that an alias list
// cannot swamp the suggestion index.
const (
	MaxAliases  = 32
	MaxAliasLen = 64
)

func validateAliases(r *Resource) {
	if len(r.Aliases) > MaxAliases {
		r.src.errorf("aliases", "%d aliases; at most %d are allowed: keep the names people really use", len(r.Aliases), MaxAliases)
	}
	seen := map[string]int{}
	for i, a := range r.Aliases {
		field := fmt.Sprintf("aliases[%d]", i)
		switch {
		case strings.TrimSpace(a) == "":
			r.src.errorf(field, "alias is empty; remove it or write the name people use")
		case len(a) > MaxAliasLen:
			r.src.errorf(field, "alias is %d bytes; the limit is %d", len(a), MaxAliasLen)
		case !utf8.ValidString(a) || strings.ContainsFunc(a, unicode.IsControl):
			r.src.errorf(field, "alias %q contains a control character or invalid UTF-8", a)
		default:
			if j, dup := seen[a]; dup {
				r.src.errorf(field, "alias %q is listed twice (also aliases[%d])", a, j)
			}
			seen[a] = i
		}
	}
}

func (p *Policy) validateRole(r *Role) {
	if len(r.Rules) == 0 {
		r.src.errorf("rules", "a role needs at least one rule {actions: [...], resources: [...]}")
	}
	for i, rule := range r.Rules {
		if len(rule.Actions) == 0 {
			r.src.errorf(fmt.Sprintf("rules[%d].actions", i), "list at least one action (e.g. read)")
		}
		for j, a := range rule.Actions {
			if err := ValidateAction(a); err != nil {
				r.src.errorf(fmt.Sprintf("rules[%d].actions[%d]", i, j), "%v", err)
			}
		}
		if len(rule.Resources) == 0 {
			r.src.errorf(fmt.Sprintf("rules[%d].resources", i), "list at least one resource pattern")
		}
		for j, pat := range rule.Resources {
			field := fmt.Sprintf("rules[%d].resources[%d]", i, j)
			if err := ValidatePattern(pat); err != nil {
				r.src.errorf(field, "%v", err)
				continue
			}
			if len(p.matchResources(pat)) == 0 {
				r.src.errorf(field, "pattern %q matches no declared resource; declare the resource (kind: Resource) or fix the pattern%s", pat, p.suggest(pat, keys(p.resources)))
			}
		}
	}
}

// validateApproval checks an approval policy. One that a Repository names (forChanges) may leave
// out match and max_duration: it then governs changes only and covers no resource.
func (p *Policy) validateApproval(a *ApprovalPolicy, forChanges bool) {
	m := a.Match
	changeOnly := forChanges && m.empty()
	if m.empty() && !forChanges {
		a.src.errorf("match", "match selects nothing; set at least one of sensitivity, tags, resources (or name this policy in a Repository's refs or paths, to govern changes only)")
	}
	for i, pat := range m.Resources {
		if err := ValidatePattern(pat); err != nil {
			a.src.errorf(fmt.Sprintf("match.resources[%d]", i), "%v", err)
		}
	}
	if len(a.Steps) == 0 {
		a.src.errorf("steps", "an approval policy needs at least one step {from: [group], count: N}")
	}
	for i, st := range a.Steps {
		field := fmt.Sprintf("steps[%d]", i)
		if len(st.From) == 0 {
			a.src.errorf(field+".from", "list the groups whose members may approve this step")
		}
		members, known := map[string]bool{}, true
		for j, g := range st.From {
			p.groupRef(a.src, fmt.Sprintf("%s.from[%d]", field, j), g)
			grp := p.groups[g]
			if grp == nil {
				known = false
				continue
			}
			for _, mbr := range grp.Members {
				members[mbr] = true
			}
		}
		switch {
		case st.Count < 1:
			a.src.errorf(field+".count", "count must be at least 1 (it is %d)", st.Count)
		case known && len(st.From) > 0 && st.Count > len(members):
			a.src.errorf(field+".count", "count is %d but the groups %s have only %d members in all; no request could ever be approved", st.Count, joinQuoted(st.From), len(members))
		}
	}
	p.validateParties(a)
	if a.MaxDuration == 0 && !changeOnly {
		a.src.errorf("max_duration", "max_duration is required: the longest a grant under this policy may last (e.g. 8h)")
	}
	if a.MinDuration == 0 {
		a.MinDuration = Duration(DefaultMinDuration)
	}
	if a.DefaultDuration == 0 {
		a.DefaultDuration = Duration(min(DefaultDefaultDuration, a.MaxDuration.Std()))
	}
	if a.RequestTTL == 0 {
		a.RequestTTL = Duration(DefaultRequestTTL)
	}
	if a.MaxDuration > 0 {
		if a.MinDuration > a.MaxDuration {
			a.src.errorf("min_duration", "min_duration %s is longer than max_duration %s", a.MinDuration.Std(), a.MaxDuration.Std())
		}
		if a.DefaultDuration < a.MinDuration || a.DefaultDuration > a.MaxDuration {
			a.src.errorf("default_duration", "default_duration %s must lie between min_duration %s and max_duration %s", a.DefaultDuration.Std(), a.MinDuration.Std(), a.MaxDuration.Std())
		}
	}
	if a.DenyCount == 0 {
		a.DenyCount = 1
	} else if a.DenyCount < 0 {
		a.src.errorf("deny_count", "deny_count must be at least 1")
	}
	if a.BreakGlass.Allowed {
		if a.BreakGlass.MaxDuration == 0 {
			a.BreakGlass.MaxDuration = Duration(min(DefaultBreakGlassMax, a.MaxDuration.Std()))
		}
		if a.BreakGlass.MaxDuration > a.MaxDuration {
			a.src.errorf("break_glass.max_duration", "break_glass.max_duration %s is longer than max_duration %s", a.BreakGlass.MaxDuration.Std(), a.MaxDuration.Std())
		}
	} else if a.BreakGlass.MaxDuration != 0 {
		a.src.errorf("break_glass.max_duration", "break_glass.max_duration is set but break_glass.allowed is false")
	}
	if a.RequireStepUp != 0 || a.src.has("require_step_up") {
		switch d := a.RequireStepUp.Std(); {
		case d == 0:
			a.src.errorf("require_step_up", "require_step_up must be a duration such as 10m: how recent an approver's multi-factor authentication must be; remove the field if approvals need no step-up")
		case d < MinStepUp:
			a.src.errorf("require_step_up", "require_step_up %s is shorter than %s; an approver could not reliably step up and approve inside it", FormatDuration(d), FormatDuration(MinStepUp))
		case d > MaxStepUp:
			a.src.errorf("require_step_up", "require_step_up %s is longer than %s; an authentication that old is no step-up", FormatDuration(d), FormatDuration(MaxStepUp))
		}
	}
	for i := range a.Conditions {
		c := &a.Conditions[i]
		prg, err := compileCondition(c.Expression)
		if err != nil {
			a.src.errorf(fmt.Sprintf("conditions[%d].expression", i), "%v", err)
			continue
		}
		c.program = prg
	}
}

func (p *Policy) validateBinding(b *StandingBinding) {
	if len(b.Subjects) == 0 {
		b.src.errorf("subjects", "list at least one subject (a user, k8s:<cluster>/<ns>/<sa>, service:<name> or group:<name>)")
	}
	for i, s := range b.Subjects {
		field := fmt.Sprintf("subjects[%d]", i)
		if g, ok := strings.CutPrefix(s, "group:"); ok {
			p.groupRef(b.src, field, g)
		} else if err := ValidateSubject(s); err != nil {
			b.src.errorf(field, "%v", err)
		}
	}
	if len(b.Roles) == 0 {
		b.src.errorf("roles", "list at least one role")
	}
	for i, rn := range b.Roles {
		field := fmt.Sprintf("roles[%d]", i)
		r := p.roles[rn]
		if r == nil {
			b.src.errorf(field, "role %q is not declared%s", rn, p.suggest(rn, keys(p.roles)))
			continue
		}
		for _, res := range p.roleResources(r) {
			if res.Sensitivity == Critical {
				b.src.errorf(field, "role %q reaches critical resource %q; critical access may only be granted through approved requests, never standing (invariant 3)", rn, res.Name)
				break
			}
		}
	}
}

// matchResources returns the declared resources a pattern matches, sorted by name.
func (p *Policy) matchResources(pat string) []*Resource {
	if cached, ok := p.patternCache[pat]; ok {
		return cached
	}
	if p.sortedNames == nil || len(p.sortedNames) != len(p.resources) {
		p.sortedNames = keys(p.resources)
		p.patternCache = map[string][]*Resource{}
	}
	var out []*Resource
	star := strings.IndexByte(pat, '*')
	if star < 0 {
		if r := p.resources[pat]; r != nil {
			out = []*Resource{r}
		}
	} else {
		// Only names sharing the pattern's literal prefix can match: a binary search finds them,
		// so compiling a catalogue of thousands of resources stays fast.
		prefix := pat[:star]
		i := sort.SearchStrings(p.sortedNames, prefix)
		for ; i < len(p.sortedNames) && strings.HasPrefix(p.sortedNames[i], prefix); i++ {
			if name := p.sortedNames[i]; MatchPattern(pat, name) {
				out = append(out, p.resources[name])
			}
		}
	}
	p.patternCache[pat] = out
	return out
}

// roleResources returns every declared resource any rule of the role reaches, sorted.
func (p *Policy) roleResources(r *Role) []*Resource {
	seen := map[string]*Resource{}
	for _, rule := range r.Rules {
		for _, pat := range rule.Resources {
			if ValidatePattern(pat) != nil {
				continue
			}
			for _, res := range p.matchResources(pat) {
				seen[res.Name] = res
			}
		}
	}
	out := make([]*Resource, 0, len(seen))
	for _, res := range seen {
		out = append(out, res)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// suggest returns "; did you mean X?" for the closest known name, or "".
func (p *Policy) suggest(name string, known []string) string {
	best, bestD := "", 4
	for _, k := range known {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
