package weights_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/store/postgres"
	"rampart.dev/rampart/store/sqlstore"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
	"rampart.dev/rampart/vault/blob/azure"
	"rampart.dev/rampart/weights"
)

// blobStores are the stores every rekey test runs on: a local directory, and Azure Blob
// Storage through Azurite (started once for the calling test; each env gets its own container).
func blobStores(t *testing.T) map[string]func(testing.TB) blob.Store {
	url, account, key := testenv.Azurite(t)
	var n atomic.Int64
	return map[string]func(testing.TB) blob.Store{
		"fs": nil,
		"azure": func(t testing.TB) blob.Store {
			s, err := azure.New(context.Background(), azure.Config{AccountURL: url, AccountName: account, AccountKey: key,
				Container: fmt.Sprintf("rekey-%d", n.Add(1)), CreateContainer: true, BlockSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

// released is what a workload kept from a key release: the header and the data key.
type released struct {
	h   *vault.Header
	dek []byte
}

// rekeyFixture stores four segments as frontier-7 version 1 (alice writes), and releases the
// data key to trainer, a workload with a reader grant.
func rekeyFixture(t *testing.T, e *env) ([]byte, released) {
	t.Helper()
	e.grant("alice", "weights-writer-frontier-7", 4*time.Hour)
	plain := random(3*vault.MinSegmentSize + 77)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	c, err := e.svc.Create(e.ctx, access.CreateInput{Requester: "alice", Beneficiary: trainer.Subject, Role: "weights-reader-frontier-7", Reason: "training run", Duration: 4 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"bob", "dave"} {
		if _, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: a, Decision: access.Approve}); err != nil {
			t.Fatal(err)
		}
	}
	return plain, release(t, e.v, e)
}

var trainer = identity.Principal{Subject: "k8s:prod/ml/trainer", Kind: identity.KindWorkload}

func release(t *testing.T, v *weights.Service, e *env) released {
	t.Helper()
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	kr, err := v.ReleaseKey(e.ctx, trainer, "frontier-7", 0, priv.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	h, dek, err := weights.OpenKeyRelease(kr, priv)
	if err != nil {
		t.Fatal(err)
	}
	return released{h, dek}
}

// opens reports whether the key released before decrypts the ciphertext stored at key.
func (r released) opens(t *testing.T, s blob.Store, key string) bool {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rd, err := vault.NewReader(rc, r.h, r.dek)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rd)
	return err == nil
}

// stored lists the data blobs stored for frontier-7 version 1, at every location.
func stored(t *testing.T, s blob.Store) []string {
	t.Helper()
	list, err := s.List(context.Background(), "objects/frontier-7/1/")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range list {
		if strings.HasSuffix(b.Key, "/data") {
			out = append(out, b.Key)
		}
	}
	return out
}

// reads checks that v serves frontier-7 version 1 as plain, verified against its manifest.
func reads(t *testing.T, e *env, v *weights.Service, plain []byte) {
	t.Helper()
	dl, err := v.Get(e.ctx, person("alice"), "frontier-7", 1)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	got, err := io.ReadAll(dl)
	dl.Close()
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	if res, err := v.Verify(e.ctx, person("alice"), "frontier-7", 1); err != nil || !res.OK {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

// After a rekey the data key released before decrypts nothing that is stored; the version
// keeps its number, content and signed manifest, a new key release opens it, and the ledger
// records the rekey. A grant to read cannot rekey. On both blob stores.
func TestRekeyRetiresReleasedDataKey(t *testing.T) {
	for name, blobs := range blobStores(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnvWith(t, envOptions{blobs: blobs})
			plain, old := rekeyFixture(t, e)
			before := stored(t, e.blobs)
			if len(before) != 1 || !old.opens(t, e.blobs, before[0]) {
				t.Fatalf("before: %v", before)
			}
			o1, _ := e.st.Object(e.ctx, "frontier-7", 1)

			if _, err := e.v.Rekey(e.ctx, trainer, "frontier-7", 0); !isDenied(err, weights.ActionWrite) {
				t.Fatalf("rekey by a reader: %v", err)
			}
			done, err := e.v.Rekey(e.ctx, person("alice"), "frontier-7", 0)
			if err != nil || len(done) != 1 || done[0].Version != 1 {
				t.Fatalf("rekey: %+v %v", done, err)
			}
			after := stored(t, e.blobs)
			if len(after) != 1 || after[0] == before[0] {
				t.Fatalf("stored after the rekey: %v (before %v)", after, before)
			}
			if old.opens(t, e.blobs, after[0]) {
				t.Fatal("the data key released before still decrypts what is stored")
			}
			// The ciphertext stream a workload reads is the new one, which its old key cannot open.
			rc, _, err := e.v.Segments(e.ctx, trainer, "frontier-7", 0)
			if err != nil {
				t.Fatal(err)
			}
			rd, _ := vault.NewReader(rc, old.h, old.dek)
			if _, err := io.Copy(io.Discard, rd); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("old key on the new segments: %v", err)
			}
			rc.Close()
			reads(t, e, e.v, plain)
			o2, _ := e.st.Object(e.ctx, "frontier-7", 1)
			if o2.Manifest != o1.Manifest || o2.SHA256 != o1.SHA256 || o2.Leftover != "" {
				t.Fatalf("metadata after the rekey: %+v", o2)
			}
			fresh := release(t, e.v, e)
			if !fresh.opens(t, e.blobs, after[0]) || bytes.Equal(fresh.dek, old.dek) {
				t.Fatal("a new key release does not open the re-encrypted version, or is the old key")
			}
			ev := e.lastEntry("weights.rekey")
			if d := ev["unmapped"].(map[string]any); d["version"].(float64) != 1 || d["grant_id"] == "" || !strings.Contains(ev["message"].(string), "alice re-encrypted weights/frontier-7 version 1") {
				t.Fatalf("rekey entry: %v", ev)
			}
		})
	}
}

func isDenied(err error, action string) bool {
	var d *weights.Denied
	return errors.As(err, &d) && d.Action == action
}

// faults is the real blob store and metadata store of an env, with one failure injected where
// a rekey is: when trip returns true for an operation, that operation fails. In crash mode
// everything after it fails too, as if the process had died there (nothing cleans up).
type faults struct {
	blob.Store
	weights.Meta
	trip  func(op, key string) bool
	crash bool
	dead  atomic.Bool
}

var errInjected = errors.New("injected failure")

func (f *faults) check(op, key string) error {
	if f.dead.Load() {
		return fmt.Errorf("%w (the process is gone)", errInjected)
	}
	if f.trip(op, key) {
		if f.crash {
			f.dead.Store(true)
		}
		return fmt.Errorf("%w: %s %s", errInjected, op, key)
	}
	return nil
}

func (f *faults) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := f.check("put", key); err != nil {
		// Fail mid-stream: after the store has taken a segment's worth of the object.
		n, _ := f.Store.Put(ctx, key, &failAfter{r: r, n: vault.MinSegmentSize, err: err})
		return n, err
	}
	return f.Store.Put(ctx, key, r)
}

func (f *faults) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	if err := f.check("get", key); err != nil {
		return nil, blob.Info{}, err
	}
	return f.Store.Get(ctx, key)
}

func (f *faults) Delete(ctx context.Context, key string) error {
	if err := f.check("delete", key); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

func (f *faults) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	if err := f.check("list", prefix); err != nil {
		return nil, err
	}
	return f.Store.List(ctx, prefix)
}

// RekeyObject can fail before the move commits ("move"), or after ("moved": the commit
// happened but its answer was lost).
func (f *faults) RekeyObject(ctx context.Context, o weights.Object, from string, ev audit.Event) error {
	if err := f.check("move", o.Name); err != nil {
		return err
	}
	if err := f.Meta.RekeyObject(ctx, o, from, ev); err != nil {
		return err
	}
	return f.check("moved", o.Name)
}

func (f *faults) Object(ctx context.Context, name string, version uint64) (weights.Object, error) {
	if err := f.check("object", name); err != nil {
		return weights.Object{}, err
	}
	return f.Meta.Object(ctx, name, version)
}

func (f *faults) ClearLeftover(ctx context.Context, name string, version uint64, leftover string) error {
	if err := f.check("clear", name); err != nil {
		return err
	}
	return f.Meta.ClearLeftover(ctx, name, version, leftover)
}

// failAfter passes n bytes of r on, then fails with err.
type failAfter struct {
	r   io.Reader
	n   int
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}

// A rekey that fails, or whose process dies, at any step leaves the version readable and
// verified: before the metadata moves, under the old data key; after, under the new one. A
// later rekey succeeds and then nothing stored opens with the data key released before. On the
// filesystem and Azure blob stores.
func TestRekeyFailureLeavesReadableVersion(t *testing.T) {
	newBlobs := func(op, key string) bool { return strings.Contains(key, "/rekey-") }
	oldBlobs := func(op, key string) bool { return !strings.Contains(key, "/rekey-") }
	steps := []struct {
		name string
		trip func(op, key string) bool
		// moved: the metadata moved to the new ciphertext before the failure.
		moved bool
	}{
		{"writing the new ciphertext", func(op, key string) bool { return op == "put" && newBlobs(op, key) && strings.HasSuffix(key, "/data") }, false},
		{"reading the new ciphertext back", func(op, key string) bool { return op == "get" && newBlobs(op, key) }, false},
		{"storing the new header", func(op, key string) bool { return op == "put" && strings.HasSuffix(key, "/header") }, false},
		{"moving the metadata", func(op, key string) bool { return op == "move" }, false},
		{"after the metadata moved", func(op, key string) bool { return op == "moved" }, true},
		{"removing the old ciphertext", func(op, key string) bool { return op == "delete" && oldBlobs(op, key) }, true},
		{"recording the old ciphertext removed", func(op, key string) bool { return op == "clear" }, true},
	}
	for storeName, blobs := range blobStores(t) {
		for _, step := range steps {
			for _, crash := range []bool{false, true} {
				mode := "fails"
				if crash {
					mode = "crashes"
				}
				t.Run(storeName+"/"+mode+" "+step.name, func(t *testing.T) {
					e := newEnvWith(t, envOptions{blobs: blobs})
					plain, old := rekeyFixture(t, e)
					f := &faults{Store: e.blobs, Meta: e.st, trip: step.trip, crash: crash}
					broken := e.service(f)
					broken.Meta = f
					done, err := broken.Rekey(e.ctx, person("alice"), "frontier-7", 1)
					switch {
					case step.name == "after the metadata moved" && !crash:
						// The commit's answer was lost, but the rekey looks and finishes.
						if err != nil || len(done) != 1 {
							t.Fatalf("rekey whose commit answer was lost: %v", err)
						}
					case err == nil:
						t.Fatalf("rekey succeeded despite the failure: %+v", done)
					}
					// A fresh process over the same stores: the version reads and verifies.
					v := e.service(e.blobs)
					reads(t, e, v, plain)
					o, _ := e.st.Object(e.ctx, "frontier-7", 1)
					if moved := o.Location != ""; moved != step.moved {
						t.Fatalf("after a failure %s the version is at %q (moved %v, want %v)", step.name, o.Location, moved, step.moved)
					}
					entries := strings.Count(strings.Join(e.codes(), " "), "weights.rekey")
					if (entries == 1) != step.moved || entries > 1 {
						t.Fatalf("%d weights.rekey entries; moved %v", entries, step.moved)
					}
					if !crash && !step.moved {
						// A failure (not a crash) before the move removes what it wrote.
						if s := stored(t, e.blobs); len(s) != 1 || strings.Contains(s[0], "/rekey-") {
							t.Fatalf("blobs left by a failed rekey: %v", s)
						}
					}
					// The next rekey completes, removing what was left of the old ciphertext first.
					if _, err := v.Rekey(e.ctx, person("alice"), "frontier-7", 1); err != nil {
						t.Fatalf("the next rekey: %v", err)
					}
					reads(t, e, v, plain)
					for _, key := range stored(t, e.blobs) {
						if old.opens(t, e.blobs, key) {
							t.Fatalf("%s still opens with the data key released before the rekeys", key)
						}
					}
					if o, _ := e.st.Object(e.ctx, "frontier-7", 1); o.Leftover != "" {
						t.Fatalf("leftover %q after a completed rekey", o.Leftover)
					}
				})
			}
		}
	}
}

// Two replicas rekeying one version at once: one moves it, the other is told it changed and
// removes its copy; the version reads, has one weights.rekey entry, and the old key opens
// nothing. On SQLite and PostgreSQL metadata.
func TestRekeyRace(t *testing.T) {
	metas := map[string]func(testing.TB) *sqlstore.DB{
		"sqlite": nil,
		"postgres": func(t testing.TB) *sqlstore.DB {
			st, err := postgres.Open(context.Background(), testenv.PostgresDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
	for name, meta := range metas {
		t.Run(name, func(t *testing.T) {
			e := newEnvWith(t, envOptions{meta: meta})
			plain, old := rekeyFixture(t, e)
			replicas := []*weights.Service{e.service(e.blobs), e.service(e.blobs)}
			// Both have read the version and streamed their copy before either moves it.
			var streamed sync.WaitGroup
			streamed.Add(len(replicas))
			gate := make(chan struct{})
			errs := make([]error, len(replicas))
			var wg sync.WaitGroup
			for i, v := range replicas {
				v.Blobs = &pauseAtHeader{Store: e.blobs, arrived: &streamed, gate: gate}
				wg.Go(func() { _, errs[i] = v.Rekey(e.ctx, person("alice"), "frontier-7", 1) })
			}
			streamed.Wait()
			close(gate)
			wg.Wait()
			if (errs[0] == nil) == (errs[1] == nil) {
				t.Fatalf("racing rekeys: %v, %v; want exactly one to succeed", errs[0], errs[1])
			}
			for _, err := range errs {
				if err != nil && !errors.Is(err, weights.ErrConflict) {
					t.Fatalf("the losing rekey: %v", err)
				}
			}
			reads(t, e, e.v, plain)
			if n := strings.Count(strings.Join(e.codes(), " "), "weights.rekey"); n != 1 {
				t.Fatalf("%d weights.rekey entries", n)
			}
			if s := stored(t, e.blobs); len(s) != 1 || old.opens(t, e.blobs, s[0]) {
				t.Fatalf("stored after the race: %v", s)
			}
		})
	}
}

// pauseAtHeader holds a rekey before it stores its new header (after its copy is written and
// verified) until the test lets every replica go on.
type pauseAtHeader struct {
	blob.Store
	arrived *sync.WaitGroup
	gate    chan struct{}
	once    sync.Once
}

func (p *pauseAtHeader) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if strings.Contains(key, "/rekey-") && strings.HasSuffix(key, "/header") {
		p.once.Do(p.arrived.Done)
		<-p.gate
	}
	return p.Store.Put(ctx, key, r)
}

// Deleting a rekeyed version removes its blobs at every location, old ciphertext a crashed rekey
// left behind included.
func TestDeleteRemovesEveryLocation(t *testing.T) {
	e := newEnv(t)
	rekeyFixture(t, e)
	f := &faults{Store: e.blobs, Meta: e.st, crash: true, trip: func(op, key string) bool { return op == "delete" }}
	broken := e.service(f)
	broken.Meta = f
	if _, err := broken.Rekey(e.ctx, person("alice"), "frontier-7", 1); err == nil {
		t.Fatal("the rekey did not fail")
	}
	if s := stored(t, e.blobs); len(s) != 2 {
		t.Fatalf("want the old and the new ciphertext stored after the crash: %v", s)
	}
	e.grant("alice", "weights-deleter-frontier-7", time.Hour)
	if _, err := e.v.Delete(e.ctx, person("alice"), "frontier-7", 1); err != nil {
		t.Fatal(err)
	}
	if list, err := e.blobs.List(e.ctx, "objects/frontier-7/"); err != nil || len(list) != 0 {
		t.Fatalf("blobs left after the delete: %v %v", list, err)
	}
}
