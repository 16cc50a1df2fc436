package api

// Tests that keep api/openapi.json true to the server.
//
// Which routes exist is established two ways, because neither is enough alone:
//
//   - http.ServeMux cannot list its patterns, so the registered routes are read from the source:
//     every mux.HandleFunc / mux.Handle call in (*Server).Handler, found with go/parser (not a
//     line regexp, so formatting, comments and line breaks do not matter). The syntax tree also
//     says whether a route is wrapped in s.authed (it needs a token), whether SignIn serves it
//     (s.signin.Login), and under which condition it is registered: read from the if statement
//     around it, `if s.dev` (dev mode only: x-rampart-dev-only) or `if s.signin != nil` (OIDC
//     sign-in configured: x-rampart-oidc-only). Any other condition, or a registration anywhere
//     else than Handler's body or such an if's body, fails the test, as does a pattern that is
//     not a string literal.
//   - Each pattern read from the source, and each documented path+method, is then sent to a real
//     handler built by New(Config{...}) with nil stores (Handler touches none of them), an
//     authenticator that refuses everyone and, for the sign-in routes, a SignIn that only
//     records which of its methods ran. The server's own metrics record the pattern the mux
//     matched (r.Pattern), so the test sees exactly which registered route answered, with its
//     {id} placeholders, and that authenticated routes answer 401 while the others do not. Each
//     route is probed again with each condition off: a conditional route must then be gone,
//     every other route still there.
//
// The routes SignIn serves (identity/signin: browser pages and OAuth-style endpoints) answer in
// their own formats and authenticate some callers themselves; oaSignIn lists them and says how,
// and the rules are relaxed for exactly those routes, as far as it says.

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
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
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/ci"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/signin"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/secrets"
	"rampart.dev/rampart/suggest"
	"rampart.dev/rampart/weights"
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
	pattern string // "GET /v1/requests/{id}"
	authed  bool   // wrapped in s.authed
	// cond is the condition it is registered under: "" (always), one of the keys of oaConds,
	// or, for an if the test does not know, "if <condition>" (which fails the test).
	cond string
	// signIn is the SignIn method that serves it ("Login" for s.signin.Login), or "".
	signIn string
	// scim is the SCIM method that serves it ("ListUsers" for s.scim.ListUsers), or "".
	scim string
}

// oaConds are the conditions under which (*Server).Handler may register a route: the if
// statement's condition, as go/types prints it with Handler's receiver for %s, and the
// extension that documents it (true on the operation, absent on every other).
var oaConds = map[string]struct{ expr, ext string }{
	"dev":  {"%s.dev", "x-rampart-dev-only"},            // rampart dev; never in production
	"oidc": {"%s.signin != nil", "x-rampart-oidc-only"}, // OIDC sign-in is configured
	"scim": {"%s.scim != nil", "x-rampart-scim-only"},   // SCIM provisioning is configured
}

// oaEnv is a server configuration the probe builds: which conditional parts are on.
type oaEnv struct{ dev, signIn, scim bool }

// oaEnvWithout is the configuration with every condition on except cond.
func oaEnvWithout(cond string) oaEnv {
	return oaEnv{dev: cond != "dev", signIn: cond != "oidc", scim: cond != "scim"}
}

// oaSCIMRoute describes a route that (*Server).Handler mounts from its SCIM service
// (identity/scim, registered inside `if s.scim != nil`). SCIM has its own conventions, and the
// rules below are relaxed for these routes as far as this says: they authenticate the
// directory's bearer secret themselves (security scimBearer, and 401 in the SCIM error schema),
// answer application/scim+json, errors in the SCIM error schema (ScimError), read bodies of
// application/scim+json (or application/json) whose resources are extensible (not closed), and
// DELETE answers 204 without a body.
type oaSCIMRoute struct {
	method string // the SCIM method that serves it
	body   bool   // it reads a request body
}

var oaSCIM = map[string]oaSCIMRoute{
	"GET /scim/v2/ServiceProviderConfig": {method: "ServiceProviderConfig"},
	"GET /scim/v2/ResourceTypes":         {method: "ResourceTypes"},
	"GET /scim/v2/Schemas":               {method: "Schemas"},
	"GET /scim/v2/Users":                 {method: "ListUsers"},
	"POST /scim/v2/Users":                {method: "CreateUser", body: true},
	"GET /scim/v2/Users/{id}":            {method: "GetUser"},
	"PUT /scim/v2/Users/{id}":            {method: "ReplaceUser", body: true},
	"PATCH /scim/v2/Users/{id}":          {method: "PatchUser", body: true},
	"DELETE /scim/v2/Users/{id}":         {method: "DeleteUser"},
	"GET /scim/v2/Groups":                {method: "ListGroups"},
	"POST /scim/v2/Groups":               {method: "CreateGroup", body: true},
	"GET /scim/v2/Groups/{id}":           {method: "GetGroup"},
	"PUT /scim/v2/Groups/{id}":           {method: "ReplaceGroup", body: true},
	"PATCH /scim/v2/Groups/{id}":         {method: "PatchGroup", body: true},
	"DELETE /scim/v2/Groups/{id}":        {method: "DeleteGroup"},
}

// Kinds of sign-in routes.
const (
	oaPage  = "page"  // a browser page: text/html answers and 302 redirects
	oaOAuth = "oauth" // an OAuth-style endpoint: JSON answers, TokenError bodies on error
)

// oaSignInRoute describes a route that (*Server).Handler mounts from its SignIn
// (identity/signin, registered inside `if s.signin != nil`).
type oaSignInRoute struct {
	method string // the SignIn method that serves it
	kind   string // oaPage or oaOAuth: how it answers, errors included
	body   string // the media type of the request body it reads; "" if it reads none
	// why401 says why the route answers 401 although s.authed does not wrap it; "" if it never
	// does.
	why401 string
	// bearer: the route authenticates the caller's bearer token itself, so it is documented
	// with security [{bearerAuth: []}], like the routes s.authed wraps.
	bearer bool
}

// oaSignIn lists every route served by SignIn. These routes do not follow the API's
// conventions, so the rules below are relaxed for them, and only for them, as this table says:
//
//   - Their errors are not the Error envelope: browser pages answer HTML pages (and 302
//     redirects), OAuth-style endpoints answer TokenError bodies (RFC 6749 section 5.2). The 404
//     of the catch-all (sign-in not configured) is the Error envelope, as everywhere.
//   - Their bodies are read by identity/signin, not decode(): forms or leniently decoded JSON,
//     oversized bodies answered 400, the Content-Type not checked (so no 413 or 415).
//   - None is wrapped in s.authed, so each is documented with security: [] and, as a rule, no
//     401. The exceptions are listed with why401: step-up and TOTP enrolment and confirmation
//     authenticate the caller's bearer token themselves (with the same authenticator chain the
//     server gives s.authed) and answer 401 invalid_token without a valid one, so they are
//     documented with security [{bearerAuth: []}] (bearer; with security: [] a generated client
//     sent no token and was refused); the token endpoint needs no token but answers 401
//     mfa_required when a sign-in needs a second factor. A route listed here with why401 must
//     document its 401; any other route that s.authed does not wrap must not.
var oaSignIn = map[string]oaSignInRoute{
	"GET /login":                {method: "Login", kind: oaPage},
	"GET /callback":             {method: "Callback", kind: oaPage},
	"POST /login/mfa":           {method: "LoginMFA", kind: oaPage, body: "application/x-www-form-urlencoded"},
	"POST /v1/auth/device":      {method: "Device", kind: oaOAuth},
	"POST /v1/auth/token":       {method: "Token", kind: oaOAuth, body: "application/x-www-form-urlencoded", why401: "mfa_required: the sign-in needs a second factor"},
	"POST /v1/auth/step-up":     {method: "StepUp", kind: oaOAuth, body: "application/json", why401: "it authenticates the bearer session token itself", bearer: true},
	"POST /v1/mfa/totp":         {method: "EnrolTOTP", kind: oaOAuth, body: "application/json", why401: "it authenticates the bearer session token itself", bearer: true},
	"POST /v1/mfa/totp/confirm": {method: "ConfirmTOTP", kind: oaOAuth, body: "application/json", why401: "it authenticates the bearer token itself", bearer: true},
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
	recv := "_"
	if names := handler.Recv.List[0].Names; len(names) == 1 {
		recv = names[0].Name
	}
	var out []oaRoute
	ast.PreorderStack(handler.Body, nil, func(n ast.Node, stack []ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") || len(call.Args) != 2 {
			return true
		}
		at := fset.Position(call.Pos())
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("%s: route pattern is not a string literal; this test cannot check it", at)
			return true
		}
		pattern, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		if pattern == "/" {
			return true // the catch-all 404
		}
		r := oaRoute{pattern: pattern, cond: oaCondition(t, at, recv, pattern, stack, call)}
		switch h := call.Args[1].(type) {
		case *ast.CallExpr:
			if s, ok := h.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "authed" {
				r.authed = true
			}
		case *ast.SelectorExpr:
			switch types.ExprString(h.X) {
			case recv + ".signin":
				r.signIn = h.Sel.Name
			case recv + ".scim":
				r.scim = h.Sel.Name
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

// oaCondition says under which condition the registration call happens; stack is the nodes
// from Handler's body down to it. A registration may stand directly in Handler's body
// or in the body of one if statement whose condition is one of oaConds; anywhere else (an
// else branch, a nested if, a loop, a switch, a closure) the test cannot say when the route
// exists, and fails.
func oaCondition(t *testing.T, at token.Position, recv, pattern string, stack []ast.Node, call ast.Node) string {
	t.Helper()
	cond := ""
	for i, n := range stack {
		child := call
		if i+1 < len(stack) {
			child = stack[i+1]
		}
		switch n := n.(type) {
		case *ast.BlockStmt, *ast.ExprStmt:
		case *ast.IfStmt:
			expr := types.ExprString(n.Cond)
			name := ""
			for c, x := range oaConds {
				if expr == fmt.Sprintf(x.expr, recv) {
					name = c
				}
			}
			switch {
			case child != n.Body:
				t.Errorf("%s: route %q is registered in the else branch or header of `if %s`; register it in Handler's body or in the body of an if this test knows", at, pattern, expr)
				name = "else of if " + expr
			case n.Init != nil:
				t.Errorf("%s: route %q is registered under an if with an init statement; this test cannot tell when it exists", at, pattern)
				name = "if " + expr + " with an init statement"
			case cond != "":
				t.Errorf("%s: route %q is registered under nested conditions (%s, then %s); this test documents one condition per route", at, pattern, cond, expr)
			case name == "":
				var known []string
				for _, x := range oaConds {
					known = append(known, fmt.Sprintf("`if %s` (%s)", fmt.Sprintf(x.expr, recv), x.ext))
				}
				sort.Strings(known)
				t.Errorf("%s: route %q is registered under `if %s`; this test knows only %s: add the condition to oaConds, with an extension to document it and a probe configuration that turns it off",
					at, pattern, expr, strings.Join(known, " and "))
				name = "if " + expr
			}
			cond = name
		default:
			t.Errorf("%s: route %q is registered inside a %T; this test only understands registrations in Handler's body or in the body of an if it knows", at, pattern, n)
		}
	}
	return cond
}

// oaRefuseAll authenticates nobody.
type oaRefuseAll struct{}

func (oaRefuseAll) Authenticate(*http.Request) (identity.Principal, error) {
	return identity.Principal{}, fmt.Errorf("%w: probe", identity.ErrUnauthenticated)
}

// oaSignInProbe is a routing probe, not a model of sign-in: every method records its own name
// and answers 200, so the test sees which SignIn method the mux sent a request to.
type oaSignInProbe struct{ ran *string }

func (p oaSignInProbe) serve(name string, w http.ResponseWriter) {
	*p.ran = name
	w.WriteHeader(http.StatusOK)
}

func (p oaSignInProbe) Login(w http.ResponseWriter, _ *http.Request)       { p.serve("Login", w) }
func (p oaSignInProbe) Callback(w http.ResponseWriter, _ *http.Request)    { p.serve("Callback", w) }
func (p oaSignInProbe) LoginMFA(w http.ResponseWriter, _ *http.Request)    { p.serve("LoginMFA", w) }
func (p oaSignInProbe) Device(w http.ResponseWriter, _ *http.Request)      { p.serve("Device", w) }
func (p oaSignInProbe) Token(w http.ResponseWriter, _ *http.Request)       { p.serve("Token", w) }
func (p oaSignInProbe) StepUp(w http.ResponseWriter, _ *http.Request)      { p.serve("StepUp", w) }
func (p oaSignInProbe) EnrolTOTP(w http.ResponseWriter, _ *http.Request)   { p.serve("EnrolTOTP", w) }
func (p oaSignInProbe) ConfirmTOTP(w http.ResponseWriter, _ *http.Request) { p.serve("ConfirmTOTP", w) }

// oaSCIMProbe, like oaSignInProbe, records which SCIM method the mux sent a request to.
type oaSCIMProbe struct{ ran *string }

func (p oaSCIMProbe) serve(name string, w http.ResponseWriter) {
	*p.ran = "SCIM." + name
	w.WriteHeader(http.StatusOK)
}

func (p oaSCIMProbe) ServiceProviderConfig(w http.ResponseWriter, _ *http.Request) {
	p.serve("ServiceProviderConfig", w)
}
func (p oaSCIMProbe) ResourceTypes(w http.ResponseWriter, _ *http.Request) {
	p.serve("ResourceTypes", w)
}
func (p oaSCIMProbe) Schemas(w http.ResponseWriter, _ *http.Request)      { p.serve("Schemas", w) }
func (p oaSCIMProbe) ListUsers(w http.ResponseWriter, _ *http.Request)    { p.serve("ListUsers", w) }
func (p oaSCIMProbe) CreateUser(w http.ResponseWriter, _ *http.Request)   { p.serve("CreateUser", w) }
func (p oaSCIMProbe) GetUser(w http.ResponseWriter, _ *http.Request)      { p.serve("GetUser", w) }
func (p oaSCIMProbe) ReplaceUser(w http.ResponseWriter, _ *http.Request)  { p.serve("ReplaceUser", w) }
func (p oaSCIMProbe) PatchUser(w http.ResponseWriter, _ *http.Request)    { p.serve("PatchUser", w) }
func (p oaSCIMProbe) DeleteUser(w http.ResponseWriter, _ *http.Request)   { p.serve("DeleteUser", w) }
func (p oaSCIMProbe) ListGroups(w http.ResponseWriter, _ *http.Request)   { p.serve("ListGroups", w) }
func (p oaSCIMProbe) CreateGroup(w http.ResponseWriter, _ *http.Request)  { p.serve("CreateGroup", w) }
func (p oaSCIMProbe) GetGroup(w http.ResponseWriter, _ *http.Request)     { p.serve("GetGroup", w) }
func (p oaSCIMProbe) ReplaceGroup(w http.ResponseWriter, _ *http.Request) { p.serve("ReplaceGroup", w) }
func (p oaSCIMProbe) PatchGroup(w http.ResponseWriter, _ *http.Request)   { p.serve("PatchGroup", w) }
func (p oaSCIMProbe) DeleteGroup(w http.ResponseWriter, _ *http.Request)  { p.serve("DeleteGroup", w) }

var oaWildcard = regexp.MustCompile(`\{[^}]*\}`)

// oaProbe sends method+path (placeholders filled in) to a fresh server configured as env and
// returns the route pattern the mux matched, as its metrics recorded it, the status, and the
// SignIn method that answered ("" if none did).
func oaProbe(t *testing.T, env oaEnv, method, path string) (route string, status int, ran string) {
	t.Helper()
	m := NewMetrics(nil, nil)
	cfg := Config{Dev: env.dev, Auth: oaRefuseAll{}, Metrics: m}
	if env.signIn {
		cfg.SignIn = oaSignInProbe{ran: &ran}
	}
	if env.scim {
		cfg.SCIM = oaSCIMProbe{ran: &ran}
	}
	h := New(cfg).Handler()
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
	return routes[0], rec.Code, ran
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
		si, isSignIn := oaSignIn[r.pattern]
		if r.signIn != si.method {
			switch {
			case !isSignIn:
				t.Errorf("%s is served by SignIn.%s but is not in this test's oaSignIn table; add it, with how it answers", r.pattern, r.signIn)
			case r.signIn == "":
				t.Errorf("%s is in this test's oaSignIn table (SignIn.%s) but (*Server).Handler does not serve it with s.signin.%s", r.pattern, si.method, si.method)
			default:
				t.Errorf("%s is served by SignIn.%s; this test's oaSignIn table says SignIn.%s", r.pattern, r.signIn, si.method)
			}
		}
		sc, isSCIM := oaSCIM[r.pattern]
		if r.scim != sc.method {
			t.Errorf("%s is served by SCIM.%s; this test's oaSCIM table says SCIM.%s", r.pattern, r.scim, sc.method)
		}
		o, ok := documented[r.pattern]
		if !ok {
			t.Errorf("route %q is registered in (*Server).Handler but not documented in api/openapi.json", r.pattern)
			continue
		}
		if isSCIM {
			// SCIM authenticates the directory's bearer secret itself.
			sec, _ := o.op["security"].([]any)
			if len(sec) != 1 || oaObj(sec[0])["scimBearer"] == nil {
				t.Errorf("%s: a SCIM route is documented with security [{scimBearer: []}], not %v", r.pattern, o.op["security"])
			}
			if oaObj(o.op["responses"])["401"] == nil {
				t.Errorf("%s: a SCIM route answers 401 without the secret; document it", r.pattern)
			}
			if r.authed {
				t.Errorf("%s: a SCIM route is not behind s.authed", r.pattern)
			}
			if r.cond != "scim" || o.op["x-rampart-scim-only"] != true {
				t.Errorf("%s: a SCIM route is registered under if s.scim != nil and documented with x-rampart-scim-only: true", r.pattern)
			}
			if oaObj(o.op["responses"])["404"] == nil {
				t.Errorf("%s is registered under \"scim\" only; document the 404 it answers otherwise", r.pattern)
			}
			continue
		}
		// Authentication as implemented: s.authed routes need a bearer token. Routes it does
		// not wrap document no security requirement, and no 401 unless oaSignIn says why.
		sec, overridden := o.op["security"].([]any)
		_, has401 := oaObj(o.op["responses"])["401"]
		if r.authed {
			if overridden && len(sec) == 0 {
				t.Errorf("%s needs a token (s.authed) but is documented with security: []", r.pattern)
			}
			if !has401 {
				t.Errorf("%s needs a token (s.authed) but does not document 401", r.pattern)
			}
		} else if si.bearer {
			if b, _ := json.Marshal(o.op["security"]); string(b) != `[{"bearerAuth":[]}]` {
				t.Errorf("%s authenticates the bearer token itself; document security [{\"bearerAuth\": []}], not %s", r.pattern, b)
			}
			if !has401 {
				t.Errorf("%s answers 401 (%s) but does not document it", r.pattern, si.why401)
			}
		} else {
			if !overridden || len(sec) != 0 {
				t.Errorf("%s is not wrapped in s.authed but is not documented with security: []", r.pattern)
			}
			if has401 && si.why401 == "" {
				t.Errorf("%s needs no token but documents 401", r.pattern)
			}
			if !has401 && si.why401 != "" {
				t.Errorf("%s answers 401 (%s) but does not document it", r.pattern, si.why401)
			}
		}
		// The condition it is registered under, and only that one, is documented.
		for name, c := range oaConds {
			v, present := o.op[c.ext]
			if present && v != true {
				t.Errorf("%s: %s = %v; write true, or leave it out", r.pattern, c.ext, v)
			}
			if (r.cond == name) != (v == true) {
				t.Errorf("%s: registered under %q, but %s = %v", r.pattern, cmp.Or(r.cond, "no condition"), c.ext, v == true)
			}
		}
		if r.cond != "" && oaObj(o.op["responses"])["404"] == nil {
			t.Errorf("%s is registered under %q only; document the 404 it answers otherwise", r.pattern, r.cond)
		}
	}
	for _, o := range ops {
		if _, ok := registered[o.key()]; !ok {
			t.Errorf("%s is documented in api/openapi.json but not registered in (*Server).Handler", o.key())
		}
	}
	for pattern := range oaSignIn {
		if _, ok := registered[pattern]; !ok {
			t.Errorf("%s is in this test's oaSignIn table but not registered in (*Server).Handler", pattern)
		}
	}
	for pattern := range oaSCIM {
		if _, ok := registered[pattern]; !ok {
			t.Errorf("%s is in this test's oaSCIM table but not registered in (*Server).Handler", pattern)
		}
	}
	// Every method of SCIM is a handler the table knows.
	scimServed := map[string]bool{}
	for _, sc := range oaSCIM {
		scimServed[sc.method] = true
	}
	sct := reflect.TypeFor[SCIM]()
	for i := range sct.NumMethod() {
		if name := sct.Method(i).Name; !scimServed[name] {
			t.Errorf("SCIM.%s serves no route in this test's oaSCIM table", name)
		}
	}
	// Every method of SignIn is a handler the table knows.
	served := map[string]bool{}
	for _, si := range oaSignIn {
		served[si.method] = true
	}
	st := reflect.TypeFor[SignIn]()
	for i := range st.NumMethod() {
		if name := st.Method(i).Name; !served[name] {
			t.Errorf("SignIn.%s serves no route in this test's oaSignIn table", name)
		}
	}

	// Both lists against the live mux, with every condition on: every pattern, from either
	// side, must be served by exactly that pattern (and sign-in routes by their SignIn method).
	probe := map[string]bool{}
	for k := range documented {
		probe[k] = true
	}
	for k := range registered {
		probe[k] = true
	}
	for pattern := range probe {
		method, path, _ := strings.Cut(pattern, " ")
		got, status, ran := oaProbe(t, oaEnv{dev: true, signIn: true, scim: true}, method, path)
		if got != pattern {
			t.Errorf("%s %s is served by route %q, not %q", method, path, got, pattern)
			continue
		}
		if r, ok := registered[pattern]; ok {
			if r.authed != (status == http.StatusUnauthorized) {
				t.Errorf("%s answered %d without credentials; authed (from the source) = %v", pattern, status, r.authed)
			}
			want := r.signIn
			if r.scim != "" {
				want = "SCIM." + r.scim
			}
			if ran != want {
				t.Errorf("%s was answered by method %q; the source says %q", pattern, ran, want)
			}
		}
	}
	// Conditional routes really are conditional, on exactly their condition: with it off (and
	// every other on) they fall to the catch-all; every other route is still served.
	for _, r := range routes {
		method, path, _ := strings.Cut(r.pattern, " ")
		for name, c := range oaConds {
			got, status, _ := oaProbe(t, oaEnvWithout(name), method, path)
			switch {
			case r.cond == name && (got != "unmatched" || status != http.StatusNotFound):
				t.Errorf("with %s off, %s is served by %q (%d); documented as %s", name, r.pattern, got, status, c.ext)
			case r.cond != name && got != r.pattern:
				t.Errorf("with %s off, %s is served by %q; it is registered under %q", name, r.pattern, got, cmp.Or(r.cond, "no condition"))
			}
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

// oaRawBodies are the routes whose request body is not JSON read by decode() but a stream the
// handler reads itself, with its media type. PUT /v1/weights/{name} documented no request body
// at all, so a client generated from the document could not upload.
var oaRawBodies = map[string]string{
	"PUT /v1/weights/{name}": "application/octet-stream",
}

func TestOpenAPIRequestBodiesAreClosed(t *testing.T) {
	doc := oaLoad(t)
	n := 0
	for _, o := range oaOps(t, doc) {
		rb := oaDeref(t, doc, o.op["requestBody"])
		if si, ok := oaSignIn[o.key()]; ok {
			oaSignInBody(t, o, si, rb)
			continue
		}
		if sc, ok := oaSCIM[o.key()]; ok {
			oaSCIMBody(t, o, sc, rb)
			continue
		}
		if mt, ok := oaRawBodies[o.key()]; ok {
			// The route streams its body itself (not decode()): exactly that media type,
			// required, any size (no 413), 415 for another Content-Type.
			content := oaObj(oaDeref(t, doc, rb)["content"])
			if rb == nil || rb["required"] != true || len(content) != 1 || content[mt] == nil {
				t.Errorf("%s reads a required %s body (oaRawBodies); document exactly that, not %v", o.key(), mt, rb)
			}
			if oaObj(o.op["responses"])["415"] == nil {
				t.Errorf("%s reads a %s body but does not document 415", o.key(), mt)
			}
			continue
		}
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

// oaSignInBody checks the request body of a sign-in route against oaSignIn. identity/signin
// reads it, not decode(): exactly the media type it parses, and it answers a body it cannot
// read (too large included) with 400; it never answers 413 or 415.
func oaSignInBody(t *testing.T, o oaOp, si oaSignInRoute, rb map[string]any) {
	t.Helper()
	switch {
	case si.body == "" && rb != nil:
		t.Errorf("%s reads no request body (oaSignIn) but documents one", o.key())
		return
	case si.body != "" && rb == nil:
		t.Errorf("%s reads a %s body (oaSignIn) but documents none", o.key(), si.body)
		return
	case rb == nil:
		return
	}
	content := oaObj(rb["content"])
	if len(content) != 1 || content[si.body] == nil {
		t.Errorf("%s: request body must be %s only (oaSignIn), got %v", o.key(), si.body, oaKeys(content))
	}
	if oaObj(content[si.body])["schema"] == nil {
		t.Errorf("%s: request body %s has no schema", o.key(), si.body)
	}
	responses := oaObj(o.op["responses"])
	if responses["400"] == nil {
		t.Errorf("%s reads a body but does not document 400", o.key())
	}
	for _, status := range []string{"413", "415"} {
		if responses[status] != nil {
			t.Errorf("%s documents %s, which identity/signin never answers (it answers an unreadable body 400)", o.key(), status)
		}
	}
}

// oaSCIMBody checks a SCIM route's request body: application/scim+json or application/json, the
// same schema for both; 400 and 413 documented (the SCIM service answers both, in its own error
// schema). SCIM resources are extensible, so their schemas are not closed.
func oaSCIMBody(t *testing.T, o oaOp, sc oaSCIMRoute, rb map[string]any) {
	t.Helper()
	switch {
	case !sc.body && rb != nil:
		t.Errorf("%s reads no request body (oaSCIM) but documents one", o.key())
		return
	case sc.body && rb == nil:
		t.Errorf("%s reads a body (oaSCIM) but documents none", o.key())
		return
	case rb == nil:
		return
	}
	content := oaObj(rb["content"])
	if len(content) != 2 || content["application/scim+json"] == nil || content["application/json"] == nil {
		t.Errorf("%s: a SCIM request body is application/scim+json or application/json; documented %v", o.key(), oaKeys(content))
	}
	for _, status := range []string{"400", "413"} {
		if oaObj(o.op["responses"])[status] == nil {
			t.Errorf("%s reads a body but does not document %s", o.key(), status)
		}
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
		si, isSignIn := oaSignIn[o.key()]
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
			content := oaObj(rm["content"])
			if _, isSCIM := oaSCIM[o.key()]; isSCIM {
				// SCIM answers application/scim+json: resources, lists, and its error schema
				// (the catch-all's 404 when SCIM is off is the Error envelope, as everywhere).
				switch {
				case code == http.StatusNoContent:
					success = true
					if len(content) != 0 {
						t.Errorf("%s %s: a 204 has no content", o.key(), status)
					}
				case code >= 200 && code < 300:
					success = true
					if len(content) != 1 || content["application/scim+json"] == nil {
						t.Errorf("%s %s: SCIM answers application/scim+json only; documented %v", o.key(), status, oaKeys(content))
					}
				case code == http.StatusNotFound:
					schema := oaObj(oaObj(content["application/scim+json"])["schema"])
					var refs []string
					oaWalk(schema, "", func(m map[string]any, _ string) {
						if r, ok := m["$ref"].(string); ok {
							refs = append(refs, r)
						}
					})
					if !slices.Contains(refs, "#/components/schemas/ScimError") || oaObj(oaObj(content["application/json"])["schema"])["$ref"] != "#/components/schemas/Error" {
						t.Errorf("%s 404: a SCIM route answers a missing resource as a ScimError, and the catch-all (SCIM off) as the Error envelope", o.key())
					}
				default:
					if len(content) != 1 || oaObj(oaObj(content["application/scim+json"])["schema"])["$ref"] != "#/components/schemas/ScimError" {
						t.Errorf("%s %s: a SCIM error answer is application/scim+json ScimError; documented %v", o.key(), status, oaKeys(content))
					}
				}
				continue
			}
			if code >= 200 && code < 300 {
				success = true
				if len(content) == 0 {
					t.Errorf("%s %s: success response has no content", o.key(), status)
				}
				if isSignIn {
					oaSignInContent(t, doc, o.key()+" "+status, si.kind, content, false)
				}
			}
			// Only browser pages redirect; a redirect says where to.
			if code >= 300 && code < 400 {
				if si.kind != oaPage {
					t.Errorf("%s %s: only the sign-in browser pages (oaSignIn) redirect", o.key(), status)
				}
				if oaObj(rm["headers"])["Location"] == nil {
					t.Errorf("%s %s: a redirect must document its Location header", o.key(), status)
				}
				success = true
			}
			if code < 400 || o.path == "/readyz" {
				continue
			}
			// Sign-in routes answer their own error bodies, except the catch-all's 404 when
			// sign-in is not configured.
			if isSignIn && code != http.StatusNotFound {
				oaSignInContent(t, doc, o.key()+" "+status, si.kind, content, true)
				continue
			}
			// Every other error answer is (or may be) the shared Error envelope.
			schema := oaObj(oaObj(content["application/json"])["schema"])
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
			t.Errorf("%s documents no 2xx response (nor, for a sign-in page, a redirect)", o.key())
		}
	}
}

// oaSignInContent checks the content of an answer of a sign-in route: a browser page answers
// text/html only; an OAuth-style endpoint answers application/json only, and its errors are
// exactly TokenError.
func oaSignInContent(t *testing.T, doc map[string]any, at, kind string, content map[string]any, isError bool) {
	t.Helper()
	want := map[string]string{oaPage: "text/html", oaOAuth: "application/json"}[kind]
	if len(content) != 1 || content[want] == nil {
		t.Errorf("%s: a sign-in %s answers %s only; documented %v", at, kind, want, oaKeys(content))
		return
	}
	schema := oaObj(oaObj(content[want])["schema"])
	switch {
	case schema == nil:
		t.Errorf("%s: %s has no schema", at, want)
	case kind == oaPage && oaDeref(t, doc, schema)["type"] != "string":
		t.Errorf("%s: an HTML page's schema is a string", at)
	case kind == oaOAuth && isError && schema["$ref"] != "#/components/schemas/TokenError":
		t.Errorf("%s: an OAuth-style error answer is a TokenError (RFC 6749 section 5.2); documented %v", at, schema)
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
func oaFill(v reflect.Value, depth int) { oaFillIn(v, depth, map[reflect.Type]int{}) }

// oaFillIn fills v; a type that contains itself (suggest.Advice's parts) is filled two levels
// deep, its innermost occurrences left empty (they are omitempty).
func oaFillIn(v reflect.Value, depth int, in map[reflect.Type]int) {
	if depth > 12 {
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)))
			return
		}
		if in[v.Type()] >= 2 {
			return
		}
		in[v.Type()]++
		defer func() { in[v.Type()]-- }()
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				oaFillIn(v.Field(i), depth+1, in)
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
		if in[v.Type().Elem()] >= 2 {
			return
		}
		s := reflect.MakeSlice(v.Type(), 1, 1)
		oaFillIn(s.Index(0), depth+1, in)
		v.Set(s)
	case reflect.Pointer:
		if in[v.Type().Elem()] >= 2 {
			return
		}
		p := reflect.New(v.Type().Elem())
		oaFillIn(p.Elem(), depth+1, in)
		v.Set(p)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		oaFillIn(k, depth+1, in)
		oaFillIn(e, depth+1, in)
		m.SetMapIndex(k, e)
		v.Set(m)
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
		"ErrorDetail": Error{}, "Whoami": Whoami{}, "RequesterContext": RequesterContext{}, "ResourceInfo": ResourceInfo{}, "RoleInfo": RoleInfo{},
		"Rule": policy.Rule{}, "RoleDefinition": policy.RoleDefinition{}, "RoleKubernetes": policy.RoleKubernetes{}, "RBACRule": policy.RBACRule{},
		"TokenResponse": TokenResponse{}, "DevLoginResponse": DevLoginResponse{}, "Created": Created{}, "CreatedSet": CreatedSet{}, "RequestList": RequestList{},
		"GrantList": GrantList{}, "LedgerKey": LedgerKey{}, "CheckpointResponse": CheckpointResponse{}, "Cosignature": audit.Cosignature{},
		"ProofResponse": ProofResponse{}, "Request": access.Request{}, "Review": access.Review{}, "Grant": access.Grant{},
		"View": access.View{}, "Tally": policy.Tally{}, "StepTally": policy.StepTally{}, "Ignored": policy.Ignored{},
		"Explanation": policy.Explanation{}, "ResourceSummary": policy.ResourceSummary{},
		"StepExplanation": policy.StepExplanation{}, "Decision": authz.Decision{}, "Query": authz.Query{},
		"Advice": suggest.Advice{}, "Candidate": suggest.Candidate{}, "Target": suggest.Target{}, "Intent": suggest.Intent{},
		"Session": identity.Session{}, "User": identity.User{}, "Token": identity.Token{}, "UserDisabled": UserDisabled{}, "SignInTokenResponse": signin.TokenResponse{},
		"DeviceResponse": signin.DeviceResponse{}, "TokenError": signin.TokenError{},
		"WeightsObject": weights.Object{}, "VerifyResult": weights.VerifyResult{}, "KeyRelease": weights.KeyRelease{},
		"Change": change.Change{}, "ChangeReview": change.Review{}, "ChangeView": change.View{}, "ChangeList": ChangeList{},
		"ChangeExplanation": policy.ChangeExplanation{}, "AppliedRule": policy.AppliedRule{}, "ChangeParty": policy.ChangeParty{},
		"ChangeBundle": change.Bundle{}, "ChangeBundleEntry": change.BundleEntry{}, "ChangeVerdict": change.Verdict{},
		"Alert": detect.Alert{}, "AlertList": AlertList{},
		// The weights handlers (api/weights.go) write these as maps; these are copies of their
		// keys and value types.
		"WeightsList": struct {
			Objects []weights.Object `json:"objects"`
		}{},
		"WeightsDeleted": struct {
			Deleted []weights.Object `json:"deleted"`
		}{},
		"WeightsRekeyed": struct {
			Rekeyed []weights.Object `json:"rekeyed"`
		}{},
		"VaultRotated": struct {
			KeyID     string `json:"key_id"`
			Rewrapped int    `json:"rewrapped"`
		}{},
		"VaultKeyRetired": struct {
			KeyID  string `json:"key_id"`
			Status string `json:"status"`
		}{},
		"Secret": secrets.Secret{}, "SecretVersion": secrets.Version{}, "SecretLease": secrets.Lease{},
		// The secrets handlers (api/secrets.go) write these as maps; copies of their keys.
		"SecretList": struct {
			Secrets []secrets.Version `json:"secrets"`
		}{},
		"SecretVersionList": struct {
			Versions []secrets.Version `json:"versions"`
		}{},
		"SecretDeleted": struct {
			Name    string `json:"name"`
			Deleted int    `json:"deleted"`
		}{},
	}
	// Request bodies: required is what the server insists on, not what Go omits.
	bodies := map[string]any{
		"DevLoginBody": DevLoginBody{}, "CreateRequestBody": CreateRequestBody{}, "ReviewBody": ReviewBody{},
		"EmptyBody": struct{}{}, "RenewBody": RenewBody{}, "RevokeBody": RevokeBody{}, "BatchBody": BatchBody{},
		"CreateTokenBody": CreateTokenBody{}, "SuggestBody": SuggestBody{}, "AlertNote": AlertNote{},
		// disableUser in api/identity.go decodes into an anonymous struct; this is a copy of it.
		"DisableBody": struct {
			Reason string `json:"reason"`
		}{},
		"KeyReleaseBody": KeyReleaseBody{}, "RetireBody": RetireBody{}, "PutSecretBody": PutSecretBody{},
		"FileChangeBody": FileChangeBody{}, "ReviewChangeBody": ReviewChangeBody{}, "ChangeUpdate": change.Update{}, "ChangeCommit": change.Commit{},
		"CIExchangeBody": CIExchangeBody{}, "CIExchangeResponse": CIExchangeResponse{}, "CIRun": ci.Run{}, "TriggerBody": TriggerBody{}, "TriggerResponse": TriggerResponse{},
		// The handlers decode these into anonymous structs; these are copies of them
		// (revokeSession in api/identity.go; StepUp and ConfirmTOTP in identity/signin/token.go).
		"SessionRevokeBody": struct {
			Reason string `json:"reason"`
		}{},
		"OTPBody": struct {
			OTP string `json:"otp"`
		}{},
	}
	// Answers built from maps or raw bytes in the handlers; their shape is checked below or by hand.
	noGoType := []string{"Error", "Health", "Readiness", "ResourceList", "RoleList", "DecisionList", "CheckUnavailable", "BatchUnavailable", "TokenRevoked", "LedgerEntry",
		"SessionRevoked", "UserUpdated", "EnrolmentAllowed", "StepUpResponse", "TOTPEnrolment", "TOTPConfirmed", "HTMLPage",
		// Form bodies, read with r.PostForm.Get; TokenForm's grant types are checked below.
		"TokenForm", "LoginMFAForm",
		// SCIM resources and messages (identity/scim builds them as JSON objects, RFC 7643/7644).
		"ScimUser", "ScimGroup", "ScimListResponse", "ScimError", "ScimPatchOp", "ScimServiceProviderConfig", "ScimMember", "ScimMeta",
		// server.PolicyStatus (api cannot import server); the end-to-end tests validate every
		// /readyz answer against the schema.
		"PolicyStatus",
		// They hold ledger entries as raw bytes (json.RawMessage), which oaFill cannot make up;
		// TestAlertsAPI validates a real answer against the schemas.
		"AlertEntry", "AlertDetail"}

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

	// The token endpoint's grant types are exactly those identity/signin accepts.
	grants := oaStrings(oaObj(oaObj(oaObj(schemas["TokenForm"])["properties"])["grant_type"])["enum"])
	want := []string{signin.GrantCode, signin.GrantDevice, signin.GrantRefresh, signin.GrantOTP}
	sort.Strings(want)
	if !slices.Equal(grants, want) {
		t.Errorf("schema TokenForm: grant_type enum = %v, want %v", grants, want)
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
	// A refusal of the egress gateway, aggregated: status Failure, class 4001, and the OCSF
	// attributes of the class and of aggregation at the top level. The schema allowed only
	// Success and four classes, so a client validating entries rejected such real ones.
	refused, err := audit.Encode(8, audit.Event{Code: "egress.denied", Class: audit.ClassNetworkActivity, Activity: 6, ActivityName: "Traffic",
		Time: at, Actor: "alice", Message: "m", Failed: true, Extra: map[string]any{"dst_endpoint": map[string]any{"hostname": "example.com", "port": 443},
			"disposition": "Blocked", "disposition_id": 2, "count": 3, "start_time": at.UnixMilli(), "end_time": at.UnixMilli(),
			"src_endpoint": map[string]any{"ip": "10.0.0.1"}, "traffic": map[string]any{"bytes_out": 1, "bytes_in": 2}}})
	if err != nil {
		t.Fatal(err)
	}
	vault, err := audit.Encode(9, audit.Event{Code: "weights.denied", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, Time: at, Actor: "bob", Failed: true})
	if err != nil {
		t.Fatal(err)
	}
	// A detection finding (class 2004, severity Critical): finding_info at the top level.
	finding, err := audit.Encode(10, detect.AlertEvent(detect.Firing{Rule: "r", Severity: "critical", Mitre: []string{"T1530"}, Evidence: []int64{1}, Count: 1, First: at, Last: at}, at))
	if err != nil {
		t.Fatal(err)
	}
	entry := oaObj(schemas["LedgerEntry"])
	fm, fkeys := oaJSONKeys(t, full)
	rm, rkeys := oaJSONKeys(t, refused)
	nm, nkeys := oaJSONKeys(t, finding)
	all := slices.Compact(slices.Sorted(slices.Values(append(append(fkeys, rkeys...), nkeys...))))
	if props := oaKeys(oaObj(entry["properties"])); !slices.Equal(all, props) {
		t.Errorf("schema LedgerEntry has properties %v; audit.Encode writes %v", props, all)
	}
	vm, _ := oaJSONKeys(t, vault)
	for _, e := range [][]byte{full, refused, vault, finding} {
		m := map[string]any{string(full): fm, string(refused): rm, string(vault): vm, string(finding): nm}[string(e)]
		for _, problem := range oaValidate(doc, entry, m, "LedgerEntry") {
			t.Errorf("ledger entry: %s (JSON %s)", problem, e)
		}
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
