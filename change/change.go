// Package change guards Git refs: change requests and approvals bound to merge trees, the
// decision on an update of a protected ref (the Git pre-receive hook asks it online, or decides
// from an approvals bundle offline), the notes that publish approvals in the repository itself,
// and the offline verification of a protected ref's history that anyone who clones can run.
//
// It upholds invariant 10 (the guard is guarded): an update of a protected ref lands only when
// its new tip's tree is a merge tree approved from the old tip, with quorum counted by the policy
// package's matching (policy.TallyChange) with the change's parties excluded (authors,
// committers, co-authors, requester, pusher). Invariant 9 for changes: an approval is bound to
// (repository, ref, base, merge tree) and counts for nothing else. Invariant 8: approvals come
// from people (the API refuses other credentials; Service trusts its caller for who the approver
// is, as package access does). Invariant 4: every request, review, landing, refusal and voided
// change is a ledger entry appended in the same store transaction. Invariant 6: every step that
// cannot establish the answer refuses.
//
// The pieces:
//
//   - Service: filing, reviewing and deciding on updates, over a Store (store/sqlstore).
//   - Git: the real git binary, run without ever letting input become an option; Compute and
//     Recompute: what a change request carries, from a checkout.
//   - Bundle, ParseBundle, OpenBundle: the approvals bundle (ledger entries with inclusion
//     proofs to a signed checkpoint), the content of a note under refs/notes/rampart.
//   - VerifyHistory and Approved: offline verification of a protected ref's first-parent
//     history, and of one commit, needing only the repository and the ledger's public key.
//   - ReadUpdates, Facts, Decider (the server through api.Client, or OfflineDecider),
//     SavePending and PublishPending: the pre-receive and post-receive hooks.
//
// For a server that loads its own policy from Git: Approved(ctx, git, repository, ref, commit,
// key, policyPath) answers "is commit C of repository R on ref X an approved update of its first
// parent under the rules in force at that parent?" (nil, or an error saying why not), and
// PolicyAt parses the policy files of a commit. A chain of policy commits is accepted by calling
// Approved for each first-parent step after the pinned one, oldest first.
//
// docs/change.md is the user's manual and threat model.
package change

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// State is where a change is in its life.
type State string

// Change states. StatePending and approved changes accept reviews; a change is approved while its
// approvals reach quorum under the policy in force, landed once the hook let it through, void
// once the ref moved from its base (its approvals can match nothing any more), denied once
// enough eligible approvers denied it.
const (
	StatePending  State = "pending"
	StateApproved State = "approved"
	StateLanded   State = "landed"
	StateDenied   State = "denied"
	StateVoid     State = "void"
)

// Decision is a reviewer's answer.
type Decision string

// Review decisions.
const (
	Approve Decision = "approve"
	Deny    Decision = "deny"
)

// Change is a request to update a protected ref to a merge tree.
type Change struct {
	ID         string `json:"id"`
	Repository string `json:"repository"`
	Ref        string `json:"ref"`
	// Base is the ref's tip the change was computed from (all zeros for a ref to be created).
	Base string `json:"base"`
	// Source is the commit to merge; Tree the merge tree (git merge-tree --write-tree).
	Source string `json:"source"`
	Tree   string `json:"tree"`
	// Paths are the paths the merge tree changes from the base's tree, sorted.
	Paths []string `json:"paths"`
	// Commits are the commits the change brings (reachable from Source, not from Base).
	Commits   []Commit  `json:"commits"`
	Requester string    `json:"requester"`
	State     State     `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// RequestSeq and LandSeq are the ledger entries that filed and landed it (LandSeq 0 until
	// landed); StateLanded is the commit that landed it.
	RequestSeq int64  `json:"request_seq"`
	LandSeq    int64  `json:"land_seq,omitempty"`
	LandedAs   string `json:"landed_as,omitempty"`
	Version    int64  `json:"version"`
}

// Review is one person's current answer to a change.
type Review struct {
	ChangeID string    `json:"change_id"`
	Approver string    `json:"approver"`
	Decision Decision  `json:"decision"`
	Comment  string    `json:"comment,omitempty"`
	At       time.Time `json:"at"`
	// MFAAt is the approver's last multi-factor authentication when they approved.
	MFAAt        time.Time `json:"mfa_at,omitzero"`
	SessionID    string    `json:"session_id,omitempty"`
	CredentialID string    `json:"credential_id,omitempty"`
	// Seq is the ledger entry that recorded it.
	Seq int64 `json:"seq"`
}

// Filter selects changes. Zero fields do not filter.
type Filter struct {
	Repository string
	Ref        string
	Base       string
	Tree       string
	Requester  string
	// LandedAs selects the change that landed as this commit.
	LandedAs string
	States   []State
	Limit    int
}

// Tx is a read-write store transaction; ledger entries appended through it commit with it.
type Tx interface {
	Reader
	audit.Appender
	InsertChange(ctx context.Context, c Change) error
	UpdateChange(ctx context.Context, c Change) error
	// PutChangeReview inserts or replaces the approver's review of the change.
	PutChangeReview(ctx context.Context, r Review) error
}

// Reader reads changes.
type Reader interface {
	Change(ctx context.Context, id string) (Change, error)
	ChangeReviews(ctx context.Context, id string) ([]Review, error)
	ListChanges(ctx context.Context, f Filter) ([]Change, error)
}

// Store persists changes. UpdateChanges transactions are serialized with every other write of
// the store (the ledger's write lock).
type Store interface {
	Reader
	UpdateChanges(ctx context.Context, fn func(Tx) error) error
	// Entries reads ledger entries (audit.Store), for bundles.
	Entries(ctx context.Context, from int64, limit int) ([]audit.Record, error)
}

// ErrNotFound is returned by stores for a missing change.
var ErrNotFound = errors.New("not found")

// Limits on what a filing may carry (invariant 7: a change request is small; anything larger is
// a mistake or an attack on the store).
const (
	MaxPaths   = 20000
	MaxCommits = 2000
	maxPathLen = 4096
	maxIdent   = 320
)

// PathsDigest is the SHA-256 of the sorted paths, each followed by a NUL, hex encoded: how the
// ledger binds the changed paths without repeating them.
func PathsDigest(paths []string) string {
	s := append([]string(nil), paths...)
	sort.Strings(s)
	h := sha256.New()
	for _, p := range s {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Parties returns everyone a change must be independent of: the author, committer and
// co-authors of each commit (their addresses mapped to users with domains, see
// policy.IdentitySubject; an address that names no user is left out), the requester and the
// pusher (either may be empty). Each person is listed once, with the first reason found.
func Parties(commits []Commit, domains []string, requester, pusher string) []policy.ChangeParty {
	var out []policy.ChangeParty
	seen := map[string]bool{}
	add := func(subject, role string) {
		if subject == "" || seen[subject] {
			return
		}
		seen[subject] = true
		out = append(out, policy.ChangeParty{Subject: subject, Role: role})
	}
	add(requester, policy.PartyRequester)
	add(pusher, policy.PartyPusher)
	for _, c := range commits {
		id := short(c.ID)
		if s, ok := policy.IdentitySubject(c.Author, domains); ok {
			add(s, "the author of commit "+id)
		}
		if s, ok := policy.IdentitySubject(c.Committer, domains); ok {
			add(s, "the committer of commit "+id)
		}
		for _, ca := range c.CoAuthors {
			if s, ok := policy.IdentitySubject(ca, domains); ok {
				add(s, "a co-author (Co-authored-by) of commit "+id)
			}
		}
	}
	return out
}

// unknownIdentities lists the addresses of commits that name no user under domains.
func unknownIdentities(commits []Commit, domains []string) []string {
	var out []string
	for _, c := range commits {
		for _, e := range append([]string{c.Author, c.Committer}, c.CoAuthors...) {
			if _, ok := policy.IdentitySubject(e, domains); !ok && !contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validPath checks a changed path as git reports it.
func validPath(p string) bool {
	return p != "" && len(p) <= maxPathLen && !strings.ContainsRune(p, 0) && !strings.HasPrefix(p, "/")
}
