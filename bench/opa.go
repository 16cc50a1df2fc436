package bench

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"rampart.dev/rampart/authz"
)

// CheckRego is the Rego module with the semantics of Rampart's Check (testdata/check.rego).
//
//go:embed testdata/check.rego
var CheckRego string

// CheckRegoFile is CheckRego's path relative to this package, for `opa run`.
const CheckRegoFile = "testdata/check.rego"

// OPAQuery is the rule both the in-process evaluator and the OPA server are asked about.
const OPAQuery = "data.rampart.allow"

// OPA decides queries with an OPA query prepared once over an in-memory store.
type OPA struct {
	pq rego.PreparedEvalQuery
}

// NewOPA loads data into OPA's in-memory store and prepares OPAQuery. With astStore the store
// converts the data to AST values once, at load, instead of on every read (OPA's
// --optimize-store-for-read-speed); it is the faster setting here, so the benchmark uses it.
func NewOPA(ctx context.Context, data map[string]any, astStore bool) (*OPA, error) {
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(true), inmem.OptReturnASTValuesOnRead(astStore))
	pq, err := rego.New(
		rego.Query(OPAQuery),
		rego.Module(CheckRegoFile, CheckRego),
		rego.Store(store),
		rego.StoreReadAST(astStore),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", OPAQuery, err)
	}
	return &OPA{pq: pq}, nil
}

// Allowed evaluates one query. The input is a map, the cheapest form for OPA to convert.
func (o *OPA) Allowed(ctx context.Context, q authz.Query) (bool, error) {
	rs, err := o.pq.Eval(ctx, rego.EvalInput(map[string]any{"subject": q.Subject, "action": q.Action, "resource": q.Resource}))
	if err != nil {
		return false, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return false, fmt.Errorf("%s gave %d results; want exactly one", OPAQuery, len(rs))
	}
	allowed, ok := rs[0].Expressions[0].Value.(bool)
	if !ok {
		return false, fmt.Errorf("%s is %T, not a boolean", OPAQuery, rs[0].Expressions[0].Value)
	}
	return allowed, nil
}
