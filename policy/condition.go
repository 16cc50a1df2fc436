package policy

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
)

// RequestFacts is what a Condition can see of an access request. In CEL each field is a variable
// under "request.", e.g. request.duration <= duration('4h') or
// 'researchers' in request.requester_groups.
type RequestFacts struct {
	Requester       string
	Beneficiary     string
	Role            string
	Reason          string
	Duration        time.Duration
	BreakGlass      bool
	Renewal         bool
	Resources       []string
	RequesterGroups []string
	// BeneficiaryGroups are the beneficiary's groups (for a machine, its own).
	BeneficiaryGroups []string
	// Sensitivity is the highest tier among Resources.
	Sensitivity Sensitivity
}

// Limits that keep a condition's cost bounded whatever its author wrote.
const (
	maxExpressionLen = 4096
	celCostLimit     = 100_000
)

type celProgram = cel.Program

var (
	celEnvOnce sync.Once
	celEnv     *cel.Env
	celEnvErr  error
)

func conditionEnv() (*cel.Env, error) {
	celEnvOnce.Do(func() {
		celEnv, celEnvErr = cel.NewEnv(
			cel.Variable("request.requester", cel.StringType),
			cel.Variable("request.beneficiary", cel.StringType),
			cel.Variable("request.role", cel.StringType),
			cel.Variable("request.reason", cel.StringType),
			cel.Variable("request.duration", cel.DurationType),
			cel.Variable("request.break_glass", cel.BoolType),
			cel.Variable("request.renewal", cel.BoolType),
			cel.Variable("request.resources", cel.ListType(cel.StringType)),
			cel.Variable("request.requester_groups", cel.ListType(cel.StringType)),
			cel.Variable("request.beneficiary_groups", cel.ListType(cel.StringType)),
			cel.Variable("request.sensitivity", cel.StringType),
		)
	})
	return celEnv, celEnvErr
}

// compileCondition type-checks the expression and prepares it. The expression must be boolean.
func compileCondition(expr string) (cel.Program, error) {
	if len(expr) > maxExpressionLen {
		return nil, fmt.Errorf("expression is %d characters; the limit is %d", len(expr), maxExpressionLen)
	}
	env, err := conditionEnv()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("CEL: %s", strings.ReplaceAll(iss.Err().Error(), "\n", " "))
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("CEL expression must be true or false, but it gives %s", ast.OutputType())
	}
	return env.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
}

// ConditionError says which condition of which policy a request failed.
type ConditionError struct {
	Policy     string
	Expression string
	Message    string
	// EvalErr is set when the expression could not be evaluated; the request is refused then too.
	EvalErr error
}

func (e *ConditionError) Error() string {
	if e.EvalErr != nil {
		return fmt.Sprintf("approval policy %q: condition %q could not be evaluated (%v); the request is refused", e.Policy, e.Expression, e.EvalErr)
	}
	msg := e.Message
	if msg == "" {
		msg = "condition " + e.Expression + " is false"
	}
	return fmt.Sprintf("approval policy %q refuses this request: %s", e.Policy, msg)
}

// CheckConditions evaluates every condition of the policy against the request. Any false
// condition, or any evaluation error, refuses the request (fail closed).
func (ap *ApprovalPolicy) CheckConditions(f RequestFacts) error {
	if len(ap.Conditions) == 0 {
		return nil
	}
	vars := map[string]any{
		"request.requester":          f.Requester,
		"request.beneficiary":        f.Beneficiary,
		"request.role":               f.Role,
		"request.reason":             f.Reason,
		"request.duration":           f.Duration,
		"request.break_glass":        f.BreakGlass,
		"request.renewal":            f.Renewal,
		"request.resources":          nonNil(f.Resources),
		"request.requester_groups":   nonNil(f.RequesterGroups),
		"request.beneficiary_groups": nonNil(f.BeneficiaryGroups),
		"request.sensitivity":        f.Sensitivity.String(),
	}
	for _, c := range ap.Conditions {
		out, _, err := c.program.Eval(vars)
		if err != nil {
			return &ConditionError{Policy: ap.Name, Expression: c.Expression, EvalErr: err}
		}
		if ok, isBool := out.Value().(bool); !isBool || !ok {
			return &ConditionError{Policy: ap.Name, Expression: c.Expression, Message: c.Message}
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
