package policy

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// DetectionEvent is one ledger entry as detection rules see it: the CEL variable `event`
// (package detect fills it from the entry's canonical JSON, and calls it detect.Event). Field
// names in CEL are the snake_case names of DetectionEventFields.
type DetectionEvent struct {
	Seq        int64
	Time       time.Time
	Code       string
	ClassUID   int
	ActivityID int
	SeverityID int
	Failed     bool
	Actor      string
	User       string
	Message    string
	Resources  []string
	Privileges []string
	SrcIP      string
	DstHost    string
	DstIP      string
	DstPort    int
	BytesOut   int64
	BytesIn    int64
	// Count is how many occurrences the entry stands for: the OCSF count of a summary of
	// aggregated refusals (audit/refusals), else 1.
	Count int64
	// Details are the entry's "unmapped" fields: strings, float64 numbers, bools, lists and
	// maps, as decoded from JSON.
	Details map[string]any
}

// FieldKind says what a detection event field holds, for group_by, sum and distinct.
type FieldKind int

// Kinds of event fields.
const (
	FieldString FieldKind = iota
	FieldInt
	FieldBool
	FieldTime
	FieldStrings
	FieldDetails
)

// DetectionEventField describes one field of `event`.
type DetectionEventField struct {
	Name string
	Kind FieldKind
	// Get returns the field's value as CEL sees it.
	Get func(*DetectionEvent) ref.Val
}

// detectionEventType is the CEL object type of `event`.
const detectionEventType = "rampart.detect.Event"

// DetectionEventFields are the fields of `event`, in the order docs/detection.md lists them.
var DetectionEventFields = []DetectionEventField{
	{"seq", FieldInt, func(e *DetectionEvent) ref.Val { return types.Int(e.Seq) }},
	{"time", FieldTime, func(e *DetectionEvent) ref.Val { return types.Timestamp{Time: e.Time} }},
	{"code", FieldString, func(e *DetectionEvent) ref.Val { return types.String(e.Code) }},
	{"class_uid", FieldInt, func(e *DetectionEvent) ref.Val { return types.Int(e.ClassUID) }},
	{"activity_id", FieldInt, func(e *DetectionEvent) ref.Val { return types.Int(e.ActivityID) }},
	{"severity_id", FieldInt, func(e *DetectionEvent) ref.Val { return types.Int(e.SeverityID) }},
	{"failed", FieldBool, func(e *DetectionEvent) ref.Val { return types.Bool(e.Failed) }},
	{"actor", FieldString, func(e *DetectionEvent) ref.Val { return types.String(e.Actor) }},
	{"user", FieldString, func(e *DetectionEvent) ref.Val { return types.String(e.User) }},
	{"message", FieldString, func(e *DetectionEvent) ref.Val { return types.String(e.Message) }},
	{"resources", FieldStrings, func(e *DetectionEvent) ref.Val {
		return types.NewStringList(types.DefaultTypeAdapter, nonNil(e.Resources))
	}},
	{"privileges", FieldStrings, func(e *DetectionEvent) ref.Val {
		return types.NewStringList(types.DefaultTypeAdapter, nonNil(e.Privileges))
	}},
	{"src_ip", FieldString, func(e *DetectionEvent) ref.Val { return types.String(e.SrcIP) }},
	{"dst_host", FieldString, func(e *DetectionEvent) ref.Val { return types.String(e.DstHost) }},
	{"dst_ip", FieldString, func(e *DetectionEvent) ref.Val { return types.String(e.DstIP) }},
	{"dst_port", FieldInt, func(e *DetectionEvent) ref.Val { return types.Int(e.DstPort) }},
	{"bytes_out", FieldInt, func(e *DetectionEvent) ref.Val { return types.Int(e.BytesOut) }},
	{"bytes_in", FieldInt, func(e *DetectionEvent) ref.Val { return types.Int(e.BytesIn) }},
	{"count", FieldInt, func(e *DetectionEvent) ref.Val { return types.Int(e.Count) }},
	{"details", FieldDetails, func(e *DetectionEvent) ref.Val {
		d := e.Details
		if d == nil {
			d = map[string]any{}
		}
		return types.NewStringInterfaceMap(types.DefaultTypeAdapter, d)
	}},
}

var eventFieldIndex = func() map[string]*DetectionEventField {
	m := map[string]*DetectionEventField{}
	for i := range DetectionEventFields {
		m[DetectionEventFields[i].Name] = &DetectionEventFields[i]
	}
	return m
}()

// LookupDetectionField returns the event field called name, or nil.
func LookupDetectionField(name string) *DetectionEventField { return eventFieldIndex[name] }

func (k FieldKind) celType() *types.Type {
	switch k {
	case FieldString:
		return types.StringType
	case FieldInt:
		return types.IntType
	case FieldBool:
		return types.BoolType
	case FieldTime:
		return types.TimestampType
	case FieldStrings:
		return types.NewListType(types.StringType)
	default:
		return types.NewMapType(types.StringType, types.DynType)
	}
}

// eventProvider declares `event`'s object type on top of CEL's standard registry. Field reads
// go straight to the Go struct (no reflection, no conversion of unread fields).
type eventProvider struct {
	*types.Registry
	fields map[string]*types.FieldType
	names  []string
}

func newEventProvider() (*eventProvider, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	if len(DetectionEventFields) != eventFieldCount {
		return nil, fmt.Errorf("eventFieldCount is %d, but there are %d event fields", eventFieldCount, len(DetectionEventFields))
	}
	p := &eventProvider{Registry: reg, fields: map[string]*types.FieldType{}}
	for i := range DetectionEventFields {
		f := &DetectionEventFields[i]
		p.names = append(p.names, f.Name)
		p.fields[f.Name] = &types.FieldType{
			Type:  f.Kind.celType(),
			IsSet: func(obj any) bool { _, ok := obj.(*EventActivation); return ok },
			GetFrom: func(obj any) (any, error) {
				a, ok := obj.(*EventActivation)
				if !ok || a.Event == nil {
					return nil, fmt.Errorf("event is %T, not a detection event", obj)
				}
				if v := a.cache[i]; v != nil {
					return v, nil
				}
				v := f.Get(a.Event)
				a.cache[i] = v
				return v, nil
			},
		}
	}
	return p, nil
}

func (p *eventProvider) FindStructType(name string) (*types.Type, bool) {
	if name == detectionEventType {
		return types.NewTypeTypeWithParam(types.NewObjectType(detectionEventType)), true
	}
	return p.Registry.FindStructType(name)
}

func (p *eventProvider) FindStructFieldNames(name string) ([]string, bool) {
	if name == detectionEventType {
		return p.names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p *eventProvider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if name == detectionEventType {
		ft, ok := p.fields[field]
		return ft, ok
	}
	return p.Registry.FindStructFieldType(name, field)
}

var (
	detectEnvOnce sync.Once
	detectEnv     *cel.Env
	detectEnvErr  error
)

func detectionEnv() (*cel.Env, error) {
	detectEnvOnce.Do(func() {
		var prov *eventProvider
		prov, detectEnvErr = newEventProvider()
		if detectEnvErr != nil {
			return
		}
		detectEnv, detectEnvErr = cel.NewEnv(
			cel.CustomTypeProvider(prov),
			cel.Variable("event", types.NewObjectType(detectionEventType)),
		)
	})
	return detectEnv, detectEnvErr
}

// EventActivation binds `event` for rules' evaluation. One is reused across events and rules
// (Reset it for each event): field values are converted for CEL once per event, not once per
// rule, and nothing is allocated per evaluation.
type EventActivation struct {
	Event *DetectionEvent
	cache [eventFieldCount]ref.Val
}

// eventFieldCount is len(DetectionEventFields).
const eventFieldCount = 20

// Reset binds ev (which must not change until the next Reset) and forgets the values
// converted for the previous event.
func (a *EventActivation) Reset(ev *DetectionEvent) {
	a.Event = ev
	a.cache = [eventFieldCount]ref.Val{}
}

// ResolveName implements interpreter.Activation.
func (a *EventActivation) ResolveName(name string) (any, bool) {
	if name == "event" {
		return a, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *EventActivation) Parent() interpreter.Activation { return nil }

// detectionCostLimit bounds one condition's evaluation whatever the event holds.
const detectionCostLimit = 100_000

// Caps on an event's values that the engine guarantees (package detect cuts what is longer);
// the static cost estimate of a condition relies on them.
const (
	DetectionMaxFieldBytes = 4096
	DetectionMaxListItems  = 256
	DetectionMaxMapKeys    = 128
)

// eventSizes tells CEL's cost estimator how large event fields can be, so a condition whose
// worst case is bounded below the cost limit runs without a runtime cost tracker (the tracker
// costs more than the evaluation of a simple condition).
type eventSizes struct{}

func (eventSizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	p := n.Path()
	if len(p) < 2 || p[0] != "event" {
		return nil
	}
	max := uint64(0)
	switch {
	case len(p) == 2 && (p[1] == "resources" || p[1] == "privileges"):
		max = DetectionMaxListItems
	case len(p) == 2 && p[1] == "details":
		max = DetectionMaxMapKeys
	case len(p) == 2 || (len(p) == 3 && p[2] == "@items"):
		max = DetectionMaxFieldBytes
	case len(p) == 3 && p[1] == "details":
		// A details value is a string, a list or a map, each within the caps.
		max = DetectionMaxFieldBytes
	default:
		return nil
	}
	return &cost.SizeEstimate{Min: 0, Max: max}
}

func (eventSizes) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

// detectionProgram is one compiled condition and the event codes it is pinned to.
type detectionProgram struct {
	expr  string
	prg   cel.Program
	codes []string // nil: any code
}

func compileDetection(expr string) (*detectionProgram, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("the condition is empty; write a CEL expression over event, e.g. event.code == \"weights.read\"")
	}
	if len(expr) > maxExpressionLen {
		return nil, fmt.Errorf("expression is %d characters; the limit is %d", len(expr), maxExpressionLen)
	}
	env, err := detectionEnv()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	checked, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("CEL: %s", strings.ReplaceAll(iss.Err().Error(), "\n", " "))
	}
	if checked.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("CEL expression must be true or false, but it gives %s", checked.OutputType())
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if est, err := env.EstimateCost(checked, eventSizes{}); err != nil || est.Max > detectionCostLimit {
		// The worst case is unknown or above the limit: track the cost as it runs.
		opts = append(opts, cel.CostLimit(detectionCostLimit))
	}
	prg, err := env.Program(checked, opts...)
	if err != nil {
		return nil, fmt.Errorf("CEL: %w", err)
	}
	return &detectionProgram{expr: expr, prg: prg, codes: pinnedCodes(checked.NativeRep().Expr())}, nil
}

// eval runs the program. A non-bool result or an evaluation error (cost limit, a missing
// details key) is false with the error: a rule that cannot be evaluated does not match.
func (d *detectionProgram) eval(a *EventActivation) (bool, error) {
	out, _, err := d.prg.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	return ok && bool(b), nil
}

// pinnedCodes returns the event codes an expression can only be true for, from a top-level
// conjunction holding event.code == "x" or event.code in ["x", "y"] (or a disjunction of
// such); nil when the expression does not pin the code.
func pinnedCodes(e ast.Expr) []string {
	if e.Kind() != ast.CallKind {
		return nil
	}
	c := e.AsCall()
	args := c.Args()
	switch c.FunctionName() {
	case "_&&_":
		var best []string
		for _, a := range args {
			if codes := pinnedCodes(a); codes != nil && (best == nil || len(codes) < len(best)) {
				best = codes
			}
		}
		return best
	case "_||_":
		var all []string
		for _, a := range args {
			codes := pinnedCodes(a)
			if codes == nil {
				return nil
			}
			all = append(all, codes...)
		}
		return uniqueSorted(all)
	case "_==_":
		if len(args) != 2 {
			return nil
		}
		if isEventCode(args[0]) {
			if s, ok := stringLiteral(args[1]); ok {
				return []string{s}
			}
		}
		if isEventCode(args[1]) {
			if s, ok := stringLiteral(args[0]); ok {
				return []string{s}
			}
		}
	case "@in":
		if len(args) != 2 || !isEventCode(args[0]) || args[1].Kind() != ast.ListKind {
			return nil
		}
		var out []string
		for _, el := range args[1].AsList().Elements() {
			s, ok := stringLiteral(el)
			if !ok {
				return nil
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			return nil
		}
		return uniqueSorted(out)
	}
	return nil
}

func isEventCode(e ast.Expr) bool {
	if e.Kind() != ast.SelectKind {
		return false
	}
	s := e.AsSelect()
	if s.IsTestOnly() || s.FieldName() != "code" {
		return false
	}
	op := s.Operand()
	return op.Kind() == ast.IdentKind && op.AsIdent() == "event"
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

func uniqueSorted(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
