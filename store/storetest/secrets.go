package storetest

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/secrets"
	"rampart.dev/rampart/vault"
)

// secretsEnv is the secrets store over the store under test, the demo policy, the decision
// engine (told of every grant change) and a local keyring.
type secretsEnv struct {
	*env
	ix   *authz.Index
	keys *vault.LocalProvider
	sec  *secrets.Service
}

func newSecretsEnv(t *testing.T, h Harness) *secretsEnv {
	e := &secretsEnv{env: newEnv(t, h)}
	e.ix = authz.New(e.store, e.pol, authz.Options{Now: e.clock.Now, MaxStaleness: time.Hour})
	if err := e.ix.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.svc.OnGrantChange(e.ix.Apply)
	var err error
	if e.keys, err = vault.InitLocalKeyring(filepath.Join(t.TempDir(), "keyring.json")); err != nil {
		t.Fatal(err)
	}
	e.sec = e.service(e.store)
	return e
}

func (e *secretsEnv) service(st secrets.Store) *secrets.Service {
	return &secrets.Service{Keys: e.keys, Store: st, Decide: e.ix, Now: e.clock.Now,
		Record: func(ctx context.Context, ev audit.Event) error {
			return e.store.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, ev); return err })
		}}
}

// grantDeploy runs the demo workflow for alice's grant of the registry token role.
func (e *secretsEnv) grantDeploy(dur time.Duration) access.Grant {
	e.t.Helper()
	r := e.create(access.CreateInput{Requester: "alice", Role: "secret-deploy-registry", Reason: "release 7.1", Duration: dur})
	e.mustReview(r.ID, "bob", access.Approve)
	e.mustReview(r.ID, "dave", access.Approve)
	gs, err := e.store.ListGrants(e.ctx, access.GrantFilter{Subject: "alice"})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, g := range gs {
		if g.RequestID == r.ID {
			return g
		}
	}
	e.t.Fatalf("no grant from %s", r.ID)
	return access.Grant{}
}

var alice = identity.Principal{Subject: "alice", Kind: identity.KindUser}

const registry = "deploy/registry-token"

// Issue 16: the secrets store's rows, their ledger entries and every refusal, on each store.
func testSecrets(t *testing.T, h Harness) {
	t.Run("VersionsCommitWithTheLedger", func(t *testing.T) {
		e := newSecretsEnv(t, h)
		e.grantDeploy(time.Hour)
		before := e.ledgerSize()
		for i, val := range []string{"tok-1", "tok-2"} {
			v, err := e.sec.Put(e.ctx, alice, registry, []byte(val))
			if err != nil || v.Version != uint64(i+1) || v.Size != len(val) || v.GrantID == "" {
				t.Fatalf("put %d: %+v %v", i+1, v, err)
			}
		}
		if got := e.ledgerSize() - before; got != 2 {
			t.Fatalf("%d ledger entries for two puts", got)
		}
		// The store takes a version only as the next one.
		stale := secrets.Sealed{Meta: secrets.Version{Name: registry, Version: 2, State: secrets.StateActive}}
		if err := e.store.InsertSecretVersion(e.ctx, stale, audit.Event{Code: "secret.put", Time: e.clock.Now()}); !errors.Is(err, secrets.ErrConflict) {
			t.Fatalf("a second version 2: %v", err)
		}
		if e.ledgerSize()-before != 2 {
			t.Fatal("a refused insert appended to the ledger")
		}
		s, err := e.sec.Get(e.ctx, alice, registry, secrets.GetOptions{})
		if err != nil || string(s.Value) != "tok-2" || s.Version.Version != 2 {
			t.Fatalf("newest: %+v %v", s, err)
		}
		if s, err = e.sec.Get(e.ctx, alice, registry, secrets.GetOptions{Version: 1}); err != nil || string(s.Value) != "tok-1" {
			t.Fatalf("version 1: %q %v", s.Value, err)
		}
		// Rows hold ciphertext, never the value.
		rows, _ := e.store.SecretVersions(e.ctx, "")
		for _, r := range rows {
			if bytes.Contains(r.Ciphertext, []byte("tok-")) {
				t.Fatalf("version %d stored in the clear", r.Meta.Version)
			}
		}
		// Entries name the secret, never the value.
		recs, _ := e.store.Entries(e.ctx, 0, 100000)
		for _, r := range recs {
			if bytes.Contains(r.Data, []byte("tok-")) {
				t.Fatalf("a ledger entry holds the value: %s", r.Data)
			}
		}
		if n, err := e.sec.Delete(e.ctx, alice, registry); n != 2 || err != nil {
			t.Fatalf("delete: %d %v", n, err)
		}
		rows, _ = e.store.SecretVersions(e.ctx, registry)
		for _, r := range rows {
			if r.Meta.State != secrets.StateDeleted || len(r.Ciphertext) != 0 || len(r.WrappedDEK) != 0 {
				t.Fatalf("after delete: %+v", r)
			}
		}
		if _, err := e.sec.Get(e.ctx, alice, registry, secrets.GetOptions{Version: 1}); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("read after delete: %v", err)
		}
		if _, err := e.sec.Delete(e.ctx, alice, registry); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		// A new version after a deletion continues the numbering (its binding is new).
		if v, err := e.sec.Put(e.ctx, alice, registry, []byte("tok-3")); err != nil || v.Version != 3 {
			t.Fatalf("put after delete: %+v %v", v, err)
		}
		if c := e.codes(); count(c, "secret.put") != 3 || count(c, "secret.read") != 2 || count(c, "secret.delete") != 1 {
			t.Fatalf("ledger: %v", c)
		}
	})

	t.Run("NoGrantNoAccess", func(t *testing.T) {
		e := newSecretsEnv(t, h)
		_, err := e.sec.Put(e.ctx, alice, registry, []byte("tok"))
		var denied *secrets.Denied
		if !errors.As(err, &denied) || !strings.Contains(err.Error(), "--resource secrets/deploy/registry-token --action write") {
			t.Fatalf("put without a grant: %v", err)
		}
		if rows, _ := e.store.SecretVersions(e.ctx, ""); len(rows) != 0 {
			t.Fatalf("stored: %+v", rows)
		}
		// A standing binding allows the research secrets.
		if _, err := e.sec.Put(e.ctx, alice, "research/tracking-key", []byte("k")); err != nil {
			t.Fatal(err)
		}
		// A secret outside the catalogue is never allowed.
		if _, err := e.sec.Get(e.ctx, alice, "research/other", secrets.GetOptions{}); !errors.As(err, &denied) || !strings.Contains(err.Error(), "not a resource in the policy catalogue") {
			t.Fatalf("uncatalogued: %v", err)
		}
		if c := e.codes(); count(c, "secret.denied") != 2 {
			t.Fatalf("ledger: %v", c)
		}
	})

	// The read that races a revocation: the grant is revoked after the engine allowed the read
	// and before the value is handed out (while the version is fetched). The read must fail.
	t.Run("ReadRacingRevocationFails", func(t *testing.T) {
		e := newSecretsEnv(t, h)
		g := e.grantDeploy(time.Hour)
		if _, err := e.sec.Put(e.ctx, alice, registry, []byte("tok-race")); err != nil {
			t.Fatal(err)
		}
		racing := e.service(&revokingStore{Store: e.store, revoke: func() {
			if _, err := e.svc.Revoke(e.ctx, g.ID, "dave", "laptop lost"); err != nil {
				t.Error(err)
			}
		}})
		s, err := racing.Get(e.ctx, alice, registry, secrets.GetOptions{})
		var denied *secrets.Denied
		if !errors.As(err, &denied) || s.Value != nil {
			t.Fatalf("a read whose grant was revoked during it: %q, %v", s.Value, err)
		}
		if c := e.codes(); c[len(c)-1] != "secret.denied" {
			t.Fatalf("ledger: %v", c)
		}
	})

	t.Run("Leases", func(t *testing.T) {
		e := newSecretsEnv(t, h)
		g := e.grantDeploy(2 * time.Hour)
		if _, err := e.sec.Put(e.ctx, alice, registry, []byte("tok-lease")); err != nil {
			t.Fatal(err)
		}
		s, err := e.sec.Get(e.ctx, alice, registry, secrets.GetOptions{LeaseTTL: 10 * time.Minute})
		if err != nil || s.Lease == nil || !s.Lease.ExpiresAt.Equal(e.clock.Now().Add(10*time.Minute)) {
			t.Fatalf("read with a lease: %+v %v", s.Lease, err)
		}
		id := s.Lease.ID
		e.clock.Advance(9 * time.Minute)
		r, err := e.sec.RenewLease(e.ctx, alice, id)
		if err != nil || string(r.Value) != "tok-lease" || !r.Lease.ExpiresAt.Equal(e.clock.Now().Add(10*time.Minute)) {
			t.Fatalf("renew: %+v %v", r.Lease, err)
		}
		// Someone else's lease does not exist for them.
		if _, err := e.sec.RenewLease(e.ctx, identity.Principal{Subject: "bob"}, id); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("bob renews alice's lease: %v", err)
		}
		// Expired.
		e.clock.Advance(10 * time.Minute)
		if _, err := e.sec.RenewLease(e.ctx, alice, id); !errors.Is(err, secrets.ErrLeaseEnded) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("renew an expired lease: %v", err)
		}
		// Revoked.
		s, _ = e.sec.Get(e.ctx, alice, registry, secrets.GetOptions{LeaseTTL: time.Hour})
		if _, err := e.sec.RevokeLease(e.ctx, alice, s.Lease.ID, false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sec.RenewLease(e.ctx, alice, s.Lease.ID); !errors.Is(err, secrets.ErrLeaseEnded) || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("renew a revoked lease: %v", err)
		}
		// A lease never outlives its grant, and a grant that ended refuses its lease even
		// when a new grant allows a new read.
		s, _ = e.sec.Get(e.ctx, alice, registry, secrets.GetOptions{LeaseTTL: 24 * time.Hour})
		if !s.Lease.ExpiresAt.Equal(g.ExpiresAt) {
			t.Fatalf("lease until %s, grant until %s", s.Lease.ExpiresAt, g.ExpiresAt)
		}
		if _, err := e.svc.Revoke(e.ctx, g.ID, "dave", "done"); err != nil {
			t.Fatal(err)
		}
		e.grantDeploy(time.Hour)
		if _, err := e.sec.RenewLease(e.ctx, alice, s.Lease.ID); !errors.Is(err, secrets.ErrLeaseEnded) || !strings.Contains(err.Error(), g.ID) {
			t.Fatalf("renew under an ended grant: %v", err)
		}
		if c := e.codes(); count(c, "secret.lease_renew") != 1 || count(c, "secret.lease_revoke") != 1 {
			t.Fatalf("ledger: %v", c)
		}
	})

	// A value moved to another name or version (a database edit) does not decrypt.
	t.Run("MovedCiphertextFails", func(t *testing.T) {
		e := newSecretsEnv(t, h)
		e.grantDeploy(time.Hour)
		for _, v := range []string{"tok-a", "tok-b"} {
			if _, err := e.sec.Put(e.ctx, alice, registry, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.sec.Put(e.ctx, alice, "research/tracking-key", []byte("tok-c")); err != nil {
			t.Fatal(err)
		}
		v1, _ := e.store.SecretVersion(e.ctx, registry, 1)
		other, _ := e.store.SecretVersion(e.ctx, "research/tracking-key", 1)
		for name, swap := range map[string]func(s *secrets.Sealed){
			"version 1 served as 2":    func(s *secrets.Sealed) { s.WrappedDEK, s.Ciphertext = v1.WrappedDEK, v1.Ciphertext },
			"another name's row":       func(s *secrets.Sealed) { s.WrappedDEK, s.Ciphertext = other.WrappedDEK, other.Ciphertext },
			"only the value moved":     func(s *secrets.Sealed) { s.Ciphertext = v1.Ciphertext },
			"a flipped ciphertext bit": func(s *secrets.Sealed) { s.Ciphertext = bytes.Clone(s.Ciphertext); s.Ciphertext[20] ^= 1 },
		} {
			moved := e.service(&swappingStore{Store: e.store, swap: swap})
			s, err := moved.Get(e.ctx, alice, registry, secrets.GetOptions{Version: 2})
			if !errors.Is(err, secrets.ErrCorrupt) || s.Value != nil || strings.Contains(err.Error(), "tok-") {
				t.Errorf("%s: %q %v", name, s.Value, err)
			}
		}
	})

	// Rotation re-wraps data keys and leaves values alone; the old key can then be retired.
	t.Run("RewrapOnRotation", func(t *testing.T) {
		e := newSecretsEnv(t, h)
		e.grantDeploy(time.Hour)
		if _, err := e.sec.Put(e.ctx, alice, registry, []byte("tok-rot")); err != nil {
			t.Fatal(err)
		}
		before, _ := e.store.SecretVersion(e.ctx, registry, 1)
		old := before.Meta.KeyID
		if _, err := e.keys.Rotate(); err != nil {
			t.Fatal(err)
		}
		if err := e.sec.UsesKey(e.ctx, old); !errors.Is(err, secrets.ErrConflict) {
			t.Fatalf("retiring a key in use: %v", err)
		}
		if n, err := e.sec.Rewrap(e.ctx); n != 1 || err != nil {
			t.Fatalf("rewrap: %d %v", n, err)
		}
		after, _ := e.store.SecretVersion(e.ctx, registry, 1)
		if after.Meta.KeyID == old || !bytes.Equal(after.Ciphertext, before.Ciphertext) || bytes.Equal(after.WrappedDEK, before.WrappedDEK) {
			t.Fatalf("after rewrap: key %s, ciphertext kept %v", after.Meta.KeyID, bytes.Equal(after.Ciphertext, before.Ciphertext))
		}
		if err := e.sec.UsesKey(e.ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := e.keys.Retire(old); err != nil {
			t.Fatal(err)
		}
		if s, err := e.sec.Get(e.ctx, alice, registry, secrets.GetOptions{}); err != nil || string(s.Value) != "tok-rot" {
			t.Fatalf("read after retiring the old key: %v", err)
		}
		// A stale compare-and-swap changes nothing.
		if err := e.store.RewrapSecretVersion(e.ctx, registry, 1, old, "x", []byte{1}); !errors.Is(err, secrets.ErrConflict) {
			t.Fatalf("stale rewrap: %v", err)
		}
	})
}

// revokingStore runs revoke the first time a version is fetched: after the decision that
// allowed the read, before the value is handed out.
type revokingStore struct {
	secrets.Store
	revoke func()
	done   bool
}

func (s *revokingStore) SecretVersions(ctx context.Context, name string) ([]secrets.Sealed, error) {
	if !s.done {
		s.done = true
		s.revoke()
	}
	return s.Store.SecretVersions(ctx, name)
}

// swappingStore serves versions changed by swap, as an edit of the database would.
type swappingStore struct {
	secrets.Store
	swap func(*secrets.Sealed)
}

func (s *swappingStore) SecretVersion(ctx context.Context, name string, version uint64) (secrets.Sealed, error) {
	v, err := s.Store.SecretVersion(ctx, name, version)
	if err == nil {
		s.swap(&v)
	}
	return v, err
}
