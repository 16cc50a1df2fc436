// Package access is the AccessManager workflow: a request for a role is reviewed by eligible
// approvers, and when every step of its approval policy is satisfied a time-bound grant is
// activated; grants are renewed, revoked, and expire.
//
// It upholds invariant 1 (quorum: the approval policy is re-evaluated against the current policy
// at every review, with distinct eligible approvers, never the requester, the beneficiary or
// anyone the policy ties to them; a request for someone else only where request_for allows),
// invariant 2 (every grant ends no later than its policy allows; the clock starts at activation),
// invariant 4 (every state change appends its ledger entry in the same store transaction, and is
// refused if the entry cannot be written), invariant 9 (a grant pins the role definition it was
// approved for, and approvals count only towards the definition they were given for) and the
// workflow's part of invariant 11 (a cap on pending requests per person, a cooldown on
// break-glass after a rejected review). Each operation judges everything under one snapshot of
// the policy. Transactions are serialized by the store, so concurrent approvals activate exactly
// one grant and racing requests cannot pass the cap together. Its part of invariant 8: a
// disabled person's grants, pending requests and pending approvals end in one transaction
// (RevokeSubject), and each review records the credential and session it came with (the
// transport authenticates them; access trusts its caller for who the approver is, as it always
// has).
//
// It also writes what people are owed to the store's notification outbox: a Notification in the
// transaction of the ledger entry that causes it, and reminders of grants about to expire and
// requests about to lapse (Remind), each once per item.
//
// The package imports no database or transport code: persistence is the Store interface,
// implemented by store/sqlite and store/postgres.
package access

import (
	"context"
	"errors"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// State is where a request is in its life.
type State string

// Request states. Pending is the only state that accepts reviews (apart from the after-the-fact
// review of a break-glass request).
const (
	Pending   State = "pending"
	Approved  State = "approved"
	Denied    State = "denied"
	Cancelled State = "cancelled"
	Expired   State = "expired"
)

// PostReview is the state of the mandatory after-the-fact review of a break-glass request.
type PostReview string

// Post-review states.
const (
	PostReviewNone     PostReview = ""
	PostReviewPending  PostReview = "pending"
	PostReviewAccepted PostReview = "accepted"
	PostReviewRejected PostReview = "rejected"
)

// Request asks for a role for a beneficiary, for a duration.
type Request struct {
	ID          string        `json:"id"`
	Role        string        `json:"role"`
	Requester   string        `json:"requester"`
	Beneficiary string        `json:"beneficiary"`
	Reason      string        `json:"reason"`
	Duration    time.Duration `json:"-"`
	State       State         `json:"state"`
	// Policy is the approval policy that applied when the request was made; reviews are counted
	// against the policy that applies when they are made.
	Policy    string    `json:"policy"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when a pending request lapses (request_ttl).
	ExpiresAt  time.Time  `json:"expires_at"`
	DecidedAt  time.Time  `json:"decided_at,omitzero"`
	GrantID    string     `json:"grant_id,omitempty"`
	RenewalOf  string     `json:"renewal_of,omitempty"`
	BreakGlass bool       `json:"break_glass,omitempty"`
	PostReview PostReview `json:"post_review,omitempty"`
	// Version is the ledger sequence number of the request's last change.
	Version int64 `json:"version"`
}

// Decision is a reviewer's answer.
type Decision string

// Review decisions.
const (
	Approve Decision = "approve"
	Deny    Decision = "deny"
)

// Review is one approver's current answer to a request. A later review by the same approver
// replaces the earlier one while the request is pending.
type Review struct {
	RequestID string        `json:"request_id"`
	Approver  string        `json:"approver"`
	Decision  Decision      `json:"decision"`
	Duration  time.Duration `json:"-"`
	Comment   string        `json:"comment,omitempty"`
	At        time.Time     `json:"at"`
	// CredentialID and SessionID are the credential the review came with (a session id, or a
	// token bound to the session) and the approver's own sign-in session it spoke for
	// (invariant 8); empty for reviews recorded before they were kept, or made in-process.
	CredentialID string `json:"credential_id,omitempty"`
	SessionID    string `json:"session_id,omitempty"`
	// RoleDigest is the digest of the role's definition when the review was made: an approval
	// counts only towards activating that definition (invariant 9). Empty for reviews made
	// before definitions were pinned, which count as before.
	RoleDigest string `json:"role_digest,omitempty"`
}

// GrantState is where a grant is in its life.
type GrantState string

// Grant states. An Active grant whose ExpiresAt has passed is treated as expired by every
// decision, before the sweeper records it (invariant 2).
const (
	GrantActive  GrantState = "active"
	GrantRevoked GrantState = "revoked"
	GrantExpired GrantState = "expired"
)

// Grant is time-bound access to a role for a subject.
type Grant struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id"`
	// Requester filed the request that activated the grant. A workload's grant is used in a
	// cluster only by what its requester deploys (kube/admission, invariant 8); empty for grants
	// of stores from before it was recorded, until the migration that fills it in.
	Requester  string     `json:"requester,omitempty"`
	Role       string     `json:"role"`
	Subject    string     `json:"subject"`
	StartsAt   time.Time  `json:"starts_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	State      GrantState `json:"state"`
	BreakGlass bool       `json:"break_glass,omitempty"`
	EndedAt    time.Time  `json:"ended_at,omitzero"`
	EndedBy    string     `json:"ended_by,omitempty"`
	EndReason  string     `json:"end_reason,omitempty"`
	Version    int64      `json:"version"`
	// Definition is the definition of the role the grant was approved for (invariant 9): its
	// decisions allow only what both this and the role's current definition allow. RoleDigest
	// is its digest. Both are empty for a grant from before definitions were pinned until
	// LoadPolicy pins it.
	Definition *policy.RoleDefinition `json:"role_definition,omitempty"`
	RoleDigest string                 `json:"role_digest,omitempty"`
}

// pin binds the grant to def, the definition of its role it is (re)approved for.
func (g *Grant) pin(def *policy.RoleDefinition) {
	if def == nil {
		def = &policy.RoleDefinition{Reach: map[string][]string{}} // a role no longer in the policy: nothing
	}
	g.Definition, g.RoleDigest = def, def.Digest()
}

// ActiveAt reports whether the grant gives access at t: it is active, has started, and has not
// reached its expiry.
func (g *Grant) ActiveAt(t time.Time) bool {
	return g.State == GrantActive && !t.Before(g.StartsAt) && t.Before(g.ExpiresAt)
}

// RequestFilter selects requests. Zero fields do not filter.
type RequestFilter struct {
	States []State
	// Party matches requests where the subject is the requester or the beneficiary.
	Party string
	// Requester matches requests the subject filed.
	Requester string
	// BreakGlassReview selects break-glass requests whose after-the-fact review is pending.
	BreakGlassReview bool
	// LapsedBy selects requests whose ExpiresAt is at or before this time.
	LapsedBy time.Time
	// After is a cursor: requests created after this (CreatedAt, ID).
	AfterTime time.Time
	AfterID   string
	Limit     int
}

// GrantFilter selects grants. Zero fields do not filter.
type GrantFilter struct {
	Subject   string
	States    []GrantState
	RequestID string
	// EndedBy selects grants whose ExpiresAt is at or before this time.
	EndedBy time.Time
	// Unpinned selects grants that have no pinned role definition yet.
	Unpinned bool
	// ByVersion selects grants changed after ChangedAfter (or, with AfterID, after the position
	// (ChangedAfter, AfterID)), ordered by (Version, ID): the change feed replicas sync from.
	// Without it, AfterID pages in ID order.
	ByVersion    bool
	ChangedAfter int64
	AfterID      string
	Limit        int
}

// Reader reads workflow state.
type Reader interface {
	Request(ctx context.Context, id string) (Request, error)
	Reviews(ctx context.Context, requestID string) ([]Review, error)
	Grant(ctx context.Context, id string) (Grant, error)
	ListRequests(ctx context.Context, f RequestFilter) ([]Request, error)
	ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error)
	// Meta reads a small named value ("" if absent).
	Meta(ctx context.Context, key string) (string, error)
}

// Tx is a read-write transaction. Ledger entries appended through it commit with it.
type Tx interface {
	Reader
	audit.Appender
	InsertRequest(ctx context.Context, r Request) error
	UpdateRequest(ctx context.Context, r Request) error
	// PutReview inserts or replaces the approver's review of the request.
	PutReview(ctx context.Context, r Review) error
	// DeleteReview removes the approver's review of the request, if any.
	DeleteReview(ctx context.Context, requestID, approver string) error
	InsertGrant(ctx context.Context, g Grant) error
	UpdateGrant(ctx context.Context, g Grant) error
	SetMeta(ctx context.Context, key, value string) error
	// InsertNotification writes n to the outbox; it commits or rolls back with the transaction.
	InsertNotification(ctx context.Context, n Notification) error
	// InsertNotificationOnce writes n unless a notification with n's id was written before, and
	// reports whether it wrote it: a deterministic id makes a reminder exactly once per item.
	InsertNotificationOnce(ctx context.Context, n Notification) (bool, error)
}

// Store persists workflow state. Update transactions are serialized with one another, so a
// transaction's reads stay true until it commits.
type Store interface {
	Reader
	// Update runs fn in a transaction; if fn returns an error, nothing it did is kept.
	Update(ctx context.Context, fn func(Tx) error) error
}

// ErrNotFound is returned by stores for a missing request or grant.
var ErrNotFound = errors.New("not found")
