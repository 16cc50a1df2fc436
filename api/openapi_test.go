package api

// Tests that keep api/openapi.json true to the server.
//
// Which routes exist is established two ways, because neither is enough alone:
//
//   - http.ServeMux cannot list its patterns, so the registered routes are read from the source:
//     every mux.HandleFunc / mux.Handle call in (*Server).Handler, found with go/parser (not a
//     line regexp, so formatting, comments and line breaks do not matter). The syntax tree also
//     says whether a route is wrapped in s.authed (it needs a token) and whether it sits inside
//     an if statement (it is conditional: /v1/dev/login exists only in dev mode). A pattern that
//     is not a string literal fails the test rather than being skipped.
//   - Each pattern read from the source, and each documented path+method, is then sent to a real
//     handler built by New(Config{...}) with nil stores (Handler touches none of them) and an
//     authenticator that refuses everyone. The server's own metrics record the pattern the mux
//     matched (r.Pattern), so the test sees exactly which registered route answered, with its
//     {id} placeholders, and that authenticated routes answer 401 while the others do not.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

// oaMethods are the operation keys of an OpenAPI path item.
var oaMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func oaLoad(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(OpenAPI()))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("api/openapi.json is not valid JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("api/openapi.json has data after the JSON document")
	}
	return doc
}

func oaObj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// oaOp is one documented operation.
type oaOp struct {
	method, path string // "GET", "/v1/requests/{id}"
	op           map[string]any
}

func (o oaOp) key() string { return o.method + " " + o.path }

func oaOps(t *testing.T, doc map[string]any) []oaOp {
	t.Helper()
	var out []oaOp
	for path, item := range oaObj(doc["paths"]) {
		pi := oaObj(item)
		if pi == nil {
			t.Errorf("paths[%q] is not an object", path)
			continue
		}
		for k, v := range pi {
			if !slices.Contains(oaMethods, k) {
				if k != "parameters" && k != "summary" && k != "description" && k != "servers" && !strings.HasPrefix(k, "x-") {
					t.Errorf("paths[%q] has unknown key %q", path, k)
				}
				continue
			}
			op := oaObj(v)
			if op == nil {
				t.Errorf("%s %s is not an object", strings.ToUpper(k), path)
				continue
			}
			out = append(out, oaOp{method: strings.ToUpper(k), path: path, op: op})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

// oaResolve follows a local reference ("#/components/schemas/X").
func oaResolve(doc map[string]any, ref string) (any, bool) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	var cur any = doc
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m := oaObj(cur)
		if m == nil {
			return nil, false
		}
		next, ok := m[tok]
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// oaDeref follows $ref until it reaches an inline object.
func oaDeref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m := oaObj(v)
	for i := 0; m != nil && i < 10; i++ {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		r, ok := oaResolve(doc, ref)
		if !ok {
			t.Errorf("$ref %q does not resolve", ref)
			return nil
		}
		m = oaObj(r)
	}
	return m
}

func TestOpenAPIDocument(t *testing.T) {
	doc := oaLoad(t)
	if v := doc["openapi"]; v != "3.0.3" {
		t.Errorf("openapi = %v, want \"3.0.3\"", v)
	}
	info := oaObj(doc["info"])
	if info == nil || info["title"] == "" || info["title"] == nil || info["version"] == "" || info["version"] == nil {
		t.Errorf("info must have a title and a version: %v", doc["info"])
	}
	if len(oaObj(doc["paths"])) == 0 {
		t.Error("paths is missing or empty")
	}
	comps := oaObj(doc["components"])
	if comps == nil || len(oaObj(comps["schemas"])) == 0 {
		t.Fatal("components.schemas is missing or empty")
	}
	bearer := oaObj(oaObj(comps["securitySchemes"])["bearerAuth"])
	if bearer["type"] != "http" || bearer["scheme"] != "bearer" {
		t.Errorf("components.securitySchemes.bearerAuth = %v, want an HTTP bearer scheme", bearer)
	}
	if !strings.Contains(fmt.Sprint(bearer), identity.TokenPrefix) {
		t.Errorf("the bearer scheme should say tokens start with %s", identity.TokenPrefix)
	}
	sec, _ := doc["security"].([]any)
	if len(sec) != 1 || oaObj(sec[0])["bearerAuth"] == nil {
		t.Errorf("top-level security = %v, want [{\"bearerAuth\":[]}]", doc["security"])
	}

	// The Error schema is the envelope every handler writes through fail().
	env := oaDeref(t, doc, map[string]any{"$ref": "#/components/schemas/Error"})
	detail := oaDeref(t, doc, oaObj(env["properties"])["error"])
	if detail == nil || oaObj(detail["properties"])["code"] == nil || oaObj(detail["properties"])["message"] == nil {
		t.Errorf("schema Error must be {\"error\":{\"code\",\"message\"}}: %v", env)
	}
}

// The file is kept formatted: 2-space indent, as json.Indent writes it, with a final newline.
func TestOpenAPIFormatted(t *testing.T) {
	var compact, want bytes.Buffer
	if err := json.Compact(&compact, OpenAPI()); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&want, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	want.WriteByte('\n')
	if !bytes.Equal(OpenAPI(), want.Bytes()) {
		got, exp := strings.Split(string(OpenAPI()), "\n"), strings.Split(want.String(), "\n")
		for i := range min(len(got), len(exp)) {
			if got[i] != exp[i] {
				t.Fatalf("api/openapi.json is not formatted with a 2-space indent; line %d is %q, want %q", i+1, got[i], exp[i])
			}
		}
		t.Fatalf("api/openapi.json is not formatted with a 2-space indent (%d lines, want %d)", len(got), len(exp))
	}
}

// oaRoute is a route registered in (*Server).Handler, read from the source.
type oaRoute struct {
	pattern     string // "GET /v1/requests/{id}"
	authed      bool   // wrapped in s.authed
	conditional bool   // registered inside an if statement
}

// oaRegisteredRoutes parses the package's Go files and returns the routes (*Server).Handler
// registers, without the catch-all "/".
func oaRegisteredRoutes(t *testing.T) []oaRoute {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var handler *ast.FuncDecl
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Name.Name != "Handler" || fd.Recv == nil || len(fd.Recv.List) != 1 {
				continue
			}
			if star, ok := fd.Recv.List[0].Type.(*ast.StarExpr); ok {
				if id, ok := star.X.(*ast.Ident); ok && id.Name == "Server" {
					handler = fd
				}
			}
		}
	}
	if handler == nil {
		t.Fatal("no func (*Server) Handler found in package api; update this test to where routes are registered")
	}
	var ifBodies []ast.Node
	ast.Inspect(handler.Body, func(n ast.Node) bool {
		if is, ok := n.(*ast.IfStmt); ok {
			ifBodies = append(ifBodies, is.Body)
			if is.Else != nil {
				ifBodies = append(ifBodies, is.Else)
			}
		}
		return true
	})
	var out []oaRoute
	ast.Inspect(handler.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") || len(call.Args) != 2 {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("%s: route pattern is not a string literal; this test cannot check it", fset.Position(call.Pos()))
			return true
		}
		pattern, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		if pattern == "/" {
			return true // the catch-all 404
		}
		r := oaRoute{pattern: pattern}
		if inner, ok := call.Args[1].(*ast.CallExpr); ok {
			if s, ok := inner.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "authed" {
				r.authed = true
			}
		}
		for _, b := range ifBodies {
			if call.Pos() >= b.Pos() && call.End() <= b.End() {
				r.conditional = true
			}
		}
		out = append(out, r)
		return true
	})
	if len(out) == 0 {
		t.Fatal("found no mux.HandleFunc/mux.Handle calls in (*Server).Handler")
	}
	return out
}

// oaRefuseAll authenticates nobody.
type oaRefuseAll struct{}

func (oaRefuseAll) Authenticate(*http.Request) (identity.Principal, error) {
	return identity.Principal{}, fmt.Errorf("%w: probe", identity.ErrUnauthenticated)
}

var oaWildcard = regexp.MustCompile(`\{[^}]*\}`)

// oaProbe sends method+path (placeholders filled in) to a fresh server and returns the route
// pattern the mux matched, as its metrics recorded it, and the status.
func oaProbe(t *testing.T, dev bool, method, path string) (string, int) {
	t.Helper()
	m := NewMetrics(nil, nil)
	h := New(Config{Dev: dev, Auth: oaRefuseAll{}, Metrics: m}).Handler()
	var body *strings.Reader
	if method == http.MethodGet || method == http.MethodHead {
		body = strings.NewReader("")
	} else {
		// Not JSON: a handler that reads the body refuses it (415) before touching its nil deps.
		body = strings.NewReader("probe")
	}
	req := httptest.NewRequest(method, oaWildcard.ReplaceAllString(path, "probe"), body)
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "text/plain")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, mf := range mfs {
		if mf.GetName() != "rampart_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					routes = append(routes, l.GetValue())
				}
			}
		}
	}
	if len(routes) != 1 {
		t.Fatalf("probe %s %s: metrics recorded routes %v, want exactly one", method, path, routes)
	}
	return routes[0], rec.Code
}

func TestOpenAPIRoutesMatchServer(t *testing.T) {
	doc := oaLoad(t)
	ops := oaOps(t, doc)
	routes := oaRegisteredRoutes(t)

	documented := map[string]oaOp{}
	for _, o := range ops {
		documented[o.key()] = o
	}
	registered := map[string]oaRoute{}
	for _, r := range routes {
		method, path, ok := strings.Cut(r.pattern, " ")
		if !ok || method == "" || !strings.HasPrefix(path, "/") {
			t.Errorf("route %q is registered for every method or with a host; give it a method so it can be documented", r.pattern)
			continue
		}
		if _, dup := registered[r.pattern]; dup {
			t.Errorf("route %q is registered twice", r.pattern)
		}
		registered[r.pattern] = r
		o, ok := documented[r.pattern]
		if !ok {
			t.Errorf("route %q is registered in (*Server).Handler but not documented in api/openapi.json", r.pattern)
			continue
		}
		// Authentication as implemented: s.authed routes need a bearer token.
		sec, overridden := o.op["security"].([]any)
		_, has401 := oaObj(o.op["responses"])["401"]
		if r.authed {
			if overridden && len(sec) == 0 {
				t.Errorf("%s needs a token (s.authed) but is documented with security: []", r.pattern)
			}
			if !has401 {
				t.Errorf("%s needs a token (s.authed) but does not document 401", r.pattern)
			}
		} else {
			if !overridden || len(sec) != 0 {
				t.Errorf("%s needs no token but is not documented with security: []", r.pattern)
			}
			if has401 {
				t.Errorf("%s needs no token but documents 401", r.pattern)
			}
		}
		devOnly, _ := o.op["x-rampart-dev-only"].(bool)
		if r.conditional != devOnly {
			t.Errorf("%s: registered conditionally = %v but x-rampart-dev-only = %v", r.pattern, r.conditional, devOnly)
		}
	}
	for _, o := range ops {
		if _, ok := registered[o.key()]; !ok {
			t.Errorf("%s is documented in api/openapi.json but not registered in (*Server).Handler", o.key())
		}
	}

	// Both lists against the live mux: every pattern, from either side, must be served by
	// exactly that pattern.
	probe := map[string]bool{}
	for k := range documented {
		probe[k] = true
	}
	for k := range registered {
		probe[k] = true
	}
	for pattern := range probe {
		method, path, _ := strings.Cut(pattern, " ")
		got, status := oaProbe(t, true, method, path)
		if got != pattern {
			t.Errorf("%s %s is served by route %q, not %q", method, path, got, pattern)
			continue
		}
		if r, ok := registered[pattern]; ok && r.authed != (status == http.StatusUnauthorized) {
			t.Errorf("%s answered %d without credentials; authed (from the source) = %v", pattern, status, r.authed)
		}
	}
	// Conditional routes really are conditional: without dev mode they fall to the catch-all.
	for _, r := range routes {
		if !r.conditional {
			continue
		}
		method, path, _ := strings.Cut(r.pattern, " ")
		if got, status := oaProbe(t, false, method, path); got != "unmatched" || status != http.StatusNotFound {
			t.Errorf("with dev mode off, %s is served by %q (%d); documented as dev-only", r.pattern, got, status)
		}
	}
}

// oaWalk calls fn for every object in v, with a JSON-pointer-like location.
func oaWalk(v any, at string, fn func(m map[string]any, at string)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x, at)
		for k, c := range x {
			oaWalk(c, at+"/"+k, fn)
		}
	case []any:
		for i, c := range x {
			oaWalk(c, at+"/"+strconv.Itoa(i), fn)
		}
	}
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := oaLoad(t)
	used := map[string]bool{}
	n := 0
	oaWalk(doc, "#", func(m map[string]any, at string) {
		v, ok := m["$ref"]
		if !ok {
			return
		}
		n++
		ref, _ := v.(string)
		if !strings.HasPrefix(ref, "#/components/") {
			t.Errorf("%s: $ref %v does not point into components", at, v)
			return
		}
		if len(m) != 1 {
			t.Errorf("%s: $ref has siblings, which OpenAPI 3.0 ignores: %v", at, m)
		}
		if _, ok := oaResolve(doc, ref); !ok {
			t.Errorf("%s: $ref %q does not resolve", at, ref)
		}
		used[ref] = true
	})
	if n == 0 {
		t.Error("no $ref in the document; shared schemas belong in components")
	}
	// Every component is used, so nothing stale lingers.
	for section, items := range oaObj(doc["components"]) {
		if section == "securitySchemes" {
			continue
		}
		for name := range oaObj(items) {
			if ref := "#/components/" + section + "/" + name; !used[ref] {
				t.Errorf("%s is never referenced", ref)
			}
		}
	}
}

// oaCheckClosed reports every object schema reachable from s (through $ref, properties, items
// and combinators) that does not say additionalProperties: false.
func oaCheckClosed(t *testing.T, doc map[string]any, s any, at string, seen map[string]bool) {
	t.Helper()
	m := oaObj(s)
	if m == nil {
		t.Errorf("%s: schema is not an object", at)
		return
	}
	if ref, ok := m["$ref"].(string); ok {
		if seen[ref] {
			return
		}
		seen[ref] = true
		r, ok := oaResolve(doc, ref)
		if !ok {
			t.Errorf("%s: $ref %q does not resolve", at, ref)
			return
		}
		oaCheckClosed(t, doc, r, ref, seen)
		return
	}
	for _, comb := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := m[comb].([]any); ok {
			for i, c := range list {
				oaCheckClosed(t, doc, c, fmt.Sprintf("%s/%s/%d", at, comb, i), seen)
			}
		}
	}
	if m["type"] == "object" || m["properties"] != nil {
		if ap, ok := m["additionalProperties"].(bool); !ok || ap {
			t.Errorf("%s: request body object schema must have additionalProperties: false (the server refuses unknown fields)", at)
		}
		for k, p := range oaObj(m["properties"]) {
			oaCheckClosed(t, doc, p, at+"/properties/"+k, seen)
		}
	}
	if m["items"] != nil {
		oaCheckClosed(t, doc, m["items"], at+"/items", seen)
	}
}

func TestOpenAPIRequestBodiesAreClosed(t *testing.T) {
	doc := oaLoad(t)
	n := 0
	for _, o := range oaOps(t, doc) {
		rb := oaDeref(t, doc, o.op["requestBody"])
		if rb == nil {
			continue
		}
		n++
		content := oaObj(rb["content"])
		if len(content) != 1 || content["application/json"] == nil {
			t.Errorf("%s: request body must be application/json only, got %v", o.key(), content)
		}
		for mt, media := range content {
			schema := oaObj(media)["schema"]
			if schema == nil {
				t.Errorf("%s: request body %s has no schema", o.key(), mt)
				continue
			}
			oaCheckClosed(t, doc, schema, o.key()+" requestBody "+mt, map[string]bool{})
		}
		// decode() answers these for every body it reads.
		for _, status := range []string{"400", "413", "415"} {
			if oaObj(o.op["responses"])[status] == nil {
				t.Errorf("%s reads a body but does not document %s", o.key(), status)
			}
		}
	}
	if n == 0 {
		t.Error("no operation documents a request body")
	}
}

func TestOpenAPIOperations(t *testing.T) {
	doc := oaLoad(t)
	ids := map[string]string{}
	for _, o := range oaOps(t, doc) {
		for _, f := range []string{"summary", "description", "operationId"} {
			if s, _ := o.op[f].(string); strings.TrimSpace(s) == "" {
				t.Errorf("%s has no %s", o.key(), f)
			}
		}
		if id, _ := o.op["operationId"].(string); id != "" {
			if prev, dup := ids[id]; dup {
				t.Errorf("operationId %q is used by %s and %s", id, prev, o.key())
			}
			ids[id] = o.key()
		}

		// Path parameters match the {placeholders} of the path.
		want := map[string]bool{}
		for _, m := range oaWildcard.FindAllString(o.path, -1) {
			want[strings.Trim(m, "{}")] = true
		}
		got := map[string]bool{}
		params, _ := o.op["parameters"].([]any)
		for _, p := range params {
			pm := oaDeref(t, doc, p)
			if pm == nil {
				continue
			}
			name, _ := pm["name"].(string)
			if pm["schema"] == nil {
				t.Errorf("%s: parameter %q has no schema", o.key(), name)
			}
			if pm["in"] == "path" {
				got[name] = true
				if pm["required"] != true {
					t.Errorf("%s: path parameter %q must be required", o.key(), name)
				}
			}
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: path parameters %v, want %v", o.key(), oaKeys(got), oaKeys(want))
		}

		responses := oaObj(o.op["responses"])
		success := false
		for status, r := range responses {
			rm := oaDeref(t, doc, r)
			if d, _ := rm["description"].(string); d == "" {
				t.Errorf("%s %s: response has no description", o.key(), status)
			}
			code, err := strconv.Atoi(status)
			if err != nil {
				t.Errorf("%s: response key %q is not a status code", o.key(), status)
				continue
			}
			if code >= 200 && code < 300 {
				success = true
				if len(oaObj(rm["content"])) == 0 {
					t.Errorf("%s %s: success response has no content", o.key(), status)
				}
			}
			if code < 400 || o.path == "/readyz" {
				continue
			}
			// Every error answer is (or may be) the shared Error envelope.
			schema := oaObj(oaObj(oaObj(rm["content"])["application/json"])["schema"])
			var refs []string
			oaWalk(schema, "", func(m map[string]any, _ string) {
				if r, ok := m["$ref"].(string); ok {
					refs = append(refs, r)
				}
			})
			if !slices.Contains(refs, "#/components/schemas/Error") {
				t.Errorf("%s %s: error response does not use the Error schema", o.key(), status)
			}
		}
		if !success {
			t.Errorf("%s documents no 2xx response", o.key())
		}
	}
}

func oaKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The error code enum lists exactly the Code* constants of the package.
func TestOpenAPIErrorCodes(t *testing.T) {
	doc := oaLoad(t)
	detail := oaDeref(t, doc, map[string]any{"$ref": "#/components/schemas/ErrorDetail"})
	code := oaObj(oaObj(detail["properties"])["code"])
	var documented []string
	for _, v := range code["enum"].([]any) {
		documented = append(documented, v.(string))
	}
	sort.Strings(documented)

	var declared []string
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !strings.HasPrefix(n.Name, "Code") || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, _ := strconv.Unquote(lit.Value)
						declared = append(declared, s)
					}
				}
			}
		}
	}
	sort.Strings(declared)
	if len(declared) == 0 || !slices.Equal(documented, declared) {
		t.Errorf("ErrorDetail.code enum = %v, want the Code* constants %v", documented, declared)
	}
}

// oaFill sets every exported field of v to a non-zero value, so that omitempty fields appear.
func oaFill(v reflect.Value, depth int) {
	if depth > 8 {
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				oaFill(v.Field(i), depth+1)
			}
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(time.Hour))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		oaFill(s.Index(0), depth+1)
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		oaFill(p.Elem(), depth+1)
		v.Set(p)
	}
}

// oaValidate checks a JSON value against a schema, strictly: every key must be a documented
// property, every required property present, types and date-time/byte formats right. Enums
// and patterns are not checked (filled values are placeholders).
func oaValidate(doc map[string]any, schema map[string]any, v any, at string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		r, ok := oaResolve(doc, ref)
		if !ok {
			return []string{at + ": unresolved " + ref}
		}
		return oaValidate(doc, oaObj(r), v, at)
	}
	if list, ok := schema["anyOf"].([]any); ok {
		var all []string
		for _, c := range list {
			errs := oaValidate(doc, oaObj(c), v, at)
			if len(errs) == 0 {
				return nil
			}
			all = append(all, errs...)
		}
		return all
	}
	if v == nil {
		if schema["nullable"] == true {
			return nil
		}
		return []string{at + ": null, but the schema is not nullable"}
	}
	var errs []string
	switch schema["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an object", at, v)}
		}
		props := oaObj(schema["properties"])
		open := schema["additionalProperties"] == true || oaObj(schema["additionalProperties"]) != nil
		for k, c := range m {
			p, ok := props[k]
			if !ok {
				if !open {
					errs = append(errs, fmt.Sprintf("%s: key %q is not documented", at, k))
				}
				continue
			}
			errs = append(errs, oaValidate(doc, oaObj(p), c, at+"."+k)...)
		}
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required key %q is missing", at, r))
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an array", at, v)}
		}
		for i, c := range a {
			errs = append(errs, oaValidate(doc, oaObj(schema["items"]), c, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want a string", at, v)}
		}
		switch schema["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not RFC 3339", at, s))
			}
		case "byte":
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not base64", at, s))
			}
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) {
			return []string{fmt.Sprintf("%s: %v, want an integer", at, v)}
		}
	case "number":
		if _, ok := v.(float64); !ok {
			return []string{fmt.Sprintf("%s: %T, want a number", at, v)}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return []string{fmt.Sprintf("%s: %T, want a boolean", at, v)}
		}
	}
	return errs
}

func oaJSONKeys(t *testing.T, b []byte) (map[string]any, []string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m, oaKeys(m)
}

func oaStrings(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Component schemas describe the Go types exactly: a fully populated value has exactly the
// documented properties, with the documented types; a zero value has exactly the required ones
// (the fields without omitempty/omitzero).
func TestOpenAPISchemasMatchGoTypes(t *testing.T) {
	doc := oaLoad(t)
	var plain map[string]any
	if err := json.Unmarshal(OpenAPI(), &plain); err != nil {
		t.Fatal(err)
	}
	schemas := oaObj(oaObj(plain["components"])["schemas"])

	// Types the server writes: required must match the zero value's keys.
	responses := map[string]any{
		"ErrorDetail": Error{}, "Whoami": Whoami{}, "ResourceInfo": ResourceInfo{}, "RoleInfo": RoleInfo{},
		"Rule": policy.Rule{}, "TokenResponse": TokenResponse{}, "Created": Created{}, "RequestList": RequestList{},
		"GrantList": GrantList{}, "LedgerKey": LedgerKey{}, "CheckpointResponse": CheckpointResponse{},
		"ProofResponse": ProofResponse{}, "Request": access.Request{}, "Review": access.Review{}, "Grant": access.Grant{},
		"View": access.View{}, "Tally": policy.Tally{}, "StepTally": policy.StepTally{}, "Ignored": policy.Ignored{},
		"Explanation": policy.Explanation{}, "ResourceSummary": policy.ResourceSummary{},
		"StepExplanation": policy.StepExplanation{}, "Decision": authz.Decision{}, "Query": authz.Query{},
		"Advice": suggest.Advice{}, "Candidate": suggest.Candidate{}, "Target": suggest.Target{}, "Intent": suggest.Intent{},
	}
	// Request bodies: required is what the server insists on, not what Go omits.
	bodies := map[string]any{
		"DevLoginBody": DevLoginBody{}, "CreateRequestBody": CreateRequestBody{}, "ReviewBody": ReviewBody{},
		"EmptyBody": struct{}{}, "RenewBody": RenewBody{}, "RevokeBody": RevokeBody{}, "BatchBody": BatchBody{},
		"CreateTokenBody": CreateTokenBody{}, "SuggestBody": SuggestBody{},
	}
	// Answers built from maps or raw bytes in the handlers; their shape is checked below or by hand.
	noGoType := []string{"Error", "Health", "Readiness", "ResourceList", "RoleList", "DecisionList", "CheckUnavailable", "BatchUnavailable", "TokenRevoked", "LedgerEntry"}

	for name := range schemas {
		_, r := responses[name]
		_, b := bodies[name]
		if !r && !b && !slices.Contains(noGoType, name) {
			t.Errorf("schema %s is not mapped to a Go type in this test; add it", name)
		}
	}
	check := func(name string, v any, zeroRequired bool) {
		s := oaObj(schemas[name])
		if s == nil {
			t.Errorf("schema %s is missing", name)
			return
		}
		full := reflect.New(reflect.TypeOf(v)).Elem()
		oaFill(full, 0)
		fb, err := json.Marshal(full.Interface())
		if err != nil {
			t.Fatal(err)
		}
		fm, fkeys := oaJSONKeys(t, fb)
		if props := oaKeys(oaObj(s["properties"])); !slices.Equal(fkeys, props) {
			t.Errorf("schema %s has properties %v; %T marshals %v", name, props, v, fkeys)
		}
		for _, e := range oaValidate(doc, s, fm, name) {
			t.Errorf("populated %T: %s (JSON %s)", v, e, fb)
		}
		req := oaStrings(s["required"])
		if zeroRequired {
			zb, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if _, zkeys := oaJSONKeys(t, zb); !slices.Equal(zkeys, req) {
				t.Errorf("schema %s requires %v; the zero %T marshals %v (omitempty fields are optional, the others always present)", name, req, v, zkeys)
			}
		} else {
			for _, r := range req {
				if !slices.Contains(fkeys, r) {
					t.Errorf("schema %s requires %q, which %T does not have", name, r, v)
				}
			}
		}
	}
	for name, v := range responses {
		check(name, v, true)
	}
	for name, v := range bodies {
		check(name, v, false)
	}

	// Ledger entries are built by audit.Encode, not from a struct.
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	full, err := audit.Encode(7, audit.Event{Code: "grant.revoke", Class: audit.ClassUserAccessManagement, Activity: audit.ActivityRead,
		ActivityName: "Revoke Privileges", Severity: audit.SeverityMedium, Time: at, Actor: "alice", Message: "m", User: "bob",
		Resources: []string{"weights/x"}, Privileges: []string{"reader"}, Details: map[string]any{"reason": "r"}})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := audit.Encode(0, audit.Event{Code: "policy.load", Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate, Time: at, Actor: audit.SystemActor})
	if err != nil {
		t.Fatal(err)
	}
	entry := oaObj(schemas["LedgerEntry"])
	fm, fkeys := oaJSONKeys(t, full)
	if props := oaKeys(oaObj(entry["properties"])); !slices.Equal(fkeys, props) {
		t.Errorf("schema LedgerEntry has properties %v; audit.Encode writes %v", props, fkeys)
	}
	for _, e := range oaValidate(doc, entry, fm, "LedgerEntry") {
		t.Errorf("ledger entry: %s (JSON %s)", e, full)
	}
	if _, bkeys := oaJSONKeys(t, bare); !slices.Equal(bkeys, oaStrings(entry["required"])) {
		t.Errorf("schema LedgerEntry requires %v; a bare entry has %v", oaStrings(entry["required"]), bkeys)
	}
}

// The document is what GET /v1/openapi.json serves.
func TestOpenAPIServed(t *testing.T) {
	h := New(Config{Auth: oaRefuseAll{}}).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || !bytes.Equal(rec.Body.Bytes(), OpenAPI()) {
		t.Errorf("GET /v1/openapi.json = %d %q, %d bytes; want 200 application/json with the embedded document", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}
}
