package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"

	"rampart.dev/rampart/api"
)

// Issue 12, item 11: api/openapi.json must describe what the server really answers, for clients
// generated from it. Every control plane the end-to-end tests start (rampart dev, rampart server)
// listens on a private address behind a recording reverse proxy (tapProxy) that holds the
// address the test gave, so the CLI, curl, Python and the tests' own HTTP calls all go through
// it unchanged. When the server stops, every exchange is checked with an OpenAPI validator that
// is not Rampart's (github.com/getkin/kin-openapi, openapi3filter): the route and the status are
// documented, the headers the document declares are as declared, the body matches the schema
// of its media type; and an exchange the server accepted (below 400) must be one the document
// accepts too (parameters, body, credentials). Every ledger entry the servers wrote is checked
// against the LedgerEntry schema (collectLedger). Mismatches fail the test that made them, with
// the route and the field.
//
// The proxy is the test's, not the product's: the binary has no hook for it.

// tapMax bounds what is kept of one body: enough for every JSON answer the tests get, never a
// weights transfer (binary bodies are not kept at all).
const tapMax = 4 << 20

// exchange is one request and its answer, as the client saw them.
type exchange struct {
	method, uri string
	reqHeader   http.Header
	reqBody     []byte
	reqHadBody  bool
	reqComplete bool // reqBody is the whole body
	status      int
	header      http.Header
	body        []byte
	complete    bool // body is the whole body
}

// tapProxy listens on the address a test gave a server and forwards to where it really listens.
type tapProxy struct {
	srv  *http.Server
	done chan struct{}
	once sync.Once

	mu        sync.Mutex
	exchanges []*exchange
}

// tapServer decides whether a control plane started with args is tapped; if so it returns the
// arguments that make it listen on a private address instead, and the proxy to start on addr
// once the server runs. Other processes (the egress gateway, the KMS plugin) are not.
func tapServer(t *testing.T, addr string, args []string) ([]string, string) {
	t.Helper()
	if len(args) == 0 || (args[0] != "dev" && args[0] != "server") {
		return args, ""
	}
	inner := freeAddr(t)
	out := append([]string(nil), args...)
	for i := 0; i < len(out); i++ {
		switch {
		case args[0] == "dev" && out[i] == "--addr" && i+1 < len(out) && out[i+1] == addr:
			out[i+1] = inner
			return out, inner
		case args[0] == "server" && out[i] == "--config" && i+1 < len(out):
			b, err := os.ReadFile(out[i+1])
			if err != nil {
				return args, "" // the server reports it
			}
			re := regexp.MustCompile(`(?m)^listen: *"?` + regexp.QuoteMeta(addr) + `"? *$`)
			if !re.Match(b) {
				return args, ""
			}
			// Beside the original, so that relative paths in it mean the same.
			tapped := out[i+1] + ".tapped.yaml"
			if err := os.WriteFile(tapped, re.ReplaceAll(b, []byte("listen: "+inner)), 0o600); err != nil {
				t.Fatal(err)
			}
			out[i+1] = tapped
			return out, inner
		}
	}
	return args, ""
}

// startTap serves the recording proxy on addr, forwarding to inner.
func startTap(t *testing.T, addr, inner string) *tapProxy {
	t.Helper()
	var ln net.Listener
	var err error
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the OpenAPI tap cannot listen on %s: %v", addr, err)
	}
	p := &tapProxy{done: make(chan struct{})}
	target := &url.URL{Scheme: "http", Host: inner}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the server sees the address the client used
			pr.Out.Header.Del("X-Forwarded-For")
		},
		FlushInterval: -1, // streams (weights, ledger follow) pass as they come
		ModifyResponse: func(resp *http.Response) error {
			x := resp.Request.Context().Value(tapKey{}).(*exchange)
			x.status, x.header = resp.StatusCode, resp.Header.Clone()
			resp.Body = &tapBody{ReadCloser: resp.Body, x: x, keep: keepBody(resp.Header.Get("Content-Type")), done: func() { p.record(x) }}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The server is not up (yet, or any more): the proxy's answer is not the server's.
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &exchange{method: r.Method, uri: r.URL.RequestURI(), reqHeader: r.Header.Clone()}
		if r.Body != nil && r.Body != http.NoBody {
			x.reqHadBody = r.ContentLength != 0
			r.Body = &tapBody{ReadCloser: r.Body, x: x, request: true, keep: keepBody(r.Header.Get("Content-Type"))}
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tapKey{}, x)))
	})}
	go func() { _ = p.srv.Serve(ln); close(p.done) }()
	return p
}

type tapKey struct{}

// keepBody: the media types whose bodies are kept for validation (not binary streams).
func keepBody(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt != "application/octet-stream"
}

// tapBody keeps a copy of what passes through, up to tapMax.
type tapBody struct {
	io.ReadCloser
	x        *exchange
	request  bool
	keep     bool
	buf      bytes.Buffer
	over     bool
	eof      bool
	done     func()
	doneOnce sync.Once
}

func (b *tapBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if b.request {
			b.x.reqHadBody = true
		}
		if b.keep && b.buf.Len()+n <= tapMax {
			b.buf.Write(p[:n])
		} else {
			b.over = true
		}
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *tapBody) Close() error {
	err := b.ReadCloser.Close()
	b.doneOnce.Do(func() {
		if b.request {
			b.x.reqBody, b.x.reqComplete = b.buf.Bytes(), b.eof && !b.over
			return
		}
		b.x.body, b.x.complete = b.buf.Bytes(), b.eof && !b.over
		b.done()
	})
	return err
}

func (p *tapProxy) record(x *exchange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exchanges = append(p.exchanges, x)
}

// close stops the proxy (so that a restarted server can have its address back) and returns
// what it recorded.
func (p *tapProxy) close() []*exchange {
	p.once.Do(func() {
		_ = p.srv.Close()
		<-p.done
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.exchanges
	p.exchanges = nil
	return out
}

// The validator: the document as served, and a router over it.
var oaCheck struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error

	mu        sync.Mutex
	checked   int
	routes    map[string]bool
	entries   int
	entrySchm *openapi3.Schema
}

func oaValidator() (*openapi3.T, routers.Router, error) {
	oaCheck.once.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
		if err != nil {
			oaCheck.err = fmt.Errorf("api/openapi.json does not load: %w", err)
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			oaCheck.err = fmt.Errorf("api/openapi.json is not a valid OpenAPI document: %w", err)
			return
		}
		if len(doc.Servers) == 0 {
			oaCheck.err = errors.New("api/openapi.json names no server")
			return
		}
		r, err := legacyrouter.NewRouter(doc)
		if err != nil {
			oaCheck.err = err
			return
		}
		oaCheck.doc, oaCheck.router = doc, r
		oaCheck.routes = map[string]bool{}
		if s := doc.Components.Schemas["LedgerEntry"]; s != nil {
			oaCheck.entrySchm = s.Value
		}
		// Media types the document names that kin-openapi has no decoder for.
		openapi3filter.RegisterBodyDecoder("application/scim+json", openapi3filter.JSONBodyDecoder)
		openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	})
	return oaCheck.doc, oaCheck.router, oaCheck.err
}

// checkExchanges validates what a server answered; it returns one line per mismatch, grouped.
func checkExchanges(xs []*exchange) []string {
	_, router, err := oaValidator()
	if err != nil {
		return []string{err.Error()}
	}
	found := map[string]int{}
	for _, x := range xs {
		for _, problem := range checkExchange(router, x) {
			found[problem]++
		}
	}
	out := make([]string, 0, len(found))
	for p, n := range found {
		if n > 1 {
			p += fmt.Sprintf(" (%d times)", n)
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

var idInPath = regexp.MustCompile(`/(req|grt|tok|ses)_[A-Za-z0-9_-]+`)

func checkExchange(router routers.Router, x *exchange) []string {
	ctx := context.Background()
	// Routes are matched on the path: the request goes to the document's server, since the
	// test servers listen on random ports.
	req, err := http.NewRequest(x.method, strings.TrimRight(oaCheck.doc.Servers[0].URL, "/")+x.uri, bytes.NewReader(x.reqBody))
	if err != nil {
		return []string{fmt.Sprintf("%s %s: %v", x.method, x.uri, err)}
	}
	req.Header = x.reqHeader.Clone()
	where := x.method + " " + idInPath.ReplaceAllString(strings.SplitN(x.uri, "?", 2)[0], "/$1_…")
	route, params, err := router.FindRoute(req)
	if err != nil {
		// The document says an unknown method or path answers 404 or 405 with the Error body.
		if x.status == http.StatusNotFound || x.status == http.StatusMethodNotAllowed {
			return checkErrorBody(where, x)
		}
		return []string{fmt.Sprintf("%s → %d: the route is not in api/openapi.json (%v)", where, x.status, err)}
	}
	where = x.method + " " + route.Path
	oaCheck.mu.Lock()
	oaCheck.checked++
	oaCheck.routes[where] = true
	oaCheck.mu.Unlock()

	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: !x.complete,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			h := in.RequestValidationInput.Request.Header
			if strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
				return nil
			}
			if c, err := in.RequestValidationInput.Request.Cookie("rampart_session"); err == nil && c.Value != "" && in.SecuritySchemeName == "bearerAuth" {
				return nil
			}
			return errors.New("no bearer credential")
		}}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	var problems []string
	if x.status < 400 {
		// The server accepted it, so the document must accept it too.
		ropts := *opts
		ropts.ExcludeRequestBody = !x.reqComplete
		ropts.RejectWhenRequestBodyNotSpecified = true
		rin := *in
		rin.Options = &ropts
		if x.reqHadBody && route.Operation.RequestBody == nil {
			problems = append(problems, fmt.Sprintf("%s → %d: the server read a request body the document does not declare (Content-Type %q)", where, x.status, x.reqHeader.Get("Content-Type")))
		}
		// kin-openapi reads a boolean query parameter with strconv.ParseBool (1, t, TRUE…); the
		// document's boolean is the words true and false, which is what generated clients send.
		for _, pr := range append(route.PathItem.Parameters, route.Operation.Parameters...) {
			if pr.Value == nil || pr.Value.In != "query" || pr.Value.Schema == nil || !pr.Value.Schema.Value.Type.Is("boolean") {
				continue
			}
			for _, v := range req.URL.Query()[pr.Value.Name] {
				if v != "true" && v != "false" {
					problems = append(problems, fmt.Sprintf("%s → %d: the server accepted a request the document refuses: query parameter %q is a boolean, not %q", where, x.status, pr.Value.Name, v))
				}
			}
		}
		if err := openapi3filter.ValidateRequest(ctx, &rin); err != nil {
			for _, e := range flatten(err) {
				problems = append(problems, fmt.Sprintf("%s → %d: the server accepted a request the document refuses: %s", where, x.status, e))
			}
		}
	}
	rv := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.status, Header: x.header, Options: opts}
	if mt, _, _ := mime.ParseMediaType(x.header.Get("Content-Type")); mt == "application/x-ndjson" && x.complete {
		// JSON lines: the document's schema describes one line (kin-openapi reads one value).
		problems = append(problems, checkLines(where, x, route)...)
		o := *opts
		o.ExcludeResponseBody = true
		rv.Options = &o
	}
	rv.SetBodyBytes(x.body)
	if err := openapi3filter.ValidateResponse(ctx, rv); err != nil {
		for _, e := range flatten(err) {
			problems = append(problems, fmt.Sprintf("%s → %d: %s", where, x.status, e))
		}
	}
	return problems
}

// checkLines validates each line of a JSON-lines answer against its media type's schema.
func checkLines(where string, x *exchange, route *routers.Route) []string {
	r := route.Operation.Responses.Status(x.status)
	if r == nil || r.Value == nil || r.Value.Content.Get("application/x-ndjson") == nil {
		return nil // the status itself is checked by ValidateResponse
	}
	schema := r.Value.Content.Get("application/x-ndjson").Schema
	var problems []string
	for i, line := range bytes.Split(bytes.TrimSuffix(x.body, []byte("\n")), []byte("\n")) {
		if len(line) == 0 && len(x.body) == 0 {
			break
		}
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			problems = append(problems, fmt.Sprintf("%s → %d: line %d is not JSON: %v", where, x.status, i+1, err))
			continue
		}
		if err := schema.Value.VisitJSON(v, openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
			for _, e := range flatten(err) {
				problems = append(problems, fmt.Sprintf("%s → %d: line %d: %s", where, x.status, i+1, e))
			}
		}
	}
	return problems
}

// checkErrorBody: a 404 or 405 of the catch-all has the Error body.
func checkErrorBody(where string, x *exchange) []string {
	doc, _, _ := oaValidator()
	if !x.complete || doc.Components.Schemas["Error"] == nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(x.body, &v); err != nil {
		return []string{fmt.Sprintf("%s → %d (no route): the body is not JSON: %v", where, x.status, err)}
	}
	if err := doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		return []string{fmt.Sprintf("%s → %d (no route): the body is not an Error: %v", where, x.status, err)}
	}
	return nil
}

// flatten turns kin-openapi's multi-errors into one line each, with the field.
func flatten(err error) []string {
	var me openapi3.MultiError
	if errors.As(err, &me) {
		var out []string
		for _, e := range me {
			out = append(out, flatten(e)...)
		}
		return out
	}
	var re *openapi3filter.ResponseError
	if errors.As(err, &re) && re.Err != nil {
		var inner openapi3.MultiError
		if errors.As(re.Err, &inner) {
			var out []string
			for _, e := range inner {
				for _, f := range flatten(e) {
					out = append(out, re.Reason+": "+f)
				}
			}
			return out
		}
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		return []string{fmt.Sprintf("field %s: %s (value %s)", "/"+strings.Join(se.JSONPointer(), "/"), se.Reason, short(se.Value))}
	}
	return []string{strings.ReplaceAll(err.Error(), "\n", " ")}
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}

// checkLedgerEntry validates one entry against the LedgerEntry schema.
func checkLedgerEntry(entry []byte) []string {
	if _, _, err := oaValidator(); err != nil {
		return []string{err.Error()}
	}
	if oaCheck.entrySchm == nil {
		return []string{"api/openapi.json has no LedgerEntry schema"}
	}
	var v any
	if err := json.Unmarshal(entry, &v); err != nil {
		return []string{err.Error()}
	}
	oaCheck.mu.Lock()
	oaCheck.entries++
	oaCheck.mu.Unlock()
	if err := oaCheck.entrySchm.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		return flatten(err)
	}
	return nil
}

// reportOpenAPI prints what the run validated.
func reportOpenAPI(w io.Writer) {
	oaCheck.mu.Lock()
	defer oaCheck.mu.Unlock()
	fmt.Fprintf(w, "openapi: %d exchanges on %d documented operations and %d ledger entries validated against api/openapi.json (kin-openapi)\n",
		oaCheck.checked, len(oaCheck.routes), oaCheck.entries)
	if oaCheck.doc == nil || oaCheck.checked == 0 {
		return
	}
	// Not a failure (some routes need a real identity provider or SCIM client), but worth
	// knowing: what no end-to-end exchange reached.
	var unseen []string
	for path, item := range oaCheck.doc.Paths.Map() {
		for method := range item.Operations() {
			if !oaCheck.routes[method+" "+path] {
				unseen = append(unseen, method+" "+path)
			}
		}
	}
	sort.Strings(unseen)
	if len(unseen) > 0 {
		fmt.Fprintf(w, "openapi: no end-to-end exchange reached %d operations: %s\n", len(unseen), strings.Join(unseen, ", "))
	}
}

// The validator finds what it is there to find (a test of the test): answers that do not match,
// routes that are not documented, requests the server accepted that the document refuses.
func TestOpenAPITapFindsMismatches(t *testing.T) {
	_, router, err := oaValidator()
	if err != nil {
		t.Fatal(err)
	}
	bearer := http.Header{"Authorization": {"Bearer rps_x"}}
	json200 := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}
	for _, tc := range []struct {
		name string
		x    exchange
		says string // in a problem; "" for none
	}{
		{"a whoami that matches", exchange{method: "GET", uri: "/v1/whoami", reqHeader: bearer, status: 200, header: json200, complete: true,
			body: []byte(`{"subject":"alice","kind":"user","token_id":"","groups":[],"admin":false,"auditor":false}`)}, ""},
		{"a whoami without its subject", exchange{method: "GET", uri: "/v1/whoami", reqHeader: bearer, status: 200, header: json200, complete: true,
			body: []byte(`{"kind":"user","token_id":"","groups":[],"admin":false,"auditor":false}`)}, `property "subject" is missing`},
		{"a status the document does not list", exchange{method: "GET", uri: "/v1/whoami", reqHeader: bearer, status: 418, header: json200, complete: true,
			body: []byte(`{}`)}, "418"},
		{"a route the document does not have", exchange{method: "GET", uri: "/v1/nowhere", reqHeader: bearer, status: 200, header: json200, complete: true,
			body: []byte(`{}`)}, "not in api/openapi.json"},
		{"?all=1 accepted", exchange{method: "GET", uri: "/v1/grants?all=1", reqHeader: bearer, status: 200, header: json200, complete: true,
			body: []byte(`{"grants":[]}`)}, `the server accepted a request the document refuses`},
		{"a token-less call accepted", exchange{method: "GET", uri: "/v1/grants", reqHeader: http.Header{}, status: 200, header: json200, complete: true,
			body: []byte(`{"grants":[]}`)}, `the server accepted a request the document refuses`},
		{"a body where none is declared", exchange{method: "GET", uri: "/v1/grants", reqHeader: bearer, reqHadBody: true, status: 200, header: json200, complete: true,
			body: []byte(`{"grants":[]}`)}, "a request body the document does not declare"},
		{"a JSON line that is not a ledger entry", exchange{method: "GET", uri: "/v1/audit/entries", reqHeader: bearer, status: 200, complete: true,
			header: http.Header{"Content-Type": {"application/x-ndjson"}, "Cache-Control": {"no-store"}, "X-Rampart-Entries": {"1"}},
			body:   []byte(`{"class_uid":1}` + "\n")}, "line 1"},
	} {
		problems := checkExchange(router, &tc.x)
		switch {
		case tc.says == "" && len(problems) > 0:
			t.Errorf("%s: %v", tc.name, problems)
		case tc.says != "" && !strings.Contains(strings.Join(problems, "\n"), tc.says):
			t.Errorf("%s: problems %v do not say %q", tc.name, problems, tc.says)
		}
	}
}
