package change

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/mod/sumdb/note"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/strictjson"
	"rampart.dev/rampart/policy"
)

// BundleFormat is the format line of an approvals bundle.
const BundleFormat = "rampart-change-bundle/v1"

// Limits on a bundle read from a repository or a file: whoever can push notes can write one.
const (
	MaxBundle        = 4 << 20
	maxBundleEntries = 1000
	maxProofHashes   = 64
)

// Bundle is a set of ledger entries with inclusion proofs to one signed checkpoint: what a note
// under refs/notes/rampart holds for a landed commit (the request, its approvals and the
// landing), and what the offline hook reads (a request and its approvals). Anyone with the
// ledger's public key can check it (OpenBundle).
type Bundle struct {
	Format string `json:"format"`
	// Checkpoint is the signed checkpoint, as /v1/audit/checkpoint serves it (base64 in JSON: a
	// signed note is lines of text).
	Checkpoint []byte        `json:"checkpoint"`
	Entries    []BundleEntry `json:"entries"`
}

// BundleEntry is one ledger entry, its position in the ledger and its inclusion proof.
type BundleEntry struct {
	Index uint64   `json:"index"`
	Entry string   `json:"entry"`
	Proof []string `json:"proof"`
}

// Marshal encodes the bundle (compact JSON, a trailing newline).
func (b *Bundle) Marshal() []byte {
	out, err := json.Marshal(b)
	if err != nil {
		panic(err) // strings and numbers always encode
	}
	return append(out, '\n')
}

// ParseBundle decodes a bundle strictly: at most MaxBundle bytes, UTF-8, no duplicate or unknown
// member, nothing after it, the known format, at most 1,000 entries of at most 64 proof hashes.
// It checks no signature: OpenBundle does.
func ParseBundle(data []byte) (*Bundle, error) {
	if len(data) > MaxBundle {
		return nil, fmt.Errorf("approvals bundle is %d bytes; the limit is %d", len(data), MaxBundle)
	}
	if err := strictjson.Check(data); err != nil {
		return nil, fmt.Errorf("approvals bundle: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Bundle
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("approvals bundle is not valid: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("approvals bundle has data after its end")
	}
	if b.Format != BundleFormat {
		return nil, fmt.Errorf("approvals bundle format %q; this version reads %q", b.Format, BundleFormat)
	}
	if len(b.Checkpoint) == 0 {
		return nil, errors.New("approvals bundle has no checkpoint")
	}
	if len(b.Entries) == 0 || len(b.Entries) > maxBundleEntries {
		return nil, fmt.Errorf("approvals bundle has %d entries; it needs 1 to %d", len(b.Entries), maxBundleEntries)
	}
	for i, e := range b.Entries {
		if len(e.Proof) > maxProofHashes {
			return nil, fmt.Errorf("entries[%d]: a proof of %d hashes; at most %d", i, len(e.Proof), maxProofHashes)
		}
	}
	return &b, nil
}

// Entry is a ledger entry of a bundle whose inclusion in a signed checkpoint was verified.
type Entry struct {
	Seq   int64
	Code  string
	Actor string
	Time  time.Time
	// Exactly one of these is set, by Code.
	Request *RequestRecord
	Review  *ReviewRecord
	Land    *LandRecord
}

// RequestRecord is what a change.request entry binds (unmapped.change).
type RequestRecord struct {
	ID          string            `json:"id"`
	Repository  string            `json:"repository"`
	Ref         string            `json:"ref"`
	Base        string            `json:"base"`
	Source      string            `json:"source"`
	Tree        string            `json:"tree"`
	Requester   string            `json:"requester"`
	PathsDigest string            `json:"paths_digest"`
	PathsCount  int               `json:"paths_count"`
	Commits     []Commit          `json:"commits"`
	Rule        policy.ChangeRule `json:"rule"`
	// Membership and Owners are policy.ChangeFacts of the parties at filing: what the offline
	// hook counts with.
	Membership map[string][]string `json:"membership"`
	Owners     map[string][]string `json:"owners,omitempty"`
}

// ReviewRecord is what a change.approve or change.deny entry binds (unmapped.review).
type ReviewRecord struct {
	ChangeID   string   `json:"change_id"`
	Repository string   `json:"repository"`
	Ref        string   `json:"ref"`
	Base       string   `json:"base"`
	Tree       string   `json:"tree"`
	Approver   string   `json:"approver"`
	Decision   Decision `json:"decision"`
	// Groups are the approver's policy groups when they reviewed.
	Groups       []string `json:"groups"`
	MFAAt        string   `json:"mfa_at,omitempty"`
	SessionID    string   `json:"session_id,omitempty"`
	CredentialID string   `json:"credential_id,omitempty"`
	Comment      string   `json:"comment,omitempty"`
}

// LandRecord is what a change.land entry binds (unmapped.landing): the update the hook let
// through, and everything the decision was made with.
type LandRecord struct {
	ChangeID     string               `json:"change_id"`
	Repository   string               `json:"repository"`
	Ref          string               `json:"ref"`
	Old          string               `json:"old"`
	New          string               `json:"new"`
	Tree         string               `json:"tree"`
	Pusher       string               `json:"pusher"`
	PathsDigest  string               `json:"paths_digest"`
	PathsCount   int                  `json:"paths_count"`
	RequestSeq   int64                `json:"request_seq"`
	ApprovalSeqs []int64              `json:"approval_seqs"`
	Rule         policy.ChangeRule    `json:"rule"`
	Membership   map[string][]string  `json:"membership"`
	Owners       map[string][]string  `json:"owners,omitempty"`
	Parties      []policy.ChangeParty `json:"parties"`
	Tally        policy.Tally         `json:"tally"`
	// Offline is set when the update was let through by the offline hook and recorded later
	// (rampart change publish).
	Offline bool `json:"offline,omitempty"`
}

// OpenBundle verifies a bundle with the ledger's public key: its checkpoint must be signed by the
// key, and every entry must be included in it at the position its sequence number says. It
// returns the entries, decoded, in the bundle's order.
func OpenBundle(b *Bundle, v note.Verifier) ([]Entry, audit.Checkpoint, error) {
	cp, err := audit.OpenCheckpoint(b.Checkpoint, v)
	if err != nil {
		return nil, cp, fmt.Errorf("approvals bundle: %w", err)
	}
	return openEntries(b, cp)
}

func openEntries(b *Bundle, cp audit.Checkpoint) ([]Entry, audit.Checkpoint, error) {
	out := make([]Entry, 0, len(b.Entries))
	for i, be := range b.Entries {
		if be.Index >= cp.Size {
			return nil, cp, fmt.Errorf("entries[%d]: entry %d is beyond the checkpoint, which covers %d entries", i, be.Index, cp.Size)
		}
		proof := make([][]byte, len(be.Proof))
		for j, h := range be.Proof {
			raw, err := base64.StdEncoding.Strict().DecodeString(h)
			if err != nil || len(raw) != 32 {
				return nil, cp, fmt.Errorf("entries[%d].proof[%d] is not a base64 SHA-256 hash", i, j)
			}
			proof[j] = raw
		}
		data := []byte(be.Entry)
		if err := audit.VerifyInclusion(be.Index, cp.Size, audit.LeafHash(data), proof, cp.Root); err != nil {
			return nil, cp, fmt.Errorf("entries[%d] (ledger entry %d) is not in the signed checkpoint of size %d: %v; the entry or its proof was altered, or the proof is for another checkpoint", i, be.Index, cp.Size, err)
		}
		e, err := decodeEntry(data)
		if err != nil {
			return nil, cp, fmt.Errorf("entries[%d]: %w", i, err)
		}
		if e.Seq != int64(be.Index) {
			return nil, cp, fmt.Errorf("entries[%d]: entry says it is number %d, the bundle places it at %d", i, e.Seq, be.Index)
		}
		out = append(out, e)
	}
	return out, cp, nil
}

// decodeEntry reads a change entry's code, sequence, actor, time and record.
func decodeEntry(data []byte) (Entry, error) {
	var raw struct {
		Time     int64 `json:"time"`
		Metadata struct {
			EventCode string `json:"event_code"`
			Sequence  *int64 `json:"sequence"`
		} `json:"metadata"`
		Actor struct {
			User struct {
				Name string `json:"name"`
			} `json:"user"`
		} `json:"actor"`
		Unmapped struct {
			Change  *RequestRecord `json:"change"`
			Review  *ReviewRecord  `json:"review"`
			Landing *LandRecord    `json:"landing"`
		} `json:"unmapped"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Entry{}, fmt.Errorf("ledger entry is not valid JSON: %v", err)
	}
	if raw.Metadata.Sequence == nil {
		return Entry{}, errors.New("ledger entry has no sequence number")
	}
	e := Entry{Seq: *raw.Metadata.Sequence, Code: raw.Metadata.EventCode, Actor: raw.Actor.User.Name, Time: time.UnixMilli(raw.Time).UTC()}
	switch e.Code {
	case CodeRequest:
		e.Request = raw.Unmapped.Change
	case CodeApprove, CodeDeny:
		e.Review = raw.Unmapped.Review
	case CodeLand:
		e.Land = raw.Unmapped.Landing
	default:
		return e, fmt.Errorf("ledger entry %d is a %q entry, not one a bundle holds", e.Seq, e.Code)
	}
	if e.Request == nil && e.Review == nil && e.Land == nil {
		return e, fmt.Errorf("ledger entry %d (%s) lacks its record", e.Seq, e.Code)
	}
	return e, nil
}

// Ledger entry codes of changes (docs/ledger.md).
const (
	CodeRequest = "change.request"
	CodeApprove = "change.approve"
	CodeDeny    = "change.deny"
	CodeLand    = "change.land"
	CodeVoid    = "change.void"
	CodeRefused = "change.refused"
)
