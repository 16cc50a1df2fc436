package policy

import (
	"regexp"
	"strings"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// A native matcher evaluates the common shape of detection conditions — comparisons of event
// fields with constants (==, !=, in, <, <=, >, >=, startsWith, endsWith, contains, matches),
// exists over a list field, and &&, ||, ! — directly on the Go event, without CEL's interpreter.
// It is built from the type-checked AST, so it gives exactly CEL's answers for those operations
// (they cannot fail on typed fields); any other expression is evaluated by CEL. The test
// TestNativeMatchesCEL checks both on random events.

// nativeBool is a compiled boolean expression; it, when non-empty, is the value of the
// comprehension variable.
type nativeBool func(e *DetectionEvent, it string) bool

type nativeStr func(e *DetectionEvent, it string) string

type nativeInt func(e *DetectionEvent) int64

var nativeStrings = map[string]func(*DetectionEvent) string{
	"code": func(e *DetectionEvent) string { return e.Code }, "actor": func(e *DetectionEvent) string { return e.Actor },
	"user": func(e *DetectionEvent) string { return e.User }, "message": func(e *DetectionEvent) string { return e.Message },
	"src_ip": func(e *DetectionEvent) string { return e.SrcIP }, "dst_host": func(e *DetectionEvent) string { return e.DstHost },
	"dst_ip": func(e *DetectionEvent) string { return e.DstIP },
}

var nativeInts = map[string]func(*DetectionEvent) int64{
	"seq": func(e *DetectionEvent) int64 { return e.Seq }, "class_uid": func(e *DetectionEvent) int64 { return int64(e.ClassUID) },
	"activity_id": func(e *DetectionEvent) int64 { return int64(e.ActivityID) }, "severity_id": func(e *DetectionEvent) int64 { return int64(e.SeverityID) },
	"dst_port": func(e *DetectionEvent) int64 { return int64(e.DstPort) }, "bytes_out": func(e *DetectionEvent) int64 { return e.BytesOut },
	"bytes_in": func(e *DetectionEvent) int64 { return e.BytesIn },
}

var nativeLists = map[string]func(*DetectionEvent) []string{
	"resources": func(e *DetectionEvent) []string { return e.Resources }, "privileges": func(e *DetectionEvent) []string { return e.Privileges },
}

// eventField returns the name of event.<name>, or "".
func eventField(e ast.Expr) string {
	if e.Kind() != ast.SelectKind {
		return ""
	}
	s := e.AsSelect()
	if s.IsTestOnly() || s.Operand().Kind() != ast.IdentKind || s.Operand().AsIdent() != "event" {
		return ""
	}
	return s.FieldName()
}

func nativeCompile(e ast.Expr, iter string) (nativeBool, bool) {
	switch e.Kind() {
	case ast.SelectKind:
		if eventField(e) == "failed" {
			return func(ev *DetectionEvent, _ string) bool { return ev.Failed }, true
		}
		return nil, false
	case ast.LiteralKind:
		if b, ok := e.AsLiteral().(types.Bool); ok {
			v := bool(b)
			return func(*DetectionEvent, string) bool { return v }, true
		}
		return nil, false
	case ast.ComprehensionKind:
		return nativeExists(e.AsComprehension())
	case ast.CallKind:
	default:
		return nil, false
	}
	c := e.AsCall()
	args := c.Args()
	switch fn := c.FunctionName(); fn {
	case operators.LogicalAnd, operators.LogicalOr:
		l, ok1 := nativeCompile(args[0], iter)
		r, ok2 := nativeCompile(args[1], iter)
		if !ok1 || !ok2 {
			return nil, false
		}
		if fn == operators.LogicalAnd {
			return func(ev *DetectionEvent, it string) bool { return l(ev, it) && r(ev, it) }, true
		}
		return func(ev *DetectionEvent, it string) bool { return l(ev, it) || r(ev, it) }, true
	case operators.LogicalNot:
		x, ok := nativeCompile(args[0], iter)
		if !ok {
			return nil, false
		}
		return func(ev *DetectionEvent, it string) bool { return !x(ev, it) }, true
	case operators.Equals, operators.NotEquals:
		neq := fn == operators.NotEquals
		if s, lit, ok := strAndLiteral(args[0], args[1], iter); ok {
			return func(ev *DetectionEvent, it string) bool { return (s(ev, it) == lit) != neq }, true
		}
		if f, n, ok := intAndLiteral(args[0], args[1]); ok {
			return func(ev *DetectionEvent, _ string) bool { return (f(ev) == n) != neq }, true
		}
		return nil, false
	case operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		f, ok := nativeIntField(args[0])
		n, lok := intLiteral(args[1])
		if !ok || !lok {
			return nil, false
		}
		switch fn {
		case operators.Less:
			return func(ev *DetectionEvent, _ string) bool { return f(ev) < n }, true
		case operators.LessEquals:
			return func(ev *DetectionEvent, _ string) bool { return f(ev) <= n }, true
		case operators.Greater:
			return func(ev *DetectionEvent, _ string) bool { return f(ev) > n }, true
		}
		return func(ev *DetectionEvent, _ string) bool { return f(ev) >= n }, true
	case operators.In:
		if args[1].Kind() != ast.ListKind {
			return nil, false
		}
		elems := args[1].AsList().Elements()
		if s, ok := nativeString(args[0], iter); ok {
			set := map[string]struct{}{}
			for _, el := range elems {
				v, ok := stringLiteral(el)
				if !ok {
					return nil, false
				}
				set[v] = struct{}{}
			}
			return func(ev *DetectionEvent, it string) bool { _, in := set[s(ev, it)]; return in }, true
		}
		if f, ok := nativeIntField(args[0]); ok {
			set := map[int64]struct{}{}
			for _, el := range elems {
				v, ok := intLiteral(el)
				if !ok {
					return nil, false
				}
				set[v] = struct{}{}
			}
			return func(ev *DetectionEvent, _ string) bool { _, in := set[f(ev)]; return in }, true
		}
		return nil, false
	case "startsWith", "endsWith", "contains", "matches":
		if !c.IsMemberFunction() || len(args) != 1 {
			return nil, false
		}
		s, ok := nativeString(c.Target(), iter)
		lit, lok := stringLiteral(args[0])
		if !ok || !lok {
			return nil, false
		}
		switch fn {
		case "startsWith":
			return func(ev *DetectionEvent, it string) bool { return strings.HasPrefix(s(ev, it), lit) }, true
		case "endsWith":
			return func(ev *DetectionEvent, it string) bool { return strings.HasSuffix(s(ev, it), lit) }, true
		case "contains":
			return func(ev *DetectionEvent, it string) bool { return strings.Contains(s(ev, it), lit) }, true
		}
		re, err := regexp.Compile(lit)
		if err != nil {
			return nil, false
		}
		return func(ev *DetectionEvent, it string) bool { return re.MatchString(s(ev, it)) }, true
	}
	return nil, false
}

// nativeExists compiles list.exists(x, pred) over event.resources or event.privileges. The
// macro expands to a fold: accumulator false, loop while !accu, step accu || pred, result accu.
func nativeExists(c ast.ComprehensionExpr) (nativeBool, bool) {
	list, ok := nativeLists[eventField(c.IterRange())]
	if !ok || c.HasIterVar2() {
		return nil, false
	}
	init := c.AccuInit()
	if init.Kind() != ast.LiteralKind || init.AsLiteral() != types.False {
		return nil, false
	}
	res := c.Result()
	if res.Kind() != ast.IdentKind || res.AsIdent() != c.AccuVar() {
		return nil, false
	}
	step := c.LoopStep()
	if step.Kind() != ast.CallKind || step.AsCall().FunctionName() != operators.LogicalOr {
		return nil, false
	}
	sargs := step.AsCall().Args()
	if sargs[0].Kind() != ast.IdentKind || sargs[0].AsIdent() != c.AccuVar() {
		return nil, false
	}
	pred, ok := nativeCompile(sargs[1], c.IterVar())
	if !ok {
		return nil, false
	}
	return func(ev *DetectionEvent, _ string) bool {
		for _, x := range list(ev) {
			if pred(ev, x) {
				return true
			}
		}
		return false
	}, true
}

func nativeString(e ast.Expr, iter string) (nativeStr, bool) {
	if iter != "" && e.Kind() == ast.IdentKind && e.AsIdent() == iter {
		return func(_ *DetectionEvent, it string) string { return it }, true
	}
	if f, ok := nativeStrings[eventField(e)]; ok {
		return func(ev *DetectionEvent, _ string) string { return f(ev) }, true
	}
	return nil, false
}

func nativeIntField(e ast.Expr) (nativeInt, bool) {
	f, ok := nativeInts[eventField(e)]
	return f, ok
}

func intLiteral(e ast.Expr) (int64, bool) {
	if e.Kind() != ast.LiteralKind {
		return 0, false
	}
	n, ok := e.AsLiteral().(types.Int)
	return int64(n), ok
}

func strAndLiteral(a, b ast.Expr, iter string) (nativeStr, string, bool) {
	if s, ok := nativeString(a, iter); ok {
		if lit, ok := stringLiteral(b); ok {
			return s, lit, true
		}
	}
	if s, ok := nativeString(b, iter); ok {
		if lit, ok := stringLiteral(a); ok {
			return s, lit, true
		}
	}
	return nil, "", false
}

func intAndLiteral(a, b ast.Expr) (nativeInt, int64, bool) {
	if f, ok := nativeIntField(a); ok {
		if n, ok := intLiteral(b); ok {
			return f, n, true
		}
	}
	if f, ok := nativeIntField(b); ok {
		if n, ok := intLiteral(a); ok {
			return f, n, true
		}
	}
	return nil, 0, false
}
