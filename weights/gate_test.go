package weights_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/weights"
)

// A short download (three segments, read in a few milliseconds) whose grant ends between two
// segments stops before the next one (invariant 2). Before, the grant was re-checked only once
// 250 ms had passed since the last check, so a short download was checked only at its start.
func TestGrantEndsBetweenSegmentsOfShortDownload(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	plain := random(3 * vault.MinSegmentSize)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour - 10*time.Millisecond)
	dl, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, vault.MinSegmentSize)
	if _, err := io.ReadFull(dl, first); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(20 * time.Millisecond) // the grant ends between the first and second segment
	rest, err := io.ReadAll(dl)
	if !errors.Is(err, weights.ErrGrantEnded) || len(rest) != 0 || dl.Complete() {
		t.Fatalf("after the grant ended: %d more bytes, %v", len(rest), err)
	}
	_ = dl.Close()
	if read := e.lastEntry("weights.read")["unmapped"].(map[string]any); read["complete"] != false || read["bytes"].(float64) != vault.MinSegmentSize {
		t.Fatalf("read entry: %v", read)
	}
}

// A grant revoked just before the last segment: the last segment is never released, through
// Read or through the io.WriterTo path, so the client never sees the end of the object.
func TestRevokedBeforeLastSegment(t *testing.T) {
	for _, via := range []string{"Read", "Copy"} {
		e := newEnv(t)
		g := e.grant("alice", "weights-writer-frontier-7", time.Hour)
		plain := random(3*vault.MinSegmentSize + 100)
		if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(plain)); err != nil {
			t.Fatal(err)
		}
		dl, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 3*vault.MinSegmentSize)
		if _, err := io.ReadFull(dl, head); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Revoke(e.ctx, g.ID, "dave", "leaked laptop"); err != nil {
			t.Fatal(err)
		}
		var rest bytes.Buffer
		if via == "Read" {
			_, err = rest.ReadFrom(struct{ io.Reader }{dl})
		} else {
			_, err = io.Copy(&rest, dl)
		}
		if !errors.Is(err, weights.ErrGrantEnded) || rest.Len() != 0 || dl.Complete() || !bytes.Equal(head, plain[:len(head)]) {
			t.Fatalf("%s: the last segment after the revocation: %d bytes, %v", via, rest.Len(), err)
		}
		_ = dl.Close()
	}
}

// The ciphertext stream for workloads is gated the same way: nothing of a segment after the
// grant ended is passed on.
func TestCiphertextStreamStopsAtSegment(t *testing.T) {
	e := newEnv(t)
	g := e.grant("alice", "weights-writer-frontier-7", time.Hour)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(random(3*vault.MinSegmentSize))); err != nil {
		t.Fatal(err)
	}
	rc, _, err := e.v.Segments(e.ctx, person("alice"), "frontier-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	seg := make([]byte, vault.MinSegmentSize+vault.TagSize)
	if _, err := io.ReadFull(rc, seg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Revoke(e.ctx, g.ID, "dave", "leaked laptop"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rc)
	if !errors.Is(err, weights.ErrGrantEnded) || len(rest) != 0 {
		t.Fatalf("ciphertext after the revocation: %d bytes, %v", len(rest), err)
	}
	_ = rc.Close()
	if read := e.lastEntry("weights.read")["unmapped"].(map[string]any); read["complete"] != false || read["ciphertext"] != true {
		t.Fatalf("read entry: %v", read)
	}
}

// An upload whose grant is revoked while it streams stops at the next segment boundary and
// stores nothing.
func TestUploadStopsAtSegmentAfterRevocation(t *testing.T) {
	e := newEnv(t)
	g := e.grant("alice", "weights-writer-frontier-7", time.Hour)
	body := &revokeAfter{r: bytes.NewReader(random(4 * vault.MinSegmentSize)), n: vault.MinSegmentSize, revoke: func() {
		if _, err := e.svc.Revoke(e.ctx, g.ID, "dave", "leaked laptop"); err != nil {
			t.Error(err)
		}
	}}
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", body); !errors.Is(err, weights.ErrGrantEnded) {
		t.Fatalf("upload after the revocation: %v", err)
	}
	if body.read > 2*vault.MinSegmentSize {
		t.Fatalf("the upload read %d bytes after the revocation", body.read)
	}
	if list, _ := e.v.List(e.ctx, person("erin"), true); len(list) != 0 {
		t.Fatalf("stored: %+v", list)
	}
}

// revokeAfter calls revoke once n bytes have been read.
type revokeAfter struct {
	r      io.Reader
	n      int
	read   int
	revoke func()
}

func (r *revokeAfter) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	before := r.read
	r.read += n
	if before < r.n && r.read >= r.n {
		r.revoke()
	}
	return n, err
}
