package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/secrets"
	"rampart.dev/rampart/weights"
)

// Secret routes take the name as one path segment. Paths with more segments are no route,
// and never a redirect to their cleaned form (another secret); names that are not names are
// refused; bodies are bounded.
func TestSecretsHTTPEdges(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	alice := r.client("alice")
	tok := alice.Token
	if _, err := alice.PutSecret(ctx, "research/tracking-key", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"/v1/secrets/research/../research%2Ftracking-key":  http.StatusNotFound,
		"/v1/secrets/x/./research%2Ftracking-key":          http.StatusNotFound,
		"/v1/secrets//research%2Ftracking-key":             http.StatusNotFound,
		"/v1/secrets/research/tracking-key":                http.StatusNotFound,
		"/v1/secret-versions/a/../research%2Ftracking-key": http.StatusNotFound,
		"/v1/secrets/..": http.StatusBadRequest,
		"/v1/secrets/research%2F..%2Ftracking-key":     http.StatusBadRequest,
		"/v1/secrets/research%2Ftracking-key%0A":       http.StatusBadRequest,
		"/v1/secrets/research%2FTracking-key":          http.StatusBadRequest,
		"/v1/secrets/research%2Ftracking%E2%80%8B-key": http.StatusBadRequest,
		"/v1/secrets/": http.StatusBadRequest,
	} {
		code, m := r.raw(http.MethodGet, path, tok, "", nil)
		if code != want || !strings.Contains(errMsg(m), "secret name") {
			t.Errorf("GET %s: %d %v; want %d naming the secret name rule", path, code, m, want)
		}
	}
	if code, _ := r.raw(http.MethodGet, "/v1/secrets/research%2Ftracking-key", "", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous read: %d", code)
	}

	// Bodies: JSON only, the value 1 byte to 64 KiB, the body at most 96 KiB.
	put := func(body []byte, ct string) (int, string) {
		code, m := r.raw(http.MethodPut, "/v1/secrets/research%2Ftracking-key", tok, ct, body)
		return code, errMsg(m)
	}
	big := base64.StdEncoding.EncodeToString(make([]byte, secrets.MaxValueSize+1))
	for _, c := range []struct {
		body, ct string
		want     int
		says     string
	}{
		{`{"value":"` + big + `"}`, "application/json", 400, "the limit is 65536"},
		{`{"value":"` + big + big + `"}`, "application/json", 413, "at most 65536"},
		{`{"value":""}`, "application/json", 400, "empty"},
		{`{"value":"djE=","extra":1}`, "application/json", 400, "extra"},
		{`{"value":"not base64!"}`, "application/json", 400, "value must be base64"},
		{`djE=`, "text/plain", 415, "application/json"},
	} {
		if code, msg := put([]byte(c.body), c.ct); code != c.want || !strings.Contains(msg, c.says) {
			t.Errorf("put %.40q (%s): %d %q; want %d saying %q", c.body, c.ct, code, msg, c.want, c.says)
		}
	}

	// The client checks a name before it sends anything.
	if _, err := alice.GetSecret(ctx, "research/../x", 0, 0); !errors.Is(err, secrets.ErrInvalid) {
		t.Fatalf("client with a path trick: %v", err)
	}
}

// The vault's rotation re-wraps the secrets' data keys, and a key a secret still uses is not
// retired (before, rotation and retirement knew only the weights).
func TestVaultRotationCoversSecrets(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	alice, erin := r.client("alice"), r.client("erin")
	v, err := alice.PutSecret(ctx, "research/tracking-key", []byte("rotate me"))
	if err != nil {
		t.Fatal(err)
	}
	// A new key-encryption key made current behind the vault's back (as a half-done rotation
	// leaves it): the old key is still used by the secret.
	if _, err := r.in.Weights.Keys.(weights.KeyRing).Rotate(); err != nil {
		t.Fatal(err)
	}
	code, m := r.raw(http.MethodPost, "/v1/vault/retire", erin.Token, "application/json", []byte(`{"key_id":"`+v.KeyID+`"}`))
	if code != http.StatusConflict || !strings.Contains(errMsg(m), "secrets/research/tracking-key version 1 still uses key") {
		t.Fatalf("retire the key the secret still uses: %d %v", code, m)
	}
	code, m = r.raw(http.MethodPost, "/v1/vault/rotate", erin.Token, "", nil)
	if code != http.StatusOK || m["rewrapped"].(float64) != 1 {
		t.Fatalf("rotate: %d %v", code, m)
	}
	// A key the rotation moved every secret off retires; the secret still reads.
	code, m = r.raw(http.MethodPost, "/v1/vault/retire", erin.Token, "application/json", []byte(`{"key_id":"`+v.KeyID+`"}`))
	if code != http.StatusOK {
		t.Fatalf("retire after the rotation: %d %v", code, m)
	}
	s, err := alice.GetSecret(ctx, "research/tracking-key", 0, 0)
	if err != nil || !bytes.Equal(s.Value, []byte("rotate me")) || s.KeyID == v.KeyID {
		t.Fatalf("read after rotation: %+v %v", s.Version, err)
	}
	_ = api.IsStatus
}
