package authz_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
)

// slowSource is a grant source with no grants whose list of disabled people is read when the
// test says: a sync that began before a local SetDisabled and ends after it.
type slowSource struct {
	disabled []string
	read     chan struct{} // a sync is reading
	release  chan struct{}
	fail     error
}

func (s *slowSource) ListGrants(context.Context, access.GrantFilter) ([]access.Grant, error) {
	return nil, nil
}
func (s *slowSource) LedgerSize(context.Context) (int64, error) { return 0, nil }
func (s *slowSource) DisabledSubjects(context.Context) ([]string, error) {
	if s.read != nil {
		s.read <- struct{}{}
		<-s.release
	}
	return s.disabled, s.fail
}

// A disabled person is denied everything (standing bindings included), learned from the store
// at load and sync; a local SetDisabled is not undone by a sync that read the store before it;
// a store that cannot list them fails the sync (and so, past the staleness bound, closes).
func TestDisabledSubjects(t *testing.T) {
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(epoch)
	src := &slowSource{disabled: []string{"bob"}}
	ix := authz.New(src, pol, authz.Options{Now: clock.Now})
	if err := ix.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	sandbox := authz.Query{Subject: "alice", Action: "read", Resource: "namespaces/research-sandbox"}
	if d := ix.Check(sandbox); !d.Allowed {
		t.Fatalf("alice's standing binding: %+v", d)
	}
	if !ix.Disabled("bob") || ix.Disabled("alice") {
		t.Fatal("the disabled list was not loaded")
	}
	// Disabled here, now; a sync that read the store before does not undo it.
	src.read, src.release = make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() { done <- ix.Sync(context.Background()) }()
	<-src.read
	ix.SetDisabled("alice", true)
	close(src.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := ix.Check(sandbox); d.Allowed || !strings.Contains(d.Reason, "alice is disabled") {
		t.Fatalf("a stale sync revived alice: %+v", d)
	}
	// The next sync reads the store, which now says alice (as the disable committed there).
	src.read, src.disabled = nil, []string{"alice"}
	if err := ix.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !ix.Disabled("alice") || ix.Disabled("bob") {
		t.Fatal("the sync did not replace the list")
	}
	// A store that cannot say who is disabled fails the sync: decisions close once stale.
	src.fail = errors.New("connection refused")
	if err := ix.Sync(context.Background()); err == nil {
		t.Fatal("a sync that could not read the disabled people succeeded")
	}
	clock.Advance(authz.DefaultMaxStaleness + time.Second)
	if d := ix.Check(authz.Query{Subject: "carol", Action: "read", Resource: "namespaces/research-sandbox"}); !d.Unavailable {
		t.Fatalf("stale: %+v", d)
	}
}
