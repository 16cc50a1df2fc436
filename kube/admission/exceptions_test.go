package admission_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/podsec"
)

// oneGrant is the store as the decision index reads it: one active grant.
type oneGrant struct{ g access.Grant }

func (o oneGrant) ListGrants(_ context.Context, f access.GrantFilter) ([]access.Grant, error) {
	if f.AfterID != "" {
		return nil, nil
	}
	return []access.Grant{o.g}, nil
}
func (o oneGrant) LedgerSize(context.Context) (int64, error) { return 1, nil }

// An exception is a grant: it waives its check until the instant it expires and not after, at
// admission and in scans alike (both ask the decision engine through the same ExceptionSet).
// Driven by an injected clock: nothing waits for the wall clock.
func TestExceptionEndsAtItsExpiryInstant(t *testing.T) {
	pol := demoPolicy(t)
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := clocktest.New(start)
	g := access.Grant{ID: "grt_exception1", Role: "research-runtime-exception", Subject: admission.ServiceAccountSubject("dev", "research", "gpu"),
		StartsAt: start, ExpiresAt: start.Add(time.Hour), State: access.GrantActive, Version: 1,
		Definition: pol.RoleDefinition("research-runtime-exception")}
	ix := authz.New(oneGrant{g}, pol, authz.Options{Now: clock.Now, MaxStaleness: 24 * time.Hour})
	if err := ix.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	wl := podsec.Workload{Spec: &corev1.PodSpec{ServiceAccountName: "gpu"}}
	exempt := func() bool {
		return admission.Exceptions(ix.Check, "dev", "research", wl).Exempt("baseline.runtime-class")
	}
	if !exempt() {
		t.Fatal("the active exception does not waive its check")
	}
	if other := admission.Exceptions(ix.Check, "dev", "research", podsec.Workload{Spec: &corev1.PodSpec{ServiceAccountName: "trainer"}}); other.Exempt("baseline.runtime-class") {
		t.Fatal("the exception waives the check for another workload")
	}
	clock.Advance(time.Hour - time.Nanosecond)
	if !exempt() {
		t.Fatal("the exception stopped applying before its end")
	}
	clock.Advance(time.Nanosecond)
	if exempt() {
		t.Fatalf("the exception still waives its check at its expiry instant %s", g.ExpiresAt)
	}
}
