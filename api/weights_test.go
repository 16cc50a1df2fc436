package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"strconv"
	"testing"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/vault"
)

// weightsRig is a dev control plane where alice holds the writer role on frontier-7 and has
// stored one version.
func weightsRig(t *testing.T) (*rig, *api.Client, []byte) {
	t.Helper()
	r := newRig(t, true)
	ctx := context.Background()
	alice := r.client("alice")
	c, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-writer-frontier-7", Reason: "store checkpoint", Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "dave"} {
		if _, err := r.client(u).Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
			t.Fatal(err)
		}
	}
	plain := make([]byte, 3<<20+5)
	_, _ = rand.Read(plain)
	if _, err := alice.PutWeights(ctx, "frontier-7", bytes.NewReader(plain), int64(len(plain))); err != nil {
		t.Fatal(err)
	}
	return r, alice, plain
}

func TestWeightsHTTPEdges(t *testing.T) {
	r, alice, plain := weightsRig(t)
	ctx := context.Background()
	tok := alice.Token

	// A media type with parameters is still octet-stream; JSON is not.
	if code, m := r.raw(http.MethodPut, "/v1/weights/small", tok, "application/octet-stream; charset=binary", []byte("x")); code != http.StatusForbidden {
		t.Fatalf("octet-stream with a parameter: %d %v (want 403: no grant on weights/small, but past the media type)", code, m)
	}
	if code, m := r.raw(http.MethodPut, "/v1/weights/frontier-7", tok, "application/json", []byte("{}")); code != http.StatusUnsupportedMediaType {
		t.Fatalf("json upload: %d %v", code, m)
	}

	// HEAD must not decrypt the object or count as a read.
	before := r.ledgerSize()
	req, _ := http.NewRequest(http.MethodHead, r.srv.URL+"/v1/weights/frontier-7", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Fatalf("HEAD: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if r.ledgerSize() != before {
		t.Fatal("a HEAD was recorded")
	}

	// A wrong method names every method the path has.
	if code, _ := r.raw(http.MethodPost, "/v1/weights/frontier-7", tok, "application/json", []byte("{}")); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST on an object: %d", code)
	}

	// A public key that is not a usable X25519 key is the caller's mistake: 400.
	for _, pk := range [][]byte{make([]byte, 32), make([]byte, 31)} {
		if _, err := alice.ReleaseKey(ctx, "frontier-7", 0, pk); !api.IsStatus(err, http.StatusBadRequest) {
			t.Errorf("key release to %x: %v, want 400", pk, err)
		}
	}

	// The ciphertext stream is sized, not cached, and recorded as a read of ciphertext.
	before = r.ledgerSize()
	req, _ = http.NewRequest(http.MethodGet, r.srv.URL+"/v1/weights/frontier-7/segments", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	want := vault.CiphertextSize(int64(len(plain)), vault.DefaultSegmentSize)
	if resp.StatusCode != 200 || n != want || resp.Header.Get("Content-Length") != strconv.FormatInt(want, 10) || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("segments: %d, %d bytes (want %d), headers %v", resp.StatusCode, n, want, resp.Header)
	}
	if r.ledgerSize() != before+1 {
		t.Fatalf("the ciphertext read was not recorded (ledger %d → %d)", before, r.ledgerSize())
	}

	// Retire: unknown key 404, the current key 409, and neither is recorded.
	erin := r.client("erin") // (issuing its token is a ledger entry)
	before = r.ledgerSize()
	if err := erin.RetireVaultKey(ctx, "local-0000000000000000"); !api.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("retire of an unknown key: %v", err)
	}
	objs, err := alice.ListWeights(ctx)
	if err != nil || len(objs) != 1 {
		t.Fatalf("list: %v %v", objs, err)
	}
	if err := erin.RetireVaultKey(ctx, objs[0].KeyID); !api.IsStatus(err, http.StatusConflict) {
		t.Fatalf("retire of the current key: %v", err)
	}
	if r.ledgerSize() != before {
		t.Fatal("refused retirements were recorded")
	}
}
