// Package weights is the weights vault: model artifacts stored encrypted (package vault) in a
// blob store (vault/blob), written and read only under an active grant on weights/<name>, with
// a signed manifest per version and a ledger entry, with its byte count, for every write, read,
// key release and deletion.
//
// Grants are checked by the decision engine when a transfer starts, again at every segment
// boundary while it runs (before each segment is released, the last one included; the check is
// an in-memory lookup, a few hundred nanoseconds per segment of 1 MiB by default), and, for an
// upload, when it ends (invariant 2): a download whose grant expires or is revoked stops before
// the next segment, and the client, which has not seen the end, discards what it received.
// A refusal is a weights.denied entry; since anyone can ask again and again, the server
// aggregates them per person and window (Service.Refused, invariant 11).
//
// Deleting versions is its own action (ActionDelete): a grant to write does not destroy. A data
// key released to a workload decrypts its version for as long as that ciphertext is stored;
// Rekey re-encrypts a version under a new data key (rotation only re-wraps data keys), crash-safe
// at every step. A version that fails verification is a *CorruptError naming the part (header,
// segment N, manifest), never an unavailable key; downloads check the manifest, the header and
// the first segment before they answer.
package weights

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
)

// Object is one version of a stored artifact.
type Object struct {
	Name        string    `json:"name"`
	Version     uint64    `json:"version"`
	State       string    `json:"state"` // uploading, ready, failed, deleted
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	SegmentSize uint32    `json:"segment_size"`
	KeyID       string    `json:"key_id"`
	Manifest    string    `json:"manifest"` // the signed note
	UploadedBy  string    `json:"uploaded_by"`
	GrantID     string    `json:"grant_id"`
	CreatedAt   time.Time `json:"created_at"`
	DeletedAt   time.Time `json:"deleted_at,omitzero"`
	// Location is where the version's blobs are, below objects/<name>/<version>/: "" as
	// uploaded, "rekey-<random>" after a rekey (each rekey writes to a new one, so that two
	// replicas rekeying at once never write the same blobs). Leftover is the blob directory of
	// the ciphertext a rekey replaced, until its blobs are removed ("" when there is none).
	Location string `json:"-"`
	Leftover string `json:"-"`
}

// Object states.
const (
	StateUploading = "uploading"
	StateReady     = "ready"
	StateFailed    = "failed"
	StateDeleted   = "deleted"
)

// Actions on weights/<name> that the vault asks the decision engine about. Delete is its own
// action: a grant to store new versions does not let its holder destroy the old ones.
const (
	// ActionRead: download, verify, key release, ciphertext stream.
	ActionRead = "read"
	// ActionWrite: upload a new version.
	ActionWrite = "write"
	// ActionDelete: delete versions.
	ActionDelete = "delete"
)

// Resource is the policy resource of an artifact.
func Resource(name string) string { return "weights/" + name }

// Meta keeps object metadata; ledger entries commit with the change they record.
type Meta interface {
	// BeginObject allocates the next version of name in state uploading.
	BeginObject(ctx context.Context, o Object) (uint64, error)
	// FinishObject stores o (state ready or failed) and appends ev, in one transaction.
	FinishObject(ctx context.Context, o Object, ev *audit.Event) error
	// DeleteObjects marks every version in objs deleted (at its DeletedAt) and appends its
	// event, all in one transaction, provided each is still ready; otherwise nothing changes
	// and the error wraps ErrNotFound.
	DeleteObjects(ctx context.Context, objs []Object, evs []audit.Event) error
	// RekeyObject moves a ready version to o.Location, with key o.KeyID and leftover
	// o.Leftover, and appends ev, in one transaction, provided the version is still ready, at
	// location from, with no leftover. Otherwise nothing changes and the error wraps ErrNotFound
	// (no longer ready) or ErrConflict (moved meanwhile, or a leftover to remove first).
	RekeyObject(ctx context.Context, o Object, from string, ev audit.Event) error
	// ClearLeftover clears a version's leftover once its blobs are removed (a no-op if the
	// version's leftover is no longer that one).
	ClearLeftover(ctx context.Context, name string, version uint64, leftover string) error
	Objects(ctx context.Context, name string) ([]Object, error) // "" lists every name
	Object(ctx context.Context, name string, version uint64) (Object, error)
	SetKeyID(ctx context.Context, name string, version uint64, keyID string) error
}

// ErrNotFound means there is no such object (or version).
var ErrNotFound = errors.New("weights: no such object")

// Denied is a refusal by the decision engine, with what to do about it.
type Denied struct {
	Subject, Action, Resource, Reason string
}

func (d *Denied) Error() string {
	return fmt.Sprintf("%s may not %s %s: %s; request a role that grants it (rampart request create --resource %s --action %s)",
		d.Subject, d.Action, d.Resource, d.Reason, d.Resource, d.Action)
}

// ErrInvalid means the caller's input is wrong (a bad public key, a key id in use).
var ErrInvalid = errors.New("weights: invalid request")

// ErrConflict means the request conflicts with the vault's state (a key still in use).
var ErrConflict = errors.New("weights: conflict")

// ErrUnavailable means the decision engine or a store cannot answer: the vault refuses.
var ErrUnavailable = errors.New("weights: unavailable")

// Decider is the decision engine (authz.Index) as the vault asks it: before, during and after
// every transfer, and whether its answers can be trusted when it filters a list.
type Decider interface {
	Check(authz.Query) authz.Decision
	Health() error
}

// Service is the vault.
type Service struct {
	Keys  vault.KeyProvider
	Blobs blob.Store
	Meta  Meta
	// Decide answers every access decision (the server's *authz.Index).
	Decide Decider
	// Record appends a ledger entry on its own (reads, key releases).
	Record func(ctx context.Context, e audit.Event) error
	// Refused records a refusal, which any user can provoke at will: the server aggregates them
	// per user and window (audit/refusals, invariant 11). Nil: Record, one entry each.
	Refused func(ctx context.Context, source string, e audit.Event) (refusals.Outcome, error)
	// Sign signs a manifest (the ledger key's SignNote); OpenNote verifies one and returns its
	// text (the ledger's OpenNote). Every read checks the manifest first.
	Sign     func(text string) ([]byte, error)
	OpenNote func(signed []byte) (string, error)
	Now      func() time.Time
	Log      *slog.Logger
	// SegmentSize for new objects (vault.DefaultSegmentSize if zero).
	SegmentSize uint32
	// KeyUsers are the keyring's other users (the secrets store): Rotate re-wraps their data
	// keys too, and Retire refuses a key one of them still uses.
	KeyUsers []KeyUser

	mu sync.Mutex // serializes rotation, retirement and the end of each upload
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$`)

// CheckName validates an artifact name (the part after weights/).
func CheckName(name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("%w: %q is not an artifact name: 1-128 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit", ErrInvalid, name)
	}
	return nil
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// authorize asks the decision engine; a refusal is recorded.
func (s *Service) authorize(ctx context.Context, p identity.Principal, action, name string) (authz.Decision, error) {
	res := Resource(name)
	d := s.Decide.Check(authz.Query{Subject: p.Subject, Action: action, Resource: res})
	if d.Unavailable {
		return d, fmt.Errorf("%w: the decision engine cannot answer (%s); refusing", ErrUnavailable, d.Reason)
	}
	if !d.Allowed {
		ev := audit.Event{Code: "weights.denied", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
			Severity: audit.SeverityMedium, Time: s.now(), Actor: p.Subject, Resources: []string{res}, Failed: true,
			Message: fmt.Sprintf("%s may not %s %s: %s", p.Subject, action, res, d.Reason), Details: map[string]any{"action": action, "reason": d.Reason}}
		if s.Refused != nil {
			_, _ = s.Refused(ctx, "user "+p.Subject, ev)
		} else {
			_ = s.Record(ctx, ev)
		}
		return d, &Denied{Subject: p.Subject, Action: action, Resource: res, Reason: d.Reason}
	}
	return d, nil
}

// versionDir is the blob key prefix of everything stored for a version, at any location.
func versionDir(name string, v uint64) string {
	return "objects/" + name + "/" + strconv.FormatUint(v, 10) + "/"
}

// dataBlob and headerBlob are the blob keys of o's ciphertext and header, at its location: as
// uploaded, objects/<name>/<version>/{data,header}; after a rekey, under a new subdirectory.
func dataBlob(o Object) string   { return blobDir(o) + "data" }
func headerBlob(o Object) string { return blobDir(o) + "header" }

func blobDir(o Object) string {
	d := versionDir(o.Name, o.Version)
	if o.Location != "" {
		d += o.Location + "/"
	}
	return d
}

// latest returns the newest ready version of name, or the given one.
func (s *Service) find(ctx context.Context, name string, version uint64) (Object, error) {
	if version != 0 {
		o, err := s.Meta.Object(ctx, name, version)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return o, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if err != nil {
			return o, err
		}
		if o.State != StateReady {
			return o, fmt.Errorf("%w: %s version %d is %s", ErrNotFound, Resource(name), version, o.State)
		}
		return o, nil
	}
	list, err := s.Meta.Objects(ctx, name)
	if err != nil {
		return Object{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].State == StateReady {
			return list[i], nil
		}
	}
	return Object{}, fmt.Errorf("%w: %s has no stored version", ErrNotFound, Resource(name))
}

// List returns the versions the caller may see: of names it may read, write or delete, or all
// for admins and auditors (seeAll).
func (s *Service) List(ctx context.Context, p identity.Principal, seeAll bool) ([]Object, error) {
	if !seeAll {
		// The list is filtered by decisions: when they cannot be trusted, say so rather than
		// answer with an empty list.
		if err := s.Decide.Health(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	all, err := s.Meta.Objects(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out := []Object{}
	for _, o := range all {
		if o.State == StateUploading || o.State == StateFailed {
			continue
		}
		if seeAll || s.may(p, ActionRead, o.Name) || s.may(p, ActionWrite, o.Name) || s.may(p, ActionDelete, o.Name) {
			out = append(out, o)
		}
	}
	return out, nil
}

func (s *Service) may(p identity.Principal, action, name string) bool {
	return s.Decide.Check(authz.Query{Subject: p.Subject, Action: action, Resource: Resource(name)}).Allowed
}
