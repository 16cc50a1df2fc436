package main_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/internal/demo"
	rserver "rampart.dev/rampart/server"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
)

// pausingBlobs is the server's real blob store; the data stream of an object stops once the
// server has read `at` bytes of it and waits for the test (which revokes the grant there) to let
// it go on. It only fixes an interleaving: every byte still comes from the real store. It is
// installed before the server serves (so the handlers' reads of the field are ordered after the
// write) and pauses nothing until armed.
type pausingBlobs struct {
	blob.Store
	armed   atomic.Bool
	at      int64
	reached chan struct{}
	resume  chan struct{}
}

func (p *pausingBlobs) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	rc, info, err := p.Store.Get(ctx, key)
	if err != nil || !p.armed.Load() || !strings.HasSuffix(key, "/data") {
		return rc, info, err
	}
	return &pausingReader{ReadCloser: rc, p: p}, info, nil
}

type pausingReader struct {
	io.ReadCloser
	p    *pausingBlobs
	n    int64
	once sync.Once
}

func (r *pausingReader) Read(b []byte) (int, error) {
	if r.n >= r.p.at {
		r.once.Do(func() { close(r.p.reached); <-r.p.resume })
	} else if int64(len(b)) > r.p.at-r.n {
		b = b[:r.p.at-r.n]
	}
	n, err := r.ReadCloser.Read(b)
	r.n += int64(n)
	return n, err
}

// `rampart weights get` of an object whose grant is revoked just before its last segment: the
// server never sends that segment nor the verification trailer, the CLI exits non-zero, and
// nothing is written: no output file, no partial file beside it (invariant 2).
func TestWeightsGetRevokedBeforeLastSegment(t *testing.T) {
	ctx := context.Background()
	in, err := rserver.Start(ctx, rserver.Config{DataDir: t.TempDir(), PolicyFS: demo.Policy(), Dev: true, Store: rserver.StoreConfig{Driver: "sqlite"}},
		rserver.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// Pause once the server has read the first byte of the last segment (the reader's
	// look-ahead, while the third segment is released); the last segment is read after.
	seg := int64(vault.DefaultSegmentSize) + vault.TagSize
	p := &pausingBlobs{Store: in.Weights.Blobs, at: 3*seg + 1, reached: make(chan struct{}), resume: make(chan struct{})}
	in.Weights.Blobs = p
	srv := httptest.NewServer(in.Handler())
	t.Cleanup(func() { srv.Close(); in.Close() })
	c, err := in.Access.Create(ctx, access.CreateInput{Requester: "alice", Role: "weights-writer-frontier-7", Reason: "eval run 4411", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "dave"} {
		if _, err := in.Access.Review(ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: u, Decision: access.Approve}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := in.Access.Get(ctx, c.Request.ID, "alice")
	if err != nil || v.Grant == nil {
		t.Fatalf("no grant: %+v %v", v, err)
	}
	secret, _, err := in.Tokens.Issue(ctx, "alice", "user", "test", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	plain := make([]byte, 3*vault.DefaultSegmentSize+12345) // four segments
	_, _ = rand.Read(plain)
	if _, err := api.NewClient(srv.URL, secret).PutWeights(ctx, "frontier-7", strings.NewReader(string(plain)), int64(len(plain))); err != nil {
		t.Fatal(err)
	}
	p.armed.Store(true)

	dir := t.TempDir()
	out := filepath.Join(dir, "model.safetensors")
	cmd := exec.Command(binary, "--addr", strings.TrimPrefix(srv.URL, "http://"), "weights", "get", "frontier-7", "-o", out)
	cmd.Env = append(os.Environ(), "RAMPART_CONFIG_DIR="+t.TempDir(), "RAMPART_TOKEN="+secret)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.reached:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the download never reached the last segment")
	}
	if _, err := in.Access.Revoke(ctx, v.Grant.ID, "dave", "laptop reported stolen"); err != nil {
		t.Fatal(err)
	}
	close(p.resume)
	err = cmd.Wait()
	if err == nil {
		t.Fatalf("weights get succeeded after the grant was revoked before the last segment")
	}
	if !strings.Contains(stderr.String(), "nothing was written to "+out) {
		t.Fatalf("stderr: %s", stderr.String())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("files left in the output directory: %v", entries)
	}
}
