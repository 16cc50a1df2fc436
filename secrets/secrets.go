// Package secrets is the secrets store: small secrets (API keys, deploy keys, cloud
// credentials; at most MaxValueSize bytes), versioned, each version sealed under its own data
// key with AES-256-GCM, the data key wrapped by the weights vault's key provider (the same
// keyring, package vault). The secret's name and version are the associated data of both the
// value's encryption and the key's wrap: a ciphertext copied to another name or version does
// not decrypt (ErrCorrupt). Rotating the keyring re-wraps data keys (Rewrap) without touching
// the values.
//
// Every read and write asks the decision engine for read or write on secrets/<name> (a grant or
// a standing binding) and is a ledger entry that names the secret and version, never the value
// (invariant 4). A read asks again after it decrypted and recorded, just before it hands the
// value out, so a read racing a revocation fails once the revocation is in the engine
// (invariant 2). Refusals are recorded, aggregated per caller like the vault's (invariant 11).
// Values are never logged nor put in errors, and the buffers this package owns are zeroed
// once used (Go may still hold copies it made itself, in strings or the garbage collector).
//
// A read can take a lease: an id with a TTL, renewable (RenewLease, which reads again) until
// it is revoked, it expires, or the grant behind it ends; a lease never outlives the grant
// that allowed the read. Names are validated by CheckName: no path tricks, ASCII only.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault"
)

// MaxValueSize is the largest secret value: 64 KiB. Larger material belongs in the weights vault.
const MaxValueSize = 64 << 10

// Actions on secrets/<name> the store asks the decision engine about. Removing a secret is a
// write: secrets are credentials that can be issued again, unlike the vault's artifacts.
const (
	ActionRead  = "read"
	ActionWrite = "write"
)

// Version states.
const (
	StateActive  = "active"
	StateDeleted = "deleted"
)

// Version describes one stored version of a secret (never its value).
type Version struct {
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	State   string `json:"state"`
	Size    int    `json:"size"`
	// KeyID is the key-encryption key that wraps the version's data key.
	KeyID     string    `json:"key_id"`
	CreatedBy string    `json:"created_by"`
	GrantID   string    `json:"grant_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	DeletedAt time.Time `json:"deleted_at,omitzero"`
}

// Sealed is a version as stored: its wrapped data key and its ciphertext (nonce ‖ AES-256-GCM).
// A deleted version keeps neither.
type Sealed struct {
	Meta       Version
	WrappedDEK []byte
	Ciphertext []byte
}

// Lease is the record of a read that its holder may renew: until ExpiresAt, and only while the
// grant or binding that allowed the read still does.
type Lease struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Version   uint64        `json:"version"`
	Subject   string        `json:"subject"`
	GrantID   string        `json:"grant_id,omitempty"`
	TTL       time.Duration `json:"ttl"`
	CreatedAt time.Time     `json:"created_at"`
	ExpiresAt time.Time     `json:"expires_at"`
	RevokedAt time.Time     `json:"revoked_at,omitzero"`
}

// Secret is a read: the version, its value, and the lease when one was asked for. The caller
// zeroes Value once it is done with it (Wipe).
type Secret struct {
	Version
	Value []byte `json:"value"`
	Lease *Lease `json:"lease,omitempty"`
}

// Wipe zeroes the value.
func (s *Secret) Wipe() { clear(s.Value) }

// Store keeps sealed versions and leases; each change commits with its ledger entry.
type Store interface {
	// InsertSecretVersion stores v and appends ev in one transaction. v.Version must be one more
	// than the newest version of the name (deleted ones included); otherwise nothing changes and
	// the error wraps ErrConflict.
	InsertSecretVersion(ctx context.Context, v Sealed, ev audit.Event) error
	// SecretVersions lists the versions of name ("" every name), by name then version.
	SecretVersions(ctx context.Context, name string) ([]Sealed, error)
	// SecretVersion returns one version; ErrNotFound if there is none.
	SecretVersion(ctx context.Context, name string, version uint64) (Sealed, error)
	// DeleteSecret marks every active version of name deleted at at, dropping its ciphertext
	// and wrapped key, and appends ev, in one transaction; it returns how many it deleted and
	// wraps ErrNotFound (nothing changed) when none was active.
	DeleteSecret(ctx context.Context, name string, at time.Time, ev audit.Event) (int, error)
	// RewrapSecretVersion replaces an active version's wrapped data key, provided it is still
	// wrapped by fromKeyID (ErrConflict otherwise).
	RewrapSecretVersion(ctx context.Context, name string, version uint64, fromKeyID, keyID string, wrapped []byte) error
	// InsertSecretLease stores a new lease and appends ev in one transaction.
	InsertSecretLease(ctx context.Context, l Lease, ev audit.Event) error
	// SecretLease returns a lease; ErrNotFound if there is none.
	SecretLease(ctx context.Context, id string) (Lease, error)
	// UpdateSecretLease stores l's ExpiresAt and RevokedAt and appends ev in one transaction,
	// provided the stored lease is not revoked (ErrConflict otherwise).
	UpdateSecretLease(ctx context.Context, l Lease, ev audit.Event) error
}

// Errors. Every error the service returns wraps one of them (or is a *Denied).
var (
	// ErrInvalid: the caller's input is wrong (name, size, TTL).
	ErrInvalid = errors.New("secrets: invalid request")
	// ErrNotFound: no such secret, version or lease.
	ErrNotFound = errors.New("secrets: not found")
	// ErrConflict: the request conflicts with the store's state (a version written meanwhile).
	ErrConflict = errors.New("secrets: conflict")
	// ErrUnavailable: the decision engine, the key provider or the store cannot answer; refused.
	ErrUnavailable = errors.New("secrets: unavailable")
	// ErrCorrupt: a stored version does not decrypt under its name and version (altered, or
	// copied from another secret or version).
	ErrCorrupt = errors.New("secrets: stored version fails authentication")
	// ErrLeaseEnded: the lease expired or was revoked.
	ErrLeaseEnded = errors.New("secrets: the lease has ended")
)

// Denied is a refusal by the decision engine, with what to do about it.
type Denied struct {
	Subject, Action, Resource, Reason string
}

func (d *Denied) Error() string {
	return fmt.Sprintf("%s may not %s %s: %s; request a role that grants it (rampart request create --resource %s --action %s)",
		d.Subject, d.Action, d.Resource, d.Reason, d.Resource, d.Action)
}

// Decider is the decision engine as the store asks it (the server's *authz.Index).
type Decider interface {
	Check(authz.Query) authz.Decision
	Health() error
}

// Service is the secrets store.
type Service struct {
	// Keys wraps data keys: the weights vault's key provider.
	Keys   vault.KeyProvider
	Store  Store
	Decide Decider
	// Record appends a ledger entry on its own (reads).
	Record func(ctx context.Context, e audit.Event) error
	// Refused records a refusal, aggregated per caller and window (invariant 11). Nil: Record.
	Refused func(ctx context.Context, source string, e audit.Event) (refusals.Outcome, error)
	Now     func() time.Time
	// MaxLeaseTTL bounds a lease's TTL (DefaultMaxLeaseTTL if zero).
	MaxLeaseTTL time.Duration
}

// DefaultMaxLeaseTTL is the longest lease unless the server says otherwise.
const DefaultMaxLeaseTTL = 24 * time.Hour

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// authorize asks the decision engine; a refusal is recorded (aggregated).
func (s *Service) authorize(ctx context.Context, p identity.Principal, action, name string) (authz.Decision, error) {
	res := Resource(name)
	d := s.Decide.Check(authz.Query{Subject: p.Subject, Action: action, Resource: res})
	if d.Unavailable {
		return d, fmt.Errorf("%w: the decision engine cannot answer (%s); refusing", ErrUnavailable, d.Reason)
	}
	if !d.Allowed {
		activity, name := audit.ActivityRead, "Read"
		if action == ActionWrite {
			activity, name = audit.ActivityUpdate, "Update"
		}
		ev := audit.Event{Code: "secret.denied", Class: audit.ClassDatastoreActivity, Activity: activity, ActivityName: name,
			Severity: audit.SeverityMedium, Time: s.now(), Actor: p.Subject, Resources: []string{res}, Failed: true,
			Message: fmt.Sprintf("%s may not %s %s: %s", p.Subject, action, res, d.Reason), Details: map[string]any{"action": action, "reason": d.Reason}}
		if s.Refused != nil {
			_, _ = s.Refused(ctx, "user "+p.Subject, ev)
		} else if s.Record != nil {
			_ = s.Record(ctx, ev)
		}
		return d, &Denied{Subject: p.Subject, Action: action, Resource: res, Reason: d.Reason}
	}
	return d, nil
}

// via names what allowed a decision, for ledger entries.
func via(d authz.Decision) map[string]any {
	if d.GrantID != "" {
		return map[string]any{"grant_id": d.GrantID}
	}
	return map[string]any{"binding": d.Binding}
}

func unavailable(what string, err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}
