package sigma

import (
	"testing"

	"cel.dev/cel-go/cel"
)

// testEvent is the subset of the detection event the tests set.
type testEvent struct {
	Code, Actor, User, Message, SrcIP, DstHost string
	DstPort                                    int64
	BytesOut                                   int64
	Failed                                     bool
	Resources                                  []string
	Details                                    map[string]any
}

var testEnv = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(err)
	}
	return env
}()

// compile checks cond as the policy loader would, and returns a matcher.
func compile(t testing.TB, cond string) func(testEvent) bool {
	t.Helper()
	ast, iss := testEnv.Compile(cond)
	if iss.Err() != nil {
		t.Fatalf("condition does not compile: %v\n%s", iss.Err(), cond)
	}
	prg, err := testEnv.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		t.Fatal(err)
	}
	return func(e testEvent) bool {
		res := e.Resources
		if res == nil {
			res = []string{}
		}
		d := e.Details
		if d == nil {
			d = map[string]any{}
		}
		out, _, err := prg.Eval(map[string]any{"event": map[string]any{
			"code": e.Code, "actor": e.Actor, "user": e.User, "message": e.Message, "src_ip": e.SrcIP,
			"dst_host": e.DstHost, "dst_port": e.DstPort, "bytes_out": e.BytesOut, "failed": e.Failed,
			"resources": res, "privileges": []string{}, "details": d, "dst_ip": "", "bytes_in": int64(0),
			"seq": int64(0), "class_uid": int64(0), "activity_id": int64(0), "severity_id": int64(0),
		}})
		if err != nil {
			t.Fatalf("evaluation failed: %v\n%s", err, cond)
		}
		b, ok := out.Value().(bool)
		return ok && b
	}
}
