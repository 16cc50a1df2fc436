package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"rampart.dev/rampart/secrets"
	"rampart.dev/rampart/vault"
)

// secretsErr maps secrets-store errors to API errors. None of them holds a value.
func secretsErr(err error) error {
	var d *secrets.Denied
	switch {
	case errors.As(err, &d), errors.Is(err, secrets.ErrLeaseEnded):
		return errForbidden("%s", err.Error())
	case errors.Is(err, secrets.ErrInvalid):
		return errInvalid("%s", err.Error())
	case errors.Is(err, secrets.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, secrets.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, secrets.ErrUnavailable), errors.Is(err, vault.ErrKey):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error()}
	case errors.Is(err, secrets.ErrCorrupt):
		return &Error{Status: http.StatusInternalServerError, Code: CodeCorrupt, Message: err.Error()}
	}
	return err
}

// secretRoutes are the routes whose path ends in a secret name.
var secretRoutes = []string{"/v1/secrets/", "/v1/secret-versions/"}

// secretPaths answers a secret route whose name is not one before the mux sees it: the mux
// would otherwise answer a path with a '.' or '..' segment or a '//' with a redirect to the
// cleaned path, that is, to another secret. A name is one path segment, each of its '/'
// written %2F: a path with more segments is no route (404), and says how to write the name;
// an invalid name in one segment is 400, with what is wrong with it.
func (s *Server) secretPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, prefix := range secretRoutes {
			name, ok := strings.CutPrefix(r.URL.Path, prefix)
			if !ok {
				continue
			}
			nameErr := secrets.CheckName(name)
			if raw, _ := strings.CutPrefix(r.URL.EscapedPath(), prefix); strings.Contains(raw, "/") {
				msg := fmt.Sprintf("no route %s %s: a secret name is one path segment, each '/' in it written %%2F (%s%s)", r.Method, r.URL.EscapedPath(), prefix, url.PathEscape(name))
				if nameErr != nil {
					msg += "; and " + nameErr.Error()
				}
				s.fail(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: msg})
				return
			}
			if nameErr != nil {
				s.fail(w, r, errInvalid("%v", nameErr))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) secretsOr404() error {
	if s.secrets == nil {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server has no secrets store: it needs the vault's keyring (vault section of the server configuration)"}
	}
	return nil
}

func (s *Server) secretName(r *http.Request) (string, error) {
	if err := s.secretsOr404(); err != nil {
		return "", err
	}
	name := r.PathValue("name")
	if err := secrets.CheckName(name); err != nil {
		return "", errInvalid("%v", err)
	}
	return name, nil
}

// writeSecret writes a read's answer and zeroes what it owns of the value.
func writeSecret(w http.ResponseWriter, sec *secrets.Secret) {
	defer sec.Wipe()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(sec)
	defer clear(buf.Bytes())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// listSecrets is GET /v1/secrets: the newest version of each secret the caller may read or
// write (all of them for admins and auditors), without values.
func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.secretsOr404(); err != nil {
		return err
	}
	list, err := s.secrets.List(r.Context(), c.Principal, c.admin() || c.auditor())
	if err != nil {
		return secretsErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"secrets": list})
	return nil
}

// getSecret is GET /v1/secrets/{name}[?version=N][&lease_ttl=D]: the value, and a lease
// when lease_ttl is given.
func (s *Server) getSecret(w http.ResponseWriter, r *http.Request, c caller) error {
	name, err := s.secretName(r)
	if err != nil {
		return err
	}
	version, err := queryVersion(r)
	if err != nil {
		return err
	}
	var ttl time.Duration
	if v := r.URL.Query().Get("lease_ttl"); v != "" {
		if ttl, err = parseDuration("lease_ttl", v); err != nil {
			return err
		}
	}
	sec, err := s.secrets.Get(r.Context(), c.Principal, name, secrets.GetOptions{Version: version, LeaseTTL: ttl})
	if err != nil {
		return secretsErr(err)
	}
	writeSecret(w, &sec)
	return nil
}

// PutSecretBody is the body of PUT /v1/secrets/{name}: the value, base64 (standard, with
// padding) in JSON.
type PutSecretBody struct {
	Value []byte `json:"value"`
}

// maxSecretBody bounds a put's body: a 64 KiB value is 87,384 bytes of base64.
const maxSecretBody = 96 << 10

// putSecret is PUT /v1/secrets/{name}: a new version.
func (s *Server) putSecret(w http.ResponseWriter, r *http.Request, c caller) error {
	name, err := s.secretName(r)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupported, Message: fmt.Sprintf("Content-Type %q is not supported; send application/json {\"value\": \"<base64>\"}", ct)}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSecretBody))
	defer clear(raw)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("the body is over %d bytes; a secret's value is at most %d bytes (64 KiB)", maxSecretBody, secrets.MaxValueSize)}
		}
		return bodyError(err)
	}
	var body PutSecretBody
	if err := DecodeJSON(bytes.NewReader(raw), &body); err != nil {
		var e *Error
		if errors.As(err, &e) && strings.Contains(e.Message, "base64") {
			return errInvalid("value must be base64 (standard alphabet, padded): %s", e.Message)
		}
		return err
	}
	defer clear(body.Value)
	v, err := s.secrets.Put(r.Context(), c.Principal, name, body.Value)
	if err != nil {
		return secretsErr(err)
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// deleteSecret is DELETE /v1/secrets/{name}: every version, for good.
func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, c caller) error {
	name, err := s.secretName(r)
	if err != nil {
		return err
	}
	n, err := s.secrets.Delete(r.Context(), c.Principal, name)
	if err != nil {
		return secretsErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "deleted": n})
	return nil
}

// secretVersions is GET /v1/secret-versions/{name}: every version, deleted ones included.
func (s *Server) secretVersions(w http.ResponseWriter, r *http.Request, c caller) error {
	name, err := s.secretName(r)
	if err != nil {
		return err
	}
	list, err := s.secrets.Versions(r.Context(), c.Principal, name, c.admin() || c.auditor())
	if err != nil {
		return secretsErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": list})
	return nil
}

// renewSecretLease is POST /v1/secret-leases/{id}/renew: the caller's lease, renewed, with the
// value read again.
func (s *Server) renewSecretLease(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.secretsOr404(); err != nil {
		return err
	}
	sec, err := s.secrets.RenewLease(r.Context(), c.Principal, r.PathValue("id"))
	if err != nil {
		return secretsErr(err)
	}
	writeSecret(w, &sec)
	return nil
}

// revokeSecretLease is POST /v1/secret-leases/{id}/revoke: its holder or an admin ends it.
func (s *Server) revokeSecretLease(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.secretsOr404(); err != nil {
		return err
	}
	l, err := s.secrets.RevokeLease(r.Context(), c.Principal, r.PathValue("id"), c.admin())
	if err != nil {
		return secretsErr(err)
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}
