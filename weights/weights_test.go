package weights_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
	"rampart.dev/rampart/weights"
)

// env is a vault over a real SQLite (or PostgreSQL) store, the demo policy, the decision
// engine, a ledger and a filesystem (or Azure) blob store.
type env struct {
	t      testing.TB
	ctx    context.Context
	st     *sqlstore.DB
	clock  *clocktest.Clock
	svc    *access.Service
	ix     *authz.Index
	ledger *audit.Ledger
	keys   *vault.LocalProvider
	blobs  blob.Store
	dir    string
	v      *weights.Service
}

// envOptions chooses the stores of an env: nil means SQLite in the test's directory, and a
// filesystem blob store there.
type envOptions struct {
	meta  func(t testing.TB) *sqlstore.DB
	blobs func(t testing.TB) blob.Store
	// policy replaces the demo policy.
	policy fs.FS
}

func newEnv(t testing.TB) *env { return newEnvWith(t, envOptions{}) }

func newEnvWith(t testing.TB, opts envOptions) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clock: clocktest.New(time.Now().Truncate(time.Second)), dir: t.TempDir()}
	var err error
	if opts.meta != nil {
		e.st = opts.meta(t)
	} else if e.st, err = sqlite.Open(e.ctx, filepath.Join(e.dir, "r.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	polFS := demo.Policy()
	if opts.policy != nil {
		polFS = opts.policy
	}
	pol, err := policy.Load(polFS)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, _ := audit.GenerateKey("rampart-test")
	if e.ledger, err = audit.Open(e.ctx, audit.Options{Store: e.st, SigningKey: skey}); err != nil {
		t.Fatal(err)
	}
	e.svc = access.New(e.st, pol, access.Options{Now: e.clock.Now})
	e.ix = authz.New(e.st, pol, authz.Options{Now: e.clock.Now, MaxStaleness: time.Hour})
	if err := e.ix.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.svc.OnGrantChange(e.ix.Apply)
	if e.keys, err = vault.InitLocalKeyring(filepath.Join(e.dir, "keyring.json")); err != nil {
		t.Fatal(err)
	}
	if opts.blobs != nil {
		e.blobs = opts.blobs(t)
	} else if e.blobs, err = blob.NewFS(filepath.Join(e.dir, "blobs")); err != nil {
		t.Fatal(err)
	}
	e.v = e.service(e.blobs)
	return e
}

// service is a weights service of e's vault over blobs (as another replica would be).
func (e *env) service(blobs blob.Store) *weights.Service {
	return &weights.Service{Keys: e.keys, Blobs: blobs, Meta: e.st, Decide: e.ix, Sign: e.ledger.SignNote, OpenNote: e.ledger.OpenNote, Now: e.clock.Now,
		SegmentSize: vault.MinSegmentSize,
		Record: func(ctx context.Context, ev audit.Event) error {
			return e.st.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, ev); return err })
		}}
}

func person(name string) identity.Principal {
	return identity.Principal{Subject: name, Kind: identity.KindUser}
}

// grant runs the demo workflow: who requests role for dur, bob (owner) and dave (security) approve.
func (e *env) grant(who, role string, dur time.Duration) access.Grant {
	e.t.Helper()
	c, err := e.svc.Create(e.ctx, access.CreateInput{Requester: who, Role: role, Reason: "eval run 4411", Duration: dur})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, approver := range []string{"bob", "dave"} {
		if _, err = e.svc.Review(e.ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: approver, Decision: access.Approve}); err != nil {
			e.t.Fatal(err)
		}
	}
	gs, err := e.st.ListGrants(e.ctx, access.GrantFilter{Subject: who})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, g := range gs {
		if g.RequestID == c.Request.ID {
			return g
		}
	}
	e.t.Fatalf("no grant for %s from request %s", who, c.Request.ID)
	return access.Grant{}
}

func (e *env) codes() []string {
	e.t.Helper()
	recs, err := e.st.Entries(e.ctx, 0, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		var ev struct {
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(r.Data, &ev)
		out = append(out, ev.Metadata.EventCode)
	}
	return out
}

func (e *env) lastEntry(code string) map[string]any {
	e.t.Helper()
	recs, _ := e.st.Entries(e.ctx, 0, 100000)
	for i := len(recs) - 1; i >= 0; i-- {
		var m map[string]any
		_ = json.Unmarshal(recs[i].Data, &m)
		if m["metadata"].(map[string]any)["event_code"] == code {
			return m
		}
	}
	e.t.Fatalf("no %s entry", code)
	return nil
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestPutGetUnderGrants(t *testing.T) {
	e := newEnv(t)
	plain := random(5*vault.MinSegmentSize + 123)
	alice := person("alice")

	// No grant: refused, recorded, nothing stored.
	_, err := e.v.Put(e.ctx, alice, "frontier-7", bytes.NewReader(plain))
	var denied *weights.Denied
	if !errors.As(err, &denied) || !strings.Contains(err.Error(), "rampart request create --resource weights/frontier-7 --action write") {
		t.Fatalf("put without a grant: %v", err)
	}
	if list, _ := e.v.List(e.ctx, alice, true); len(list) != 0 {
		t.Fatalf("objects after a refused put: %+v", list)
	}

	e.grant("alice", "weights-writer-frontier-7", 2*time.Hour)
	o, err := e.v.Put(e.ctx, alice, "frontier-7", bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	if o.Version != 1 || o.Size != int64(len(plain)) || o.State != weights.StateReady || o.GrantID == "" {
		t.Fatalf("stored: %+v", o)
	}
	text, err := e.ledger.OpenNote([]byte(o.Manifest))
	if err != nil || !strings.Contains(text, "object weights/frontier-7\nversion 1\n") || !strings.Contains(text, "sha256 "+o.SHA256) {
		t.Fatalf("manifest: %q %v", text, err)
	}
	put := e.lastEntry("weights.put")
	if put["unmapped"].(map[string]any)["bytes"].(float64) != float64(len(plain)) {
		t.Fatalf("put entry: %v", put)
	}
	// The blob store holds ciphertext only.
	raw, _ := os.ReadFile(filepath.Join(e.dir, "blobs", "objects", "frontier-7", "1", "data#"))
	if len(raw) == 0 || bytes.Contains(raw, plain[:64]) {
		t.Fatal("the stored data is not ciphertext")
	}

	dl, err := e.v.Get(e.ctx, alice, "frontier-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(dl)
	if err != nil || !bytes.Equal(got, plain) || !dl.Complete() {
		t.Fatalf("get: %v", err)
	}
	if err := dl.Close(); err != nil {
		t.Fatal(err)
	}
	read := e.lastEntry("weights.read")["unmapped"].(map[string]any)
	if read["bytes"].(float64) != float64(len(plain)) || read["complete"] != true {
		t.Fatalf("read entry: %v", read)
	}

	// bob has no grant: he cannot read, and is recorded trying.
	if _, err := e.v.Get(e.ctx, person("bob"), "frontier-7", 0); !errors.As(err, &denied) {
		t.Fatalf("bob: %v", err)
	}
	if codes := e.codes(); !contains(codes, "weights.denied") {
		t.Fatalf("ledger: %v", codes)
	}

	// A second version; verify both against their manifests.
	if o2, err := e.v.Put(e.ctx, alice, "frontier-7", bytes.NewReader(plain[:10])); err != nil || o2.Version != 2 {
		t.Fatalf("second version: %+v %v", o2, err)
	}
	for _, v := range []uint64{1, 2} {
		res, err := e.v.Verify(e.ctx, alice, "frontier-7", v)
		if err != nil || !res.OK {
			t.Fatalf("verify %d: %+v %v", v, res, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A grant that expires during a download stops it: what was returned is a verified prefix, the
// reader fails, and the ledger records an incomplete read.
func TestGrantExpiresMidDownload(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	plain := random(8 * vault.MinSegmentSize)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	dl, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2*vault.MinSegmentSize)
	if _, err := io.ReadFull(dl, buf); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour + time.Second)
	rest, err := io.ReadAll(dl)
	if !errors.Is(err, weights.ErrGrantEnded) {
		t.Fatalf("after expiry: %v", err)
	}
	if !bytes.HasPrefix(plain, append(buf, rest...)) || dl.Complete() {
		t.Fatal("an unverified or complete object came back after the grant ended")
	}
	_ = dl.Close()
	read := e.lastEntry("weights.read")
	if read["unmapped"].(map[string]any)["complete"] != false || read["severity"] != "Medium" {
		t.Fatalf("incomplete read entry: %v", read)
	}
	if _, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0); err == nil {
		t.Fatal("a new download started after the grant ended")
	}
}

// Ciphertext edited in the blob store never decrypts; verify says why.
func TestTamperedBlobRefused(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	plain := random(3*vault.MinSegmentSize + 9)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, "blobs", "objects", "frontier-7", "1", "data#")
	raw, _ := os.ReadFile(path)
	raw[vault.MinSegmentSize+TagOffset] ^= 1
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	dl, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(dl)
	dl.Close()
	if !errors.Is(err, vault.ErrCorrupt) || len(got) > vault.MinSegmentSize {
		t.Fatalf("tampered object: %d bytes, %v", len(got), err)
	}
	res, err := e.v.Verify(e.ctx, person("alice"), "frontier-7", 0)
	if err != nil || res.OK || !strings.Contains(res.Problem, "segment 1") {
		t.Fatalf("verify a tampered object: %+v %v", res, err)
	}
}

// TagOffset points into the second segment's ciphertext.
const TagOffset = 100

// Rotation re-wraps every data key under a new KEK without touching the data; the old KEK can
// then be retired, but not while an object still uses it.
func TestRotateAndRetire(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	plain := random(2*vault.MinSegmentSize + 1)
	o, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	dataPath := filepath.Join(e.dir, "blobs", "objects", "frontier-7", "1", "data#")
	before, _ := os.ReadFile(dataPath)
	if err := e.v.Retire(e.ctx, "erin", o.KeyID); err == nil {
		t.Fatal("retired the key in use (and current)")
	}
	kid, n, err := e.v.Rotate(e.ctx, "erin")
	if err != nil || n != 1 || kid == o.KeyID {
		t.Fatalf("rotate: %q %d %v", kid, n, err)
	}
	after, _ := os.ReadFile(dataPath)
	if !bytes.Equal(before, after) {
		t.Fatal("rotation rewrote the data")
	}
	if err := e.v.Retire(e.ctx, "erin", o.KeyID); err != nil {
		t.Fatal(err)
	}
	dl, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(dl)
	dl.Close()
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("after rotation and retirement: %v", err)
	}
	// The signed manifest still verifies: rotation changes how the data key is wrapped, not the
	// object.
	if res, err := e.v.Verify(e.ctx, person("alice"), "frontier-7", 0); err != nil || !res.OK {
		t.Fatalf("verify after rotation: %+v, %v", res, err)
	}
	// Retiring a key twice, or one that never existed, is refused without a ledger entry.
	entries := len(e.codes())
	if err := e.v.Retire(e.ctx, "erin", o.KeyID); err == nil || !strings.Contains(err.Error(), "already retired") {
		t.Fatalf("second retire: %v", err)
	}
	if err := e.v.Retire(e.ctx, "erin", "local-00000000deadbeef"); err == nil || !errors.Is(err, weights.ErrNotFound) {
		t.Fatalf("retire of an unknown key: %v", err)
	}
	if len(e.codes()) != entries {
		t.Fatal("refused retirements were recorded")
	}
	if codes := e.codes(); !contains(codes, "vault.rotate") || !contains(codes, "vault.retire") {
		t.Fatalf("ledger: %v", codes)
	}
}

// A workload with a grant gets the data key sealed to its ephemeral key and decrypts locally;
// without a grant it gets nothing.
func TestKeyReleaseToWorkload(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	plain := random(3 * vault.MinSegmentSize)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pod := identity.Principal{Subject: "k8s:prod/ml/trainer", Kind: identity.KindWorkload}
	if _, err := e.v.ReleaseKey(e.ctx, pod, "frontier-7", 0, priv.PublicKey().Bytes()); err == nil {
		t.Fatal("a key was released without a grant")
	}
	// alice requests read for her trainer workload.
	c, err := e.svc.Create(e.ctx, access.CreateInput{Requester: "alice", Beneficiary: pod.Subject, Role: "weights-reader-frontier-7", Reason: "training run", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"bob", "dave"} {
		if _, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: a, Decision: access.Approve}); err != nil {
			t.Fatal(err)
		}
	}
	kr, err := e.v.ReleaseKey(e.ctx, pod, "frontier-7", 0, priv.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	h, dek, err := weights.OpenKeyRelease(kr, priv)
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := e.v.Segments(e.ctx, pod, "frontier-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rd, err := vault.NewReader(rc, h, dek)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rd)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("local decryption: %v", err)
	}
	// Another key cannot open the release.
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	if _, _, err := weights.OpenKeyRelease(kr, other); err == nil {
		t.Fatal("a release opened with another key")
	}
	if rel := e.lastEntry("weights.key_release"); rel["actor"].(map[string]any)["user"].(map[string]any)["name"] != pod.Subject {
		t.Fatalf("release entry: %v", rel)
	}
}

func TestDeleteAndNames(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	e.grant("alice", "weights-deleter-frontier-7", time.Hour)
	gone, err := e.v.Delete(e.ctx, person("alice"), "frontier-7", 0)
	if err != nil || len(gone) != 1 {
		t.Fatalf("delete: %v %v", gone, err)
	}
	if _, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0); !errors.Is(err, weights.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "blobs", "objects", "frontier-7", "1", "data#")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ciphertext left behind: %v", err)
	}
	for _, bad := range []string{"", "../x", "Frontier", "a/b", "-x", "x-", strings.Repeat("a", 129)} {
		if _, err := e.v.Put(e.ctx, person("alice"), bad, strings.NewReader("x")); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

// Deleting every version is one transaction: when the ledger cannot be written no version is
// deleted, and of two deletions racing, one deletes every version and the other is told they
// are gone, so each version has exactly one ledger entry.
func TestDeleteEveryVersionIsAtomic(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	e.grant("alice", "weights-deleter-frontier-7", time.Hour)
	for _, s := range []string{"v1", "v2", "v3"} {
		if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", strings.NewReader(s)); err != nil {
			t.Fatal(err)
		}
	}
	ready := func() int {
		t.Helper()
		n := 0
		for v := uint64(1); v <= 3; v++ {
			if dl, err := e.v.Get(e.ctx, person("alice"), "frontier-7", v); err == nil {
				dl.Close()
				n++
			}
		}
		return n
	}
	deletes := func() int { return strings.Count(strings.Join(e.codes(), " "), "weights.delete") }
	// The ledger takes the first entry and fails at the second: a delete that went version by
	// version would leave version 1 deleted.
	size, err := e.st.LedgerSize(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.SQL().Exec(fmt.Sprintf(`CREATE TRIGGER fail_ledger BEFORE INSERT ON ledger WHEN NEW.seq > %d BEGIN SELECT RAISE(ABORT, 'injected ledger failure'); END`, size)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.Delete(e.ctx, person("alice"), "frontier-7", 0); !errors.Is(err, weights.ErrUnavailable) {
		t.Fatalf("delete with the ledger failing: %v", err)
	}
	if _, err := e.st.SQL().Exec(`DROP TRIGGER fail_ledger`); err != nil {
		t.Fatal(err)
	}
	if n := ready(); n != 3 || deletes() != 0 {
		t.Fatalf("after a failed delete: %d versions readable, %d delete entries; want 3 and 0", n, deletes())
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = e.v.Delete(e.ctx, person("alice"), "frontier-7", 0) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("racing deletes: %v, %v; want exactly one to succeed", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, weights.ErrNotFound) {
			t.Fatalf("the losing delete: %v", err)
		}
	}
	if n := ready(); n != 0 || deletes() != 3 {
		t.Fatalf("after the race: %d versions readable, %d delete entries; want 0 and 3", n, deletes())
	}
}
