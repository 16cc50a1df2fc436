// Package scim is Rampart's SCIM 2.0 service provider (RFC 7643, RFC 7644): the organisation's
// directory (Microsoft Entra ID, Okta, …) provisions people and groups into Rampart and, above
// all, deprovisions them within seconds: a user set active: false or deleted is disabled
// (every session, token and grant of theirs ends, identity and server.Instance.DisableUser);
// a person removed from a group loses the policy groups it mapped to at once. The users'
// group memberships pushed here are authoritative for them: the groups their sign-ins claim are
// ignored, so a removal cannot be undone by a stale ID token.
//
// It upholds invariant 8 (no one acts as another person: deprovisioning ends a person's access
// everywhere) and invariant 4 (every change is a ledger entry in the same transaction). It
// fails closed: a request without the configured bearer secret (compared in constant time) is
// refused, and a change whose ledger entry cannot be written is not made. It accepts the
// request shapes Entra ID and Okta document (op names in any case, "True"/"False" strings for
// active, members removed by value or by filter, attributes without a path), refuses renaming a
// user (grants and the ledger name people by their user name), never stores a password, and
// answers errors in the SCIM error schema.
package scim

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"rampart.dev/rampart/audit"
)

// MinTokenLen is the shortest bearer secret accepted: 32 bytes, like Rampart's own tokens.
const MinTokenLen = 32

// Config configures the service.
type Config struct {
	// Token is the bearer secret directories authenticate with (from a file or the environment,
	// never the policy).
	Token string
	// BaseURL is Rampart's URL as the directory reaches it, for meta.location ("" writes
	// locations relative to the server).
	BaseURL string
	// MaxResults bounds one page of a list (default 1000).
	MaxResults int
}

// Store keeps provisioned users and groups. Writes run in a transaction serialized with every
// other writer, and ledger entries appended through the Tx commit with them.
type Store interface {
	UpdateSCIM(ctx context.Context, fn func(Tx) error) error
	SCIMUsers(ctx context.Context) ([]User, error)
	SCIMGroups(ctx context.Context) ([]Group, error)
	SCIMUser(ctx context.Context, id string) (User, error)
	SCIMGroup(ctx context.Context, id string) (Group, error)
}

// Tx is a SCIM write transaction.
type Tx interface {
	audit.Appender
	SCIMUser(ctx context.Context, id string) (User, error)
	SCIMUserByName(ctx context.Context, userName string) (User, error)
	PutSCIMUser(ctx context.Context, u User) error
	// DeleteSCIMUser removes a user and their memberships.
	DeleteSCIMUser(ctx context.Context, id string) error
	SCIMGroup(ctx context.Context, id string) (Group, error)
	// PutSCIMGroup inserts or replaces a group and its members.
	PutSCIMGroup(ctx context.Context, g Group) error
	DeleteSCIMGroup(ctx context.Context, id string) error
	// SCIMUserNames returns the userNames of those ids that are provisioned users.
	SCIMUserNames(ctx context.Context, ids []string) (map[string]string, error)
}

// Deps are the parts of the control plane SCIM works with.
type Deps struct {
	Store Store
	// Disable and Enable are the person lifecycle (server.Instance.DisableUser, EnableUser):
	// disabling ends every session, token, grant and decision of theirs.
	Disable func(ctx context.Context, subject, reason string) error
	Enable  func(ctx context.Context, subject string) error
	// Changed applies the directory's groups to the policy in force at once.
	Changed func(ctx context.Context)
	Now     func() time.Time
	Logger  *slog.Logger
}

// Service serves the SCIM endpoints (mounted by api under /scim/v2).
type Service struct {
	cfg  Config
	d    Deps
	hash [32]byte
}

// Actor is how SCIM changes are attributed in the ledger.
const Actor = "scim"

// New validates the configuration.
func New(cfg Config, d Deps) (*Service, error) {
	if len(cfg.Token) < MinTokenLen {
		return nil, fmt.Errorf("the SCIM bearer secret is %d bytes; use at least %d random bytes (e.g. openssl rand -base64 48)", len(cfg.Token), MinTokenLen)
	}
	if cfg.MaxResults <= 0 {
		cfg.MaxResults = 1000
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, d: d, hash: sha256.Sum256([]byte(cfg.Token))}, nil
}

// authorized compares a presented secret with the configured one in constant time (hashes of
// equal length, so the comparison does not depend on where the secrets differ, nor leak the
// configured one's length).
func (s *Service) authorized(secret string) bool {
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], s.hash[:]) == 1
}

// newID returns a random version-4 UUID, as directories expect ids to look.
func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// event is a SCIM change as a ledger entry.
func event(now time.Time, code, msg string, details map[string]any) audit.Event {
	act, name := audit.ActivityUpdate, "Update"
	switch {
	case len(code) > 7 && code[len(code)-7:] == ".create":
		act, name = audit.ActivityCreate, "Create"
	case len(code) > 7 && code[len(code)-7:] == ".delete":
		act, name = audit.ActivityDelete, "Delete"
	}
	sev := audit.SeverityLow
	if d, _ := details["deprovision"].(bool); d {
		sev = audit.SeverityMedium
	}
	return audit.Event{Code: code, Class: audit.ClassEntityManagement, Activity: act, ActivityName: name, Severity: sev,
		Time: now, Actor: Actor, Message: msg, Details: details}
}
