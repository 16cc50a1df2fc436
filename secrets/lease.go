package secrets

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
)

// MinLeaseTTL is the shortest lease.
const MinLeaseTTL = time.Second

// LeasePrefix starts every lease id.
const LeasePrefix = "sl_"

func newLeaseID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return LeasePrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// CheckLeaseID validates a lease id as the caller gave it.
func CheckLeaseID(id string) error {
	rest, ok := strings.CutPrefix(id, LeasePrefix)
	if !ok || len(rest) != 16 || strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return fmt.Errorf("%w: %q is not a lease id (sl_ and 16 letters or digits, as secret get printed it)", ErrInvalid, id)
	}
	return nil
}

func (s *Service) maxTTL() time.Duration {
	if s.MaxLeaseTTL > 0 {
		return s.MaxLeaseTTL
	}
	return DefaultMaxLeaseTTL
}

func (s *Service) checkTTL(ttl time.Duration) error {
	if ttl != 0 && (ttl < MinLeaseTTL || ttl > s.maxTTL()) {
		return fmt.Errorf("%w: a lease TTL of %s is out of range; give one between %s and %s", ErrInvalid, ttl, MinLeaseTTL, s.maxTTL())
	}
	return nil
}

// leaseEnd is now+ttl, but never past the end of the grant that allowed the read.
func leaseEnd(now time.Time, ttl time.Duration, d authz.Decision) time.Time {
	end := now.Add(ttl)
	if !d.ExpiresAt.IsZero() && d.ExpiresAt.Before(end) {
		end = d.ExpiresAt
	}
	return end
}

// lease returns the caller's lease id (ErrNotFound for someone else's: a lease id is no
// capability, and nobody learns which ids exist).
func (s *Service) lease(ctx context.Context, p identity.Principal, id string, anyone bool) (Lease, error) {
	if err := CheckLeaseID(id); err != nil {
		return Lease{}, err
	}
	l, err := s.Store.SecretLease(ctx, id)
	if err == nil && !anyone && l.Subject != p.Subject {
		err = ErrNotFound
	}
	if errors.Is(err, ErrNotFound) {
		return Lease{}, fmt.Errorf("%w: %s has no lease %s", ErrNotFound, p.Subject, id)
	}
	if err != nil {
		return Lease{}, unavailable("read the lease", err)
	}
	return l, nil
}

// RenewLease renews the caller's lease and reads its secret version again. It refuses a lease
// that was revoked or has expired, and one whose grant has ended (even if another grant now
// allows the read: that is a new read, with a new lease).
func (s *Service) RenewLease(ctx context.Context, p identity.Principal, id string) (Secret, error) {
	l, err := s.lease(ctx, p, id, false)
	if err != nil {
		return Secret{}, err
	}
	now := s.now()
	switch {
	case !l.RevokedAt.IsZero():
		return Secret{}, fmt.Errorf("%w: lease %s on %s was revoked at %s; read the secret again for a new one", ErrLeaseEnded, id, Resource(l.Name), l.RevokedAt.UTC().Format(time.RFC3339))
	case !now.Before(l.ExpiresAt):
		return Secret{}, fmt.Errorf("%w: lease %s on %s expired at %s; read the secret again for a new one", ErrLeaseEnded, id, Resource(l.Name), l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	d, err := s.authorize(ctx, p, ActionRead, l.Name)
	if err != nil {
		return Secret{}, err
	}
	if l.GrantID != "" && d.GrantID != l.GrantID {
		return Secret{}, fmt.Errorf("%w: lease %s was issued under grant %s, which has ended; read the secret again for a new lease", ErrLeaseEnded, id, l.GrantID)
	}
	v, err := s.Store.SecretVersion(ctx, l.Name, l.Version)
	if err != nil {
		return Secret{}, unavailable("read the version", err)
	}
	plain, err := open(ctx, s.Keys, v)
	if err != nil {
		return Secret{}, err
	}
	out := Secret{Version: v.Meta, Value: plain}
	l.ExpiresAt = leaseEnd(now, l.TTL, d)
	ev := s.readEvent(p, v.Meta, d, "lease_renew")
	ev.Details["lease_id"], ev.Details["lease_expires_at"] = l.ID, l.ExpiresAt
	ev.Message = fmt.Sprintf("%s renewed lease %s on %s version %d until %s", p.Subject, l.ID, Resource(l.Name), l.Version, l.ExpiresAt.UTC().Format(time.RFC3339))
	if err := s.Store.UpdateSecretLease(ctx, l, ev); err != nil {
		out.Wipe()
		if errors.Is(err, ErrConflict) {
			return Secret{}, fmt.Errorf("%w: lease %s was revoked meanwhile", ErrLeaseEnded, id)
		}
		return Secret{}, unavailable("record the renewal", err)
	}
	out.Lease = &l
	return s.release(ctx, p, out)
}

// RevokeLease ends a lease at once. Its holder may revoke it, and so may an administrator
// (anyone).
func (s *Service) RevokeLease(ctx context.Context, p identity.Principal, id string, anyone bool) (Lease, error) {
	l, err := s.lease(ctx, p, id, anyone)
	if err != nil {
		return Lease{}, err
	}
	if !l.RevokedAt.IsZero() {
		return l, nil
	}
	l.RevokedAt = s.now()
	ev := audit.Event{Code: "secret.lease_revoke", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityUpdate, ActivityName: "Update",
		Severity: audit.SeverityLow, Time: l.RevokedAt, Actor: p.Subject, User: l.Subject, Resources: []string{Resource(l.Name)},
		Message: fmt.Sprintf("%s revoked lease %s of %s on %s version %d", p.Subject, l.ID, l.Subject, Resource(l.Name), l.Version),
		Details: map[string]any{"lease_id": l.ID, "version": l.Version}}
	if err := s.Store.UpdateSecretLease(ctx, l, ev); err != nil {
		if errors.Is(err, ErrConflict) {
			return s.lease(ctx, p, id, anyone)
		}
		return Lease{}, unavailable("record the revocation", err)
	}
	return l, nil
}
