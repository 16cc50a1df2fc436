package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"rampart.dev/rampart/internal/strictyaml"
)

// Detection rule severities, lowest first.
var detectionSeverities = []string{"informational", "low", "medium", "high", "critical"}

// Response modes of a detection rule.
const (
	ResponseOff    = "off"
	ResponseDryRun = "dry-run"
	ResponseOn     = "on"
)

// Response actions a detection rule may take (through the same services a person uses).
const (
	ActionRevokeGrant    = "revoke_grant"
	ActionRevokeSessions = "revoke_sessions"
	ActionDisableUser    = "disable_user"
	ActionCloseTunnels   = "close_tunnels"
)

var detectionActions = []string{ActionRevokeGrant, ActionRevokeSessions, ActionDisableUser, ActionCloseTunnels}

// Baseline statistics.
const (
	BaselineCount = "count"
	BaselineSum   = "sum"
)

// Defaults and bounds of detection rules.
const (
	// DefaultDetectionDedup is how long a rule with no window stays quiet for a key after it
	// fired for it.
	DefaultDetectionDedup = time.Hour
	// MaxSequenceSteps bounds a sequence rule.
	MaxSequenceSteps = 10
	// MaxGroupBy bounds a rule's group_by.
	MaxGroupBy = 5
	// MaxDetectionWindow bounds windows, sequences' within and baselines' learning (a window is
	// memory).
	MaxDetectionWindow = 90 * 24 * time.Hour
	// DefaultMaxActionsPerHour is Settings.detection.max_actions_per_hour when unset.
	DefaultMaxActionsPerHour = 10
)

// DetectionRule is a rule over the ledger's events (kind DetectionRule, docs/detection.md): a
// CEL condition over `event`, optionally with state (at most one of Threshold, Sequence,
// Baseline), grouped by event fields.
type DetectionRule struct {
	Name        string   `yaml:"-"`
	Description string   `yaml:"description"`
	Severity    string   `yaml:"severity"`
	Mitre       []string `yaml:"mitre"`
	Condition   string   `yaml:"condition"`
	// GroupBy names event fields (or details.<name>) whose values make the key of state and
	// deduplication.
	GroupBy   []string            `yaml:"group_by"`
	Threshold *DetectionThreshold `yaml:"threshold"`
	Sequence  *DetectionSequence  `yaml:"sequence"`
	Baseline  *DetectionBaseline  `yaml:"baseline"`
	// Dedup is how long the rule stays quiet for a key after firing for it (default: the
	// window, else DefaultDetectionDedup; 0s when written means never quiet).
	Dedup    Duration          `yaml:"dedup"`
	Enabled  bool              `yaml:"enabled"`
	Response DetectionResponse `yaml:"response"`

	// Digest identifies the rule's shape (everything but description, severity, mitre and
	// response): state saved under one digest is not restored under another.
	Digest string `yaml:"-"`

	cond  *detectionProgram
	steps []*detectionProgram
	codes []string
	src   source
}

// DetectionThreshold fires when, within Window, a key has Count matching events, or the Sum of
// a field over them is above Over, or Distinct values of a field number at least Count.
type DetectionThreshold struct {
	Count    int      `yaml:"count"`
	Sum      string   `yaml:"sum"`
	Over     int64    `yaml:"over"`
	Distinct string   `yaml:"distinct"`
	Window   Duration `yaml:"window"`
}

// DetectionSequence fires when one key's events match Steps in order within Within.
type DetectionSequence struct {
	Within Duration `yaml:"within"`
	Steps  []string `yaml:"steps"`
	// StepGroupBy, instead of the rule's group_by, gives each step its own fields making the
	// key, so that steps naming the same party in different fields join: [[user], [actor]]
	// joins user.disable (the disabled person is its user) to what that person then did as
	// actor. One list per step, all of the same length.
	StepGroupBy [][]string `yaml:"step_group_by"`
}

// GroupByOf returns the fields making the key of step i of a sequence rule (of the rule itself
// for other kinds, or when the sequence has no step_group_by).
func (r *DetectionRule) GroupByOf(i int) []string {
	if s := r.Sequence; s != nil && len(s.StepGroupBy) > 0 {
		return s.StepGroupBy[i]
	}
	return r.GroupBy
}

// DetectionBaseline fires when a key's statistic in the current Bucket exceeds Factor × the mean
// of its past buckets (empty ones count as zero) and is at least Min. A key never seen before
// has a mean of zero, so a huge Factor with Min 1 means "first seen". Within Learning of the
// first event the rule matched, a key with no past bucket does not fire (it is being learnt),
// and other firings are marked as learning: reported, never acted on.
type DetectionBaseline struct {
	Stat     string   `yaml:"stat"`
	Field    string   `yaml:"field"`
	Bucket   Duration `yaml:"bucket"`
	Factor   float64  `yaml:"factor"`
	Min      float64  `yaml:"min"`
	Learning Duration `yaml:"learning"`
}

// DetectionResponse is what a rule does when it fires, beyond the alert.
type DetectionResponse struct {
	Mode    string   `yaml:"mode"`
	Actions []string `yaml:"actions"`
}

// DetectionSettings are Settings.detection.
type DetectionSettings struct {
	// MaxActionsPerHour bounds automatic response actions across all rules (default
	// DefaultMaxActionsPerHour).
	MaxActionsPerHour int `yaml:"max_actions_per_hour"`
	// Webhook receives every alert, signed with HMAC-SHA256 under the key in SecretFile.
	Webhook *DetectionWebhook `yaml:"webhook"`
}

// DetectionWebhook is the signed webhook alerts are posted to.
type DetectionWebhook struct {
	URL        string `yaml:"url"`
	SecretFile string `yaml:"secret_file"`
}

// Codes returns the event codes the rule can match (sorted), or nil when any code can: the
// engine uses it to skip rules without evaluating them.
func (r *DetectionRule) Codes() []string { return r.codes }

// Stateless reports whether the rule fires on a single event.
func (r *DetectionRule) Stateless() bool {
	return r.Threshold == nil && r.Sequence == nil && r.Baseline == nil
}

// Match evaluates the rule's condition against a.Event. An evaluation error (cost limit, a
// missing details key) is returned with false: a rule that cannot be evaluated does not match.
func (r *DetectionRule) Match(a *EventActivation) (bool, error) {
	if r.cond == nil {
		return true, nil
	}
	return r.cond.eval(a)
}

// MatchStep evaluates step i of a sequence rule against a.Event.
func (r *DetectionRule) MatchStep(i int, a *EventActivation) (bool, error) {
	return r.steps[i].eval(a)
}

// Window returns the rule's time span: the threshold window, the sequence's within, or the
// baseline's bucket (0 for a stateless rule).
func (r *DetectionRule) Window() time.Duration {
	switch {
	case r.Threshold != nil:
		return r.Threshold.Window.Std()
	case r.Sequence != nil:
		return r.Sequence.Within.Std()
	case r.Baseline != nil:
		return r.Baseline.Bucket.Std()
	}
	return 0
}

// Detection returns the detection settings with defaults applied.
func (p *Policy) Detection() DetectionSettings {
	d := DetectionSettings{}
	if p.settings != nil && p.settings.Detection != nil {
		d = *p.settings.Detection
	}
	if d.MaxActionsPerHour == 0 {
		d.MaxActionsPerHour = DefaultMaxActionsPerHour
	}
	return d
}

var mitreID = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)

// detectionDetailsField matches group_by/sum/distinct names under details.
var detectionDetailsField = regexp.MustCompile(`^details\.[a-z][a-z0-9_]{0,62}$`)

// validateDetectionField checks a field name used by group_by, sum, distinct or a baseline.
func validateDetectionField(name string, numeric bool) error {
	if detectionDetailsField.MatchString(name) {
		return nil
	}
	f := LookupDetectionField(name)
	if f == nil {
		names := make([]string, 0, len(DetectionEventFields))
		for _, f := range DetectionEventFields {
			names = append(names, f.Name)
		}
		return fmt.Errorf("%q is not an event field; use one of %s, or details.<name>", name, strings.Join(names, ", "))
	}
	if numeric && f.Kind != FieldInt {
		return fmt.Errorf("%q is not a number; sum a number field such as bytes_out or bytes_in", name)
	}
	if f.Kind == FieldDetails || f.Kind == FieldTime {
		return fmt.Errorf("%q cannot be used here; name one of its keys as details.<name>", name)
	}
	return nil
}

func (p *Policy) validateDetectionRule(r *DetectionRule) {
	if !r.src.has("enabled") {
		r.Enabled = true
	}
	if r.Severity == "" {
		r.src.errorf("severity", "severity is required: one of %s", strings.Join(detectionSeverities, ", "))
	} else if !slices.Contains(detectionSeverities, r.Severity) {
		r.src.errorf("severity", "severity %q is not one of %s", r.Severity, strings.Join(detectionSeverities, ", "))
	}
	for i, m := range r.Mitre {
		if !mitreID.MatchString(m) {
			r.src.errorf(fmt.Sprintf("mitre[%d]", i), "%q is not an ATT&CK technique id; write it like T1530 or T1078.004", m)
		}
	}
	if r.Condition == "" && r.Sequence == nil {
		r.src.errorf("condition", "condition is required: a CEL expression over event, e.g. event.code == \"weights.read\"")
	}
	if r.Condition != "" {
		prg, err := compileDetection(r.Condition)
		if err != nil {
			r.src.errorf("condition", "%v", err)
		} else {
			r.cond = prg
		}
	}
	if len(r.GroupBy) > MaxGroupBy {
		r.src.errorf("group_by", "at most %d fields", MaxGroupBy)
	}
	for i, g := range r.GroupBy {
		if err := validateDetectionField(g, false); err != nil {
			r.src.errorf(fmt.Sprintf("group_by[%d]", i), "%v", err)
		}
		if slices.Index(r.GroupBy, g) != i {
			r.src.errorf(fmt.Sprintf("group_by[%d]", i), "%q is listed twice", g)
		}
	}
	kinds := 0
	for _, set := range []bool{r.Threshold != nil, r.Sequence != nil, r.Baseline != nil} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		r.src.errorf("", "a rule has at most one of threshold, sequence, baseline; split it into two rules")
	}
	window := func(field string, d Duration) {
		switch {
		case d <= 0:
			r.src.errorf(field, "%s is required and must be positive (e.g. 10m)", field[strings.LastIndex(field, ".")+1:])
		case d.Std() > MaxDetectionWindow:
			r.src.errorf(field, "%s is %s; the limit is %s", field[strings.LastIndex(field, ".")+1:], d.Std(), MaxDetectionWindow)
		}
	}
	if t := r.Threshold; t != nil {
		window("threshold.window", t.Window)
		switch {
		case t.Sum != "" && t.Distinct != "":
			r.src.errorf("threshold", "a threshold is one of count, sum (with over) or distinct (with count)")
		case t.Sum != "":
			if err := validateDetectionField(t.Sum, true); err != nil {
				r.src.errorf("threshold.sum", "%v", err)
			}
			if t.Over <= 0 {
				r.src.errorf("threshold.over", "over is required with sum and must be positive")
			}
			if t.Count != 0 {
				r.src.errorf("threshold.count", "count does not go with sum; the rule fires when the sum is above over")
			}
		default:
			if t.Distinct != "" {
				if err := validateDetectionField(t.Distinct, false); err != nil {
					r.src.errorf("threshold.distinct", "%v", err)
				}
			}
			if t.Over != 0 {
				r.src.errorf("threshold.over", "over goes with sum only")
			}
			if t.Count < 1 {
				r.src.errorf("threshold.count", "count is required and must be at least 1")
			}
		}
	}
	if s := r.Sequence; s != nil {
		window("sequence.within", s.Within)
		if len(s.Steps) < 2 || len(s.Steps) > MaxSequenceSteps {
			r.src.errorf("sequence.steps", "a sequence has 2 to %d steps (it has %d)", MaxSequenceSteps, len(s.Steps))
		}
		if len(s.StepGroupBy) > 0 {
			switch {
			case len(r.GroupBy) > 0:
				r.src.errorf("sequence.step_group_by", "step_group_by replaces group_by; give one of them")
			case len(s.StepGroupBy) != len(s.Steps):
				r.src.errorf("sequence.step_group_by", "step_group_by has %d lists for %d steps; give one per step", len(s.StepGroupBy), len(s.Steps))
			}
			for i, g := range s.StepGroupBy {
				if len(g) == 0 || len(g) != len(s.StepGroupBy[0]) || len(g) > MaxGroupBy {
					r.src.errorf(fmt.Sprintf("sequence.step_group_by[%d]", i), "every step's list has the same number of fields (1 to %d)", MaxGroupBy)
				}
				for j, f := range g {
					if err := validateDetectionField(f, false); err != nil {
						r.src.errorf(fmt.Sprintf("sequence.step_group_by[%d][%d]", i, j), "%v", err)
					}
				}
			}
		}
		for i, st := range s.Steps {
			prg, err := compileDetection(st)
			if err != nil {
				r.src.errorf(fmt.Sprintf("sequence.steps[%d]", i), "%v", err)
				continue
			}
			r.steps = append(r.steps, prg)
		}
	}
	if b := r.Baseline; b != nil {
		window("baseline.bucket", b.Bucket)
		if b.Learning.Std() > MaxDetectionWindow {
			r.src.errorf("baseline.learning", "learning is %s; the limit is %s", b.Learning.Std(), MaxDetectionWindow)
		}
		switch b.Stat {
		case BaselineCount, "":
			b.Stat = BaselineCount
			if b.Field != "" {
				r.src.errorf("baseline.field", "field goes with stat: sum")
			}
		case BaselineSum:
			if err := validateDetectionField(b.Field, true); err != nil {
				r.src.errorf("baseline.field", "%v", err)
			}
		default:
			r.src.errorf("baseline.stat", "stat %q is not one of count, sum", b.Stat)
		}
		if b.Factor < 1 {
			r.src.errorf("baseline.factor", "factor is required and must be at least 1 (e.g. 3: three times the usual)")
		}
		if b.Min < 0 {
			r.src.errorf("baseline.min", "min must not be negative")
		}
	}
	if r.src.has("dedup") {
		if r.Dedup.Std() > MaxDetectionWindow {
			r.src.errorf("dedup", "dedup is %s; the limit is %s", r.Dedup.Std(), MaxDetectionWindow)
		}
	} else if w := r.Window(); w > 0 {
		r.Dedup = Duration(w)
	} else {
		r.Dedup = Duration(DefaultDetectionDedup)
	}
	switch r.Response.Mode {
	case "":
		r.Response.Mode = ResponseOff
	case ResponseOff, ResponseDryRun, ResponseOn:
	default:
		r.src.errorf("response.mode", "mode %q is not one of off, dry-run, on", r.Response.Mode)
	}
	for i, a := range r.Response.Actions {
		if !slices.Contains(detectionActions, a) {
			r.src.errorf(fmt.Sprintf("response.actions[%d]", i), "action %q is not one of %s", a, strings.Join(detectionActions, ", "))
		}
	}
	if r.Response.Mode != ResponseOff && len(r.Response.Actions) == 0 {
		r.src.errorf("response.actions", "mode %s needs at least one action (%s)", r.Response.Mode, strings.Join(detectionActions, ", "))
	}
	r.codes = r.pinned()
	r.Digest = r.shapeDigest()
}

// pinned is the union of the codes the condition and the steps pin, nil if one does not.
func (r *DetectionRule) pinned() []string {
	progs := r.steps
	if r.cond != nil {
		// The condition holds for every step too: its pin bounds the rule.
		if r.cond.codes != nil {
			return r.cond.codes
		}
	}
	if len(progs) == 0 {
		return nil
	}
	var all []string
	for _, p := range progs {
		if p.codes == nil {
			return nil
		}
		all = append(all, p.codes...)
	}
	return uniqueSorted(all)
}

func (r *DetectionRule) shapeDigest() string {
	shape := struct {
		Condition string
		GroupBy   []string
		Threshold *DetectionThreshold
		Sequence  *DetectionSequence
		Baseline  *DetectionBaseline
		Dedup     Duration
	}{r.Condition, r.GroupBy, r.Threshold, r.Sequence, r.Baseline, r.Dedup}
	b, _ := json.Marshal(shape)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (p *Policy) validateDetectionSettings(s *Settings) {
	d := s.Detection
	if d == nil {
		return
	}
	if d.MaxActionsPerHour < 0 {
		s.src.errorf("detection.max_actions_per_hour", "max_actions_per_hour must not be negative")
	}
	if w := d.Webhook; w != nil {
		if !strings.HasPrefix(w.URL, "https://") && !strings.HasPrefix(w.URL, "http://") {
			s.src.errorf("detection.webhook.url", "%q is not an http(s) URL", w.URL)
		}
		if w.SecretFile == "" {
			s.src.errorf("detection.webhook.secret_file", "secret_file is required: the file holding the HMAC key alerts are signed with")
		}
	}
}

// ParseDetectionRules parses the DetectionRule documents of files on their own, for rule authors
// and CI (`rampart detect test`): documents of other kinds are skipped (`rampart policy
// validate` checks them), so rule files need no Settings. Errors are strictyaml.Errors with
// file:line:column, as Parse's. The rules are sorted by name.
func ParseDetectionRules(files []File) ([]*DetectionRule, error) {
	p := &Policy{detections: map[string]*DetectionRule{}}
	var docs []*strictyaml.Document
	var errs strictyaml.Errors
	for _, f := range files {
		if len(f.Data) > MaxFileSize {
			errs = append(errs, &strictyaml.Error{File: f.Name, Msg: fmt.Sprintf("%d bytes is over the %d byte limit for a policy file", len(f.Data), MaxFileSize)})
			continue
		}
		nodes, err := strictyaml.SplitDocuments(f.Name, f.Data)
		if err != nil {
			errs = append(errs, err.(*strictyaml.Error))
			continue
		}
		for _, n := range nodes {
			doc := &strictyaml.Document{File: f.Name}
			var h header
			doc.Decode("", n, &h)
			if len(doc.Errs) == 0 && h.Kind == "DetectionRule" {
				p.addDocument(doc, n)
			}
			docs = append(docs, doc)
		}
	}
	for _, d := range p.detections {
		p.validateDetectionRule(d)
	}
	for _, d := range docs {
		errs = append(errs, d.Errs...)
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return sortedValues(p.detections), nil
}
