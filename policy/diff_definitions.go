package policy

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The definition section: every declared object added, removed or edited, field by field, as
// written (with defaults filled in). Each field has a rule (definitionRules; a test checks that
// every field of every kind has one). A field whose effect another section judges — group
// members, a role's rules, a policy's match — is neutral here, with a pointer to that section;
// the others get their verdict here: approval policy fields by what they do to that policy on
// its own (raising a count on a looser policy can still weaken a role: the approval section
// says so), settings by what they do to the deployment. A field without a rule is WEAKENED.

// fieldRule judges one changed field.
type fieldRule struct {
	// effects names the section that judges the field's effect; the change is neutral here.
	effects Section
	// judge returns the verdict and a sentence. Nil with effects unset means: any change is
	// neutral (descriptions).
	judge func(old, new flatValue) (Verdict, string)
	note  string
}

var (
	neutralField   = fieldRule{note: "documentation only"}
	higherWeakens  = fieldRule{judge: func(o, n flatValue) (Verdict, string) { return ordered(o.num < n.num, "higher is weaker") }}
	lowerWeakens   = fieldRule{judge: func(o, n flatValue) (Verdict, string) { return ordered(n.num < o.num, "lower is weaker") }}
	trueWeakens    = fieldRule{judge: func(o, n flatValue) (Verdict, string) { return ordered(n.s == "true", "on is weaker") }}
	falseWeakens   = fieldRule{judge: func(o, n flatValue) (Verdict, string) { return ordered(n.s == "false", "off is weaker") }}
	addWeakens     = fieldRule{judge: func(o, n flatValue) (Verdict, string) { return setRule(o, n, true) }}
	removeWeakens  = fieldRule{judge: func(o, n flatValue) (Verdict, string) { return setRule(o, n, false) }}
	anyWeakens     = fieldRule{judge: func(o, n flatValue) (Verdict, string) { return Weakened, "any change may weaken" }}
	judgedApproval = fieldRule{effects: SectionApproval}
	judgedAccess   = fieldRule{effects: SectionAccess}
	judgedReach    = fieldRule{effects: SectionReach}
)

func ordered(weaker bool, why string) (Verdict, string) {
	if weaker {
		return Weakened, why
	}
	return Strengthened, why
}

func setRule(o, n flatValue, addIsWeaker bool) (Verdict, string) {
	added, removed := setMinus(n.set, o.set), setMinus(o.set, n.set)
	switch {
	case len(added) > 0 && addIsWeaker:
		return Weakened, "added " + strings.Join(added, ", ")
	case len(removed) > 0 && !addIsWeaker:
		return Weakened, "removed " + strings.Join(removed, ", ")
	}
	return Strengthened, ""
}

// definitionRules: kind → YAML field path → rule.
var definitionRules = map[string]map[string]fieldRule{
	// A repository's rules are compared here (guarded change has no other section): the first
	// matching ref rule applies, so any change to refs may weaken (even an added rule, placed
	// before another); the strictest matching path rule applies, so only a removed (or changed)
	// path rule may; the email domains decide who a commit's author is; a Git server added may
	// record landings.
	"repository": {
		"description":   neutralField,
		"refs":          anyWeakens,
		"paths":         removeWeakens,
		"email_domains": anyWeakens,
		"git_servers":   addWeakens,
	},
	// CI job identity (ci.go): who may obtain a pipeline's identity is decided here (package ci
	// has no other section). An issuer's URL, audience, shape or claim mapping changed may let
	// other tokens through (the protected claim switched on lets its tokens vouch for protected
	// refs); a pipeline's events and refs added, protected_refs_only switched off, its
	// approved_changes repository changed or removed, trigger events removed, or its issuer or
	// dispatch target changed may let more runs (or someone else) in.
	"ci_issuer": {
		"description":            neutralField,
		"issuer":                 anyWeakens,
		"audience":               anyWeakens,
		"provider":               anyWeakens,
		"claims.repository":      anyWeakens,
		"claims.workflow":        anyWeakens,
		"claims.ref":             anyWeakens,
		"claims.ref_type":        anyWeakens,
		"claims.sha":             anyWeakens,
		"claims.event":           anyWeakens,
		"claims.actor":           anyWeakens,
		"claims.protected":       anyWeakens,
		"claims.protected_value": anyWeakens,
	},
	"pipeline": {
		"description":         neutralField,
		"issuer":              anyWeakens,
		"events":              addWeakens,
		"refs":                addWeakens,
		"protected_refs_only": falseWeakens,
		"approved_changes":    anyWeakens,
		"trigger_events":      removeWeakens,
		"dispatch.url":        anyWeakens,
		"dispatch.repository": anyWeakens,
		"dispatch.workflow":   anyWeakens,
		"dispatch.token_env":  anyWeakens,
	},
	// Detection rules (detection.go): what they watch is decided here (no other section judges
	// them). A rule that fires less — disabled, a condition or grouping changed, a higher
	// threshold, a shorter window, a longer dedup — weakens detection; its response acts on
	// people, so any change to it may weaken too.
	"detection_rule": {
		"description":            neutralField,
		"mitre":                  neutralField,
		"severity":               anyWeakens,
		"condition":              anyWeakens,
		"group_by":               anyWeakens,
		"threshold.count":        higherWeakens,
		"threshold.sum":          anyWeakens,
		"threshold.over":         higherWeakens,
		"threshold.distinct":     anyWeakens,
		"threshold.window":       lowerWeakens,
		"sequence.within":        lowerWeakens,
		"sequence.steps":         anyWeakens,
		"sequence.step_group_by": anyWeakens,
		"baseline.stat":          anyWeakens,
		"baseline.field":         anyWeakens,
		"baseline.bucket":        anyWeakens,
		"baseline.factor":        higherWeakens,
		"baseline.min":           higherWeakens,
		"baseline.learning":      higherWeakens,
		"dedup":                  higherWeakens,
		"enabled":                falseWeakens,
		"response.mode":          anyWeakens,
		"response.actions":       anyWeakens,
	},
	"group": {
		"description": neutralField,
		"members":     judgedAccess,
		"idp_groups":  judgedAccess,
	},
	"resource": {
		"kind":                                neutralField,
		"description":                         neutralField,
		"aliases":                             {note: "other names for suggestions to find the resource by; decides nothing"},
		"owners":                              {note: "shown to people looking for access (suggestions); decides nothing"},
		"sensitivity":                         judgedReach,
		"tags":                                judgedApproval,
		"kubernetes.namespace":                judgedReach,
		"kubernetes.persistent_volume_claims": judgedReach,
		"kubernetes.secrets":                  judgedReach,
		"kubernetes.csi_drivers":              judgedReach,
		"kubernetes.volume_snapshots":         judgedReach,
	},
	"role": {
		"description":             neutralField,
		"rules":                   judgedReach,
		"kubernetes.cluster_role": judgedReach,
		"kubernetes.rules":        judgedReach,
		"kubernetes.namespaces":   judgedReach,
	},
	"approval_policy": {
		"description":              neutralField,
		"match.sensitivity":        judgedApproval,
		"match.tags":               judgedApproval,
		"match.resources":          judgedApproval,
		"steps":                    {}, // judged by compareApprovalPolicy
		"exclude":                  {judge: excludeRule},
		"request_for":              {}, // judged by compareApprovalPolicy
		"max_duration":             higherWeakens,
		"default_duration":         higherWeakens,
		"min_duration":             {judge: func(o, n flatValue) (Verdict, string) { return minDurationRule(o, n) }},
		"request_ttl":              higherWeakens,
		"renewable":                trueWeakens,
		"require_reason":           falseWeakens,
		"deny_count":               higherWeakens,
		"break_glass.allowed":      trueWeakens,
		"break_glass.max_duration": higherWeakens,
		"require_step_up":          {}, // judged by compareApprovalPolicy
		"conditions":               {}, // judged by compareApprovalPolicy
	},
	"standing_binding": {
		"subjects": judgedAccess,
		"roles":    judgedAccess,
	},
	"egress_policy": {
		"description":   neutralField,
		"subjects":      judgedAccess,
		"mode":          judgedAccess,
		"allow":         judgedAccess,
		"budget.bytes":  judgedAccess,
		"budget.window": judgedAccess,
	},
	"workload": {
		"description": neutralField,
		"subjects":    judgedApproval,
		"owners":      judgedApproval,
	},
	"settings": {
		"admin_group":                        judgedAccess,
		"auditor_group":                      judgedAccess,
		"checkpoint_interval":                {note: "checkpoints are signed at least every second whatever it says"},
		"signing_key":                        anyWeakens,
		"egress_deny":                        removeWeakens,
		"kubernetes.cluster":                 anyWeakens,
		"kubernetes.user_prefix":             anyWeakens,
		"kubernetes.protected_cluster_roles": removeWeakens,
		"kubernetes.drift": {judge: func(o, n flatValue) (Verdict, string) {
			return ordered(n.s == DriftReport, "report only is weaker than enforce")
		}},
		"kubernetes.admission.allowed_registries":   {judge: registriesRule},
		"kubernetes.admission.require_digest":       falseWeakens,
		"kubernetes.admission.runtime_class":        anyWeakens,
		"kubernetes.admission.high_risk_namespaces": removeWeakens,
		"kubernetes.admission.high_risk_labels":     removeWeakens,
		"kubernetes.admission.exempt_namespaces":    addWeakens,
		// A controller listed may deploy under a workload grant someone else requested.
		"kubernetes.admission.workload_controllers": addWeakens,
		"kubernetes.egress.dns_namespace":           anyWeakens,
		"kubernetes.egress.dns_pod_labels":          anyWeakens,
		"kubernetes.egress.gateway_namespace":       anyWeakens,
		"kubernetes.egress.gateway_pod_labels":      anyWeakens,
		"kubernetes.egress.gateway_cidrs":           anyWeakens,
		"kubernetes.egress.gateway_port":            anyWeakens,
		"refusals.window":                           lowerWeakens,
		"refusals.max_sources":                      higherWeakens,
		"refusals.risk_history":                     anyWeakens,
		"refusals.sign_in_starts":                   higherWeakens,
		"max_pending_requests":                      higherWeakens,
		"break_glass_cooldown":                      lowerWeakens,
		// Who is told, and where: a change may silence the page of a break-glass activation.
		"notifications.base_url":              anyWeakens,
		"notifications.break_glass_group":     anyWeakens,
		"notifications.sinks":                 anyWeakens,
		"notifications.remind_before":         anyWeakens,
		"notifications.request_remind_before": anyWeakens,
		// Detection's guardrail on automatic response, and where alerts go: a change may
		// silence alerts or let response act more (or less) than reviewed.
		"detection.max_actions_per_hour": anyWeakens,
		"detection.webhook.url":          anyWeakens,
		"detection.webhook.secret_file":  anyWeakens,
	},
}

// excludeRule: requester and beneficiary are always excluded, whatever exclude says.
func excludeRule(o, n flatValue) (Verdict, string) {
	strip := func(v flatValue) flatValue {
		var set []string
		for _, e := range v.set {
			if e != ExcludeRequester && e != ExcludeBeneficiary {
				set = append(set, e)
			}
		}
		return flatValue{set: set}
	}
	a, b := strip(o), strip(n)
	if sameStrings(a.set, b.set) {
		return Neutral, "the requester and the beneficiary are excluded whatever it says"
	}
	return setRule(a, b, false)
}

// minDurationRule: a longer minimum forces longer grants; a shorter one only allows shorter.
func minDurationRule(o, n flatValue) (Verdict, string) {
	if n.num > o.num {
		return Weakened, "grants may not be shorter than this"
	}
	return Neutral, "grants may be shorter"
}

// registriesRule: an empty allowed_registries allows every registry.
func registriesRule(o, n flatValue) (Verdict, string) {
	if len(n.set) == 0 {
		return Weakened, "empty: images from any registry are allowed"
	}
	if len(o.set) == 0 {
		return Strengthened, "was empty (any registry)"
	}
	return setRule(o, n, true)
}

// flatValue is one field as the rules see it.
type flatValue struct {
	s   string   // rendered
	num float64  // numbers, durations (ns), sensitivities, sizes
	set []string // lists of scalars, maps as key=value
}

// flatten maps an object's YAML fields (nested structs joined with '.') to their values.
// Lists of structs are kept whole, rendered.
func flatten(v any) map[string]flatValue {
	out := map[string]flatValue{}
	flattenInto(out, "", reflect.ValueOf(v))
	return out
}

var (
	durationType    = reflect.TypeOf(Duration(0))
	sensitivityType = reflect.TypeOf(Sensitivity(0))
)

func flattenInto(out map[string]flatValue, prefix string, v reflect.Value) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v = reflect.Zero(v.Type().Elem())
		} else {
			v = v.Elem()
		}
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		fv := v.Field(i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct || ft.Kind() == reflect.Struct {
			flattenInto(out, path, fv)
			continue
		}
		out[path] = flatOf(fv)
	}
}

func flatOf(v reflect.Value) flatValue {
	switch {
	case v.Type() == durationType:
		d := time.Duration(v.Int())
		return flatValue{s: FormatDuration(d), num: float64(d)}
	case v.Type() == sensitivityType:
		return flatValue{s: Sensitivity(v.Int()).String(), num: float64(v.Int())}
	}
	switch v.Kind() {
	case reflect.Bool:
		return flatValue{s: strconv.FormatBool(v.Bool())}
	case reflect.Int, reflect.Int64:
		return flatValue{s: strconv.FormatInt(v.Int(), 10), num: float64(v.Int())}
	case reflect.Float64:
		return flatValue{s: strconv.FormatFloat(v.Float(), 'g', -1, 64), num: v.Float()}
	case reflect.String:
		return flatValue{s: v.String()}
	case reflect.Map:
		var set []string
		for _, k := range v.MapKeys() {
			set = append(set, fmt.Sprintf("%v=%v", k.Interface(), v.MapIndex(k).Interface()))
		}
		sort.Strings(set)
		return flatValue{s: strings.Join(set, ", "), set: set}
	case reflect.Slice:
		var set []string
		for i := range v.Len() {
			e := v.Index(i)
			if e.Kind() == reflect.Struct {
				set = append(set, renderStruct(e))
			} else {
				set = append(set, fmt.Sprint(e.Interface()))
			}
		}
		return flatValue{s: strings.Join(set, "; "), set: set}
	}
	return flatValue{s: fmt.Sprint(v.Interface())}
}

// renderStruct renders a list element compactly: {field: value, …} in declaration order.
func renderStruct(v reflect.Value) string {
	flat := flatten(v.Interface())
	var parts []string
	t := v.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if fv, ok := flat[tag]; ok && fv.s != "" && fv.s != "0" && fv.s != "false" {
			parts = append(parts, tag+": "+fv.s)
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// declared returns, for one kind, each object's name and the value flattened.
func declaredObjects(p *Policy, kind string) map[string]any {
	out := map[string]any{}
	switch kind {
	case "group":
		for n, x := range p.groups {
			out[n] = *x
		}
	case "resource":
		for n, x := range p.resources {
			out[n] = *x
		}
	case "role":
		for n, x := range p.roles {
			out[n] = *x
		}
	case "approval_policy":
		for n, x := range p.approvals {
			out[n] = *x
		}
	case "standing_binding":
		for n, x := range p.bindings {
			out[n] = *x
		}
	case "egress_policy":
		for n, x := range p.egress {
			out[n] = *x
		}
	case "workload":
		for n, x := range p.workloads {
			out[n] = *x
		}
	case "repository":
		for n, x := range p.repositories {
			out[n] = *x
		}
	case "ci_issuer":
		for n, x := range p.ciIssuers {
			out[n] = *x
		}
	case "pipeline":
		for n, x := range p.pipelines {
			out[n] = *x
		}
	case "detection_rule":
		for n, x := range p.detections {
			out[n] = *x
		}
	case "settings":
		s := *p.settings
		k := p.Kubernetes()
		s.Kubernetes = &k
		out[s.Name] = s
	}
	return out
}

func (d *differ) definition(v Verdict, kind, name, field, old, new, msg string, args ...any) {
	d.add(Change{Verdict: v, Section: SectionDefinition, Kind: kind, Name: name, Field: field, Old: old, New: new, Message: fmt.Sprintf(msg, args...)})
}

func (d *differ) compareDefinitions() {
	for _, kind := range sortedSet(keysSet(definitionRules)) {
		objO, objN := declaredObjects(d.o.p, kind), declaredObjects(d.n.p, kind)
		if kind == "settings" { // exactly one each, whatever its name
			for _, v := range objO {
				objO = map[string]any{"settings": v}
			}
			for _, v := range objN {
				objN = map[string]any{"settings": v}
			}
		}
		names := keysSet(objO)
		for n := range objN {
			names[n] = true
		}
		for _, name := range sortedSet(names) {
			a, inO := objO[name]
			b, inN := objN[name]
			switch {
			case !inO && kind == "ci_issuer":
				d.definition(Weakened, kind, name, "", "", "declared", "CI issuer %s is declared: its jobs' ID tokens may be exchanged for pipeline tokens", name)
			case !inO && kind == "pipeline":
				d.definition(Weakened, kind, name, "", "", "declared", "pipeline %s is declared: its runs may obtain the identity %s", name, PipelineSubject(d.n.p.pipelines[name].Issuer, name))
			case !inN && (kind == "ci_issuer" || kind == "pipeline"):
				d.definition(Strengthened, kind, name, "", "declared", "", "%s %s is removed: no run obtains its identity any more", strings.ReplaceAll(kind, "_", " "), name)
			case !inO:
				d.definition(Neutral, kind, name, "", "", "declared", "%s %s is declared; its effects are judged under approval, access and reach", strings.ReplaceAll(kind, "_", " "), name)
			case !inN && kind == "detection_rule":
				d.definition(Weakened, kind, name, "", "declared", "", "detection rule %s is removed: what it watched goes unwatched", name)
			case !inN && kind == "repository":
				d.definition(Weakened, kind, name, "", "declared", "", "repository %s is removed: its refs no longer need approved changes", name)
			case !inN:
				d.definition(Neutral, kind, name, "", "declared", "", "%s %s is removed; its effects are judged under approval, access and reach", strings.ReplaceAll(kind, "_", " "), name)
			default:
				d.compareFields(kind, name, flatten(a), flatten(b))
				if kind == "approval_policy" {
					d.compareApprovalPolicy(d.o.p.approvals[name], d.n.p.approvals[name])
				}
			}
		}
	}
}

func (d *differ) compareFields(kind, name string, fo, fn map[string]flatValue) {
	rules := definitionRules[kind]
	paths := keysSet(fo)
	for p := range fn {
		paths[p] = true
	}
	for _, path := range sortedSet(paths) {
		o, n := fo[path], fn[path]
		if o.s == n.s {
			continue
		}
		rule, known := rules[path]
		what := fmt.Sprintf("%s %s: %s", strings.ReplaceAll(kind, "_", " "), name, path)
		if len(o.s) <= 60 && len(n.s) <= 60 {
			what += fmt.Sprintf(" (%q, was %q)", n.s, o.s)
		}
		switch {
		case !known:
			d.definition(Weakened, kind, name, path, o.s, n.s, "%s changed; the diff has no rule for this field, so it counts as weakening", what)
		case rule.effects != "":
			d.definition(Neutral, kind, name, path, o.s, n.s, "%s changed; its effect is judged under %s", what, rule.effects)
		case rule.judge != nil:
			v, why := rule.judge(o, n)
			if why != "" {
				why = " (" + why + ")"
			}
			d.definition(v, kind, name, path, o.s, n.s, "%s changed%s", what, why)
		case rule.note != "" && rule.note != neutralField.note:
			d.definition(Neutral, kind, name, path, o.s, n.s, "%s changed; %s", what, rule.note)
		case rule.note != "":
			d.definition(Neutral, kind, name, path, o.s, n.s, "%s changed (%s)", what, rule.note)
		}
		// Rules with no judge, note or effects are judged by compareApprovalPolicy.
	}
}

// compareApprovalPolicy judges the fields of one approval policy that need more than a
// comparison of values: its steps (by group name: a set of approvers that meets the new steps
// must meet the old), who may file for whom, step-up and conditions.
func (d *differ) compareApprovalPolicy(a, b *ApprovalPolicy) {
	name := a.Name
	byName := func(steps []Step) []poolStep {
		out := make([]poolStep, len(steps))
		for i, s := range steps {
			pool := map[string]bool{}
			for _, g := range s.From {
				pool[g] = true
			}
			out[i] = poolStep{count: s.Count, pool: pool}
		}
		return out
	}
	if so, sn := renderSteps(a.Steps), renderSteps(b.Steps); so != sn {
		sa, sb := byName(a.Steps), byName(b.Steps)
		switch {
		case !covers(sa, sb):
			d.definition(Weakened, "approval_policy", name, "steps", so, sn, "approval policy %s needs less approval: %d approvals in %d steps, was %d in %d, or from more groups", name, b.TotalApprovals(), len(b.Steps), a.TotalApprovals(), len(a.Steps))
		case !covers(sb, sa):
			d.definition(Strengthened, "approval_policy", name, "steps", so, sn, "approval policy %s needs more approval", name)
		default:
			d.definition(Neutral, "approval_policy", name, "steps", so, sn, "approval policy %s: the steps are written differently and need the same approvals", name)
		}
	}
	ra, rb := renderFiling(&Requirement{Matched: []*ApprovalPolicy{a}}), renderFiling(&Requirement{Matched: []*ApprovalPolicy{b}})
	if ra != rb {
		if ok, why := filingWithin(d.n, b, d.o, a, d.u.ownGrowth); !ok {
			d.definition(Weakened, "approval_policy", name, "request_for", ra, rb, "approval policy %s lets more people file for others: %s", name, why)
		} else if ok, _ := filingWithin(d.o, a, d.n, b, d.u.brokenOwn); !ok {
			d.definition(Strengthened, "approval_policy", name, "request_for", ra, rb, "approval policy %s lets fewer people file for others", name)
		} else {
			d.definition(Neutral, "approval_policy", name, "request_for", ra, rb, "approval policy %s: request_for is written differently and allows the same", name)
		}
	}
	if o, n := a.RequireStepUp.Std(), b.RequireStepUp.Std(); o != n {
		v := Strengthened
		if n == 0 || (o != 0 && n > o) {
			v = Weakened
		}
		d.definition(v, "approval_policy", name, "require_step_up", FormatDuration(o), FormatDuration(n), "approval policy %s: require_step_up %s, was %s (none is weakest, then longer)", name, stepUpText(n), stepUpText(o))
	}
	var co, cn []string
	for _, c := range a.Conditions {
		co = append(co, c.Expression)
	}
	for _, c := range b.Conditions {
		cn = append(cn, c.Expression)
	}
	if removed, added := setMinus(co, cn), setMinus(cn, co); len(removed) > 0 {
		d.definition(Weakened, "approval_policy", name, "conditions", strings.Join(co, " && "), strings.Join(cn, " && "), "approval policy %s no longer requires %s", name, quoteAll(removed))
	} else if len(added) > 0 {
		d.definition(Strengthened, "approval_policy", name, "conditions", strings.Join(co, " && "), strings.Join(cn, " && "), "approval policy %s now also requires %s", name, quoteAll(added))
	}
}

func stepUpText(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return FormatDuration(d)
}
