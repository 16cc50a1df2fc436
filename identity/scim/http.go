package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

func writeSCIM(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", MediaType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// fail answers err in the SCIM error schema: an *Error as it says, a missing resource 404, and
// anything else (the store, the ledger) 503, with the details in the log.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, ErrNotFound):
		e = &Error{Status: http.StatusNotFound, Detail: "no such resource: " + r.URL.Path}
	default:
		s.d.Logger.Error("scim request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusServiceUnavailable, Detail: "the store or the ledger is unavailable; nothing was changed unless this says otherwise: " + err.Error()}
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rampart-scim"`)
	}
	writeSCIM(w, e.Status, e.body())
}

// guard authenticates the directory: Authorization: Bearer <the configured secret>. It answers
// the request itself when the secret is missing or wrong, and writes nothing to the ledger
// (anonymous callers must not be able to grow it).
func (s *Service) guard(w http.ResponseWriter, r *http.Request) bool {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !s.authorized(strings.TrimSpace(secret)) {
		s.d.Logger.Warn("scim request refused: no or wrong bearer secret", "remote", r.RemoteAddr, "path", r.URL.Path)
		s.fail(w, r, &Error{Status: http.StatusUnauthorized, Detail: "SCIM requests need Authorization: Bearer <the secret configured in scim.token_file or scim.token_env>"})
		return false
	}
	return true
}

// readObject reads a JSON object body (application/scim+json or application/json).
func readObject(w http.ResponseWriter, r *http.Request) ([]byte, map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != MediaType && mt != "application/json") {
			return nil, nil, &Error{Status: http.StatusBadRequest, Type: "invalidSyntax", Detail: fmt.Sprintf("Content-Type %q: send %s or application/json", ct, MediaType)}
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, nil, &Error{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("the body is over %d bytes or could not be read", maxBody)}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, nil, &Error{Status: http.StatusBadRequest, Type: "invalidSyntax", Detail: "the body must be one JSON object"}
	}
	if dec.More() {
		return nil, nil, &Error{Status: http.StatusBadRequest, Type: "invalidSyntax", Detail: "data after the JSON object"}
	}
	return raw, obj, nil
}

// listQuery is a list request's filter, page and projection.
type listQuery struct {
	filter           Filter
	start, count     int
	attrs, excluding []string
}

func (s *Service) parseList(r *http.Request) (listQuery, error) {
	q := r.URL.Query()
	l := listQuery{start: 1, count: s.cfg.MaxResults}
	if f := q.Get("filter"); f != "" {
		var err error
		if l.filter, err = ParseFilter(f); err != nil {
			return l, &Error{Status: http.StatusBadRequest, Type: "invalidFilter", Detail: fmt.Sprintf("filter %q: %v", f, err)}
		}
	}
	for name, dst := range map[string]*int{"startIndex": &l.start, "count": &l.count} {
		if v := q.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return l, &Error{Status: http.StatusBadRequest, Type: "invalidValue", Detail: fmt.Sprintf("%s must be a non-negative whole number, not %q", name, v)}
			}
			*dst = n
		}
	}
	if l.start < 1 {
		l.start = 1 // RFC 7644 section 3.4.2.4: less than 1 is 1
	}
	l.count = min(l.count, s.cfg.MaxResults)
	l.attrs, l.excluding = splitList(q.Get("attributes")), splitList(q.Get("excludedAttributes"))
	return l, nil
}

func splitList(v string) []string {
	var out []string
	for a := range strings.SplitSeq(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			top, _, _ := strings.Cut(a, ".")
			out = append(out, strings.ToLower(top))
		}
	}
	return out
}

// project keeps the attributes asked for (and always id, schemas and meta), and drops the
// excluded ones.
func project(res map[string]any, attrs, excluding []string) map[string]any {
	if len(attrs) == 0 && len(excluding) == 0 {
		return res
	}
	out := map[string]any{}
	for k, v := range res {
		kl := strings.ToLower(k)
		always := kl == "id" || kl == "schemas" || kl == "meta"
		if !always && ((len(attrs) > 0 && !slices.Contains(attrs, kl)) || slices.Contains(excluding, kl)) {
			continue
		}
		out[k] = v
	}
	return out
}

// respondList filters, pages and projects resources into a ListResponse.
func respondList(w http.ResponseWriter, all []map[string]any, l listQuery) {
	var matched []map[string]any
	for _, res := range all {
		if l.filter == nil || l.filter.Match(res) {
			matched = append(matched, res)
		}
	}
	page := []map[string]any{}
	for i := l.start - 1; i < len(matched) && len(page) < l.count; i++ {
		page = append(page, project(matched[i], l.attrs, l.excluding))
	}
	writeSCIM(w, http.StatusOK, map[string]any{"schemas": []string{SchemaListResponse}, "totalResults": len(matched),
		"startIndex": l.start, "itemsPerPage": len(page), "Resources": page})
}
