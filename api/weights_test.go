package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
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
	if got := r.codesSince(before, "weights.", "vault."); len(got) != 0 {
		t.Fatalf("a HEAD was recorded: %v", got)
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
	if got := r.codesSince(before, "weights.", "vault."); len(got) != 1 || got[0] != "weights.read" {
		t.Fatalf("the ciphertext read was not recorded once: weights and vault entries since %d: %v", before, got)
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
	if got := r.codesSince(before, "weights.", "vault."); len(got) != 0 {
		t.Fatalf("refused retirements were recorded: %v", got)
	}
}

// slowReader yields n bytes in chunks, pausing between them.
type slowReader struct {
	n     int
	chunk int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	k := min(len(p), s.chunk, s.n)
	for i := range p[:k] {
		p[i] = byte(s.n + i)
	}
	s.n -= k
	return k, nil
}

// Transfers that outlast the server's whole-request timeouts complete while they make progress
// (a 10 GB checkpoint takes minutes); the timeouts become idle timeouts for them.
func TestSlowTransfersOutliveRequestTimeouts(t *testing.T) {
	defer api.SetTransferIdle(time.Second)()
	r, alice, _ := weightsRig(t)
	slow := httptest.NewUnstartedServer(r.in.Handler())
	slow.Config.ReadTimeout, slow.Config.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond
	// (Kept-alive connections stay open between the calls below: with IdleTimeout zero the read
	// timeout would apply, and a call sent just as it closes one would see no answer.)
	slow.Config.IdleTimeout = time.Minute
	slow.Start()
	defer slow.Close()
	c := api.NewClient(slow.URL, alice.Token)
	ctx := context.Background()
	const size = 40 << 10
	// 2 s of upload, a chunk every 100 ms: four times the server's read timeout.
	if _, err := c.PutWeights(ctx, "frontier-7", &slowReader{n: size, chunk: 2 << 10, pause: 100 * time.Millisecond}, size); err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	// A download read slowly by the client.
	pr, pw := io.Pipe()
	go func() {
		_, err := c.GetWeights(ctx, "frontier-7", 0, pw)
		pw.CloseWithError(err)
	}()
	got := 0
	buf := make([]byte, 2<<10)
	for {
		n, err := pr.Read(buf)
		got += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("slow download after %d bytes: %v", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != size {
		t.Fatalf("slow download: %d bytes, want %d", got, size)
	}

	// Verify and rekey answer only at the end of their work over the whole object: a blob store
	// that takes a second to read the 40 KiB version makes each outlast the write timeout.
	r.in.Weights.Blobs = &slowBlobs{Store: r.in.Weights.Blobs}
	if res, err := c.VerifyWeights(ctx, "frontier-7", 0); err != nil || !res.OK {
		t.Fatalf("slow verify: %+v %v", res, err)
	}
	if done, err := c.RekeyWeights(ctx, "frontier-7", 2); err != nil || len(done) != 1 {
		t.Fatalf("slow rekey: %+v %v", done, err)
	}
}

// slowBlobs is the server's real blob store, whose data streams yield 4 KiB every 100 ms.
type slowBlobs struct{ blob.Store }

func (s *slowBlobs) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	rc, info, err := s.Store.Get(ctx, key)
	if err != nil || !strings.HasSuffix(key, "/data") {
		return rc, info, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&slowReadOf{r: rc}, rc}, info, nil
}

type slowReadOf struct{ r io.Reader }

func (s *slowReadOf) Read(p []byte) (int, error) {
	time.Sleep(100 * time.Millisecond)
	return s.r.Read(p[:min(len(p), 4<<10)])
}

// codesSince returns the event codes, in order, of the ledger entries appended at or after seq
// whose code starts with one of prefixes. Tests assert on the entries of the code under test, not
// on the ledger's size: on a busy machine the server's own background work (token issue for the
// client that reads the ledger, sweeps) may append other entries meanwhile.
func (r *rig) codesSince(seq uint64, prefixes ...string) []string {
	r.t.Helper()
	r.ledgerSize() // sync
	var out []string
	if err := r.client("erin").Entries(context.Background(), seq, 100000, func(_ uint64, b []byte) error {
		var m struct {
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		for _, p := range prefixes {
			if strings.HasPrefix(m.Metadata.EventCode, p) {
				out = append(out, m.Metadata.EventCode)
				break
			}
		}
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// ledgerEntries returns the ledger's entries with the given event code, decoded.
func (r *rig) ledgerEntries(code string) []map[string]any {
	r.t.Helper()
	var out []map[string]any
	erin := r.client("erin")
	if err := erin.Entries(context.Background(), 0, 100000, func(_ uint64, b []byte) error {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		if m["metadata"].(map[string]any)["event_code"] == code {
			out = append(out, m)
		}
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// DELETE /v1/weights/{name} needs delete, not write: alice, who may store versions, cannot
// delete them (403, naming the action to request, recorded); with the deleter role she can.
func TestWeightsDeleteNeedsDeleteAction(t *testing.T) {
	r, alice, _ := weightsRig(t)
	ctx := context.Background()
	for _, path := range []string{"/v1/weights/frontier-7", "/v1/weights/frontier-7?version=1"} {
		code, m := r.raw(http.MethodDelete, path, alice.Token, "", nil)
		if code != http.StatusForbidden || !strings.Contains(errMsg(m), "--action delete") {
			t.Fatalf("DELETE %s by a writer: %d %v", path, code, m)
		}
	}
	if objs, err := alice.ListWeights(ctx); err != nil || len(objs) != 1 || objs[0].State != "ready" {
		t.Fatalf("after refused deletes: %+v %v", objs, err)
	}
	refusals := r.ledgerEntries("weights.denied")
	if len(refusals) == 0 || refusals[0]["unmapped"].(map[string]any)["action"] != "delete" {
		t.Fatalf("refusal entries: %v", refusals)
	}

	c, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-deleter-frontier-7", Reason: "prune checkpoint 1", Duration: "30m"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "dave"} {
		if _, err := r.client(u).Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
			t.Fatal(err)
		}
	}
	gone, err := alice.DeleteWeights(ctx, "frontier-7", 0)
	if err != nil || len(gone) != 1 {
		t.Fatalf("delete with the deleter role: %v %v", gone, err)
	}
	if dels := r.ledgerEntries("weights.delete"); len(dels) != 1 || dels[0]["actor"].(map[string]any)["user"].(map[string]any)["name"] != "alice" {
		t.Fatalf("delete entries: %v", dels)
	}
}
