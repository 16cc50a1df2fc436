package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/strictjson"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// Error is the body of every API error: {"error":{"code":…,"message":…}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`

	maxAge time.Duration // for step_up_required: the challenge's max_age
}

func (e *Error) Error() string { return e.Message }

// Error codes.
const (
	CodeInvalid          = "invalid"
	CodeUnauthenticated  = "unauthenticated"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNoCandidate      = "no_candidate"
	CodeTooLarge         = "too_large"
	CodeUnsupported      = "unsupported_media_type"
	CodeUnavailable      = "unavailable"
	// CodeRateLimited: the caller reached a bound on what one person may make Rampart write
	// (429), such as the pending requests a person may have; the message says how to go on.
	CodeRateLimited = "rate_limited"
	// CodeStepUpRequired: approving needs a recent multi-factor sign-in (401 with an RFC 9470
	// WWW-Authenticate challenge).
	CodeStepUpRequired = "step_up_required"
	// CodeCorrupt: a stored object fails verification (500).
	CodeCorrupt  = "corrupt"
	CodeInternal = "internal"
)

func errInvalid(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

func errForbidden(format string, args ...any) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: fmt.Sprintf(format, args...)}
}

// toError maps domain errors to API errors. Anything unrecognised is a 500 whose details are
// logged, not shown.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	msg := err.Error()
	var su *access.StepUpRequired
	switch {
	case errors.As(err, &su):
		// RFC 9470: the credential is fine, but this needs a fresher multi-factor sign-in.
		return &Error{Status: http.StatusUnauthorized, Code: CodeStepUpRequired, Message: msg, maxAge: su.MaxAge}
	case errors.Is(err, access.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Message: msg}
	case errors.Is(err, access.ErrForbidden):
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: msg}
	case errors.Is(err, access.ErrMissing):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: msg}
	case errors.Is(err, access.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: msg}
	case errors.Is(err, access.ErrLimited):
		return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited, Message: msg}
	case errors.Is(err, access.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: msg}
	case errors.Is(err, identity.ErrUnauthenticated):
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: msg}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error; the server log has the details"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := toError(err)
	if e.Code == CodeInternal {
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	switch {
	case e.Code == CodeStepUpRequired:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="rampart", error="insufficient_user_authentication", error_description="a more recent multi-factor authentication is required", max_age=%d, acr_values="mfa"`,
			int(e.maxAge/time.Second)))
	case e.Status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="rampart"`)
	}
	writeJSON(w, e.Status, map[string]any{"error": e})
}

// decode reads a JSON body into dst strictly: the declared content type, at most MaxBodyBytes,
// no unknown fields, exactly one value. Errors say which field or byte offset was wrong.
func decode(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupported, Message: fmt.Sprintf("Content-Type %q is not supported; send application/json", ct)}
		}
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	return DecodeJSON(body, dst)
}

// decodeOptional accepts an empty body (however it is framed) or a strictly decoded one.
func decodeOptional(w http.ResponseWriter, r *http.Request, dst any) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return bodyError(err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupported, Message: fmt.Sprintf("Content-Type %q is not supported; send application/json", ct)}
		}
	}
	return DecodeJSON(bytes.NewReader(raw), dst)
}

// DecodeJSON decodes exactly one JSON value from body into dst, refusing unknown fields,
// trailing data, and what encoding/json would otherwise let through by rewriting it or picking
// for the caller (internal/strictjson): invalid UTF-8, duplicate names, and strings that break
// the text rule. Errors are *Error values with a 4xx status and a message naming the field.
func DecodeJSON(body io.Reader, dst any) error {
	dec := json.NewDecoder(body)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errInvalid("request body has data after the JSON value; send exactly one object")
	}
	if err := strictjson.Check(raw); err != nil {
		return errInvalid("%v", err)
	}
	strict := json.NewDecoder(bytes.NewReader(raw))
	strict.DisallowUnknownFields()
	if err := strict.Decode(dst); err != nil {
		return bodyError(err)
	}
	// encoding/json matches field names without regard to case; the API does not.
	return exactKeys(raw, reflect.TypeOf(dst), "")
}

// exactKeys checks that every object key in raw is spelled exactly as the json tag of the field
// it decoded into.
func exactKeys(raw json.RawMessage, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil || m == nil {
			return nil // a null or a type error already reported by the strict decoder
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			if name != "-" && f.IsExported() {
				fields[name] = f.Type
			}
		}
		for k, v := range m {
			ft, ok := fields[k]
			if !ok {
				return errInvalid("unknown field %q%s (field names are case-sensitive); check the API reference at /v1/openapi.json", k, at(path))
			}
			if err := exactKeys(v, ft, path+"."+k); err != nil {
				return err
			}
		}
	case reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil
		}
		for i, it := range items {
			if err := exactKeys(it, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " at " + strings.TrimPrefix(path, ".")
}

func bodyError(err error) *Error {
	var maxErr *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("request body is over the %d byte limit", MaxBodyBytes)}
	case errors.Is(err, io.EOF):
		return errInvalid("request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errInvalid("request body is not valid JSON: it ends in the middle of a value")
	case errors.As(err, &syn):
		return errInvalid("request body is not valid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return errInvalid("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errInvalid("unknown field %s; check the API reference at /v1/openapi.json", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return errInvalid("request body: %v", err)
}

// parseDuration reads an optional duration field.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errInvalid("field %q: %q is not a positive duration; write it like 30m, 2h or 1h30m", field, s)
	}
	return d, nil
}

// logRequests writes one structured log line per request.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: 200}
		// Deferred, so a stream the handler cut off (panic(http.ErrAbortHandler): a download
		// whose grant ended or whose data failed to verify) is logged too, as aborted.
		defer func() {
			p := recover()
			if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && r.URL.Path != "/metrics" {
				attrs := []any{"method", r.Method, "path", r.URL.Path, "status", sw.status, "duration_ms", float64(time.Since(start).Microseconds()) / 1000, "remote", r.RemoteAddr}
				if p != nil {
					attrs = append(attrs, "aborted", true)
				}
				log.Info("http", attrs...)
			}
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushes of streamed downloads).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
