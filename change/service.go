package change

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Ledger is what the service needs of the running ledger to build bundles (*audit.Ledger).
type Ledger interface {
	Checkpoint(ctx context.Context) ([]byte, audit.Checkpoint, error)
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
}

// Service runs change requests, reviews and verdicts. It is safe for concurrent use. Its errors
// are *access.Error values (the same kinds as the access workflow's, which transports map to
// statuses) or *access.StepUpRequired.
type Service struct {
	store  Store
	policy func() *policy.Policy
	ledger Ledger
	now    func() time.Time
	log    *slog.Logger
	refuse func(ctx context.Context, source string, e audit.Event) error
}

// Options configure a Service.
type Options struct {
	Store Store
	// Policy returns the policy in force (access.Service.Policy).
	Policy func() *policy.Policy
	Ledger Ledger
	// Refused records a refused update, aggregated per source (refusals.Recorder.Record):
	// whoever may push can provoke refusals at will (invariant 11). Nil: recorded one by one.
	Refused func(ctx context.Context, source string, e audit.Event) error
	Now     func() time.Time
	Logger  *slog.Logger
}

// NewService returns a Service.
func NewService(o Options) *Service {
	s := &Service{store: o.Store, policy: o.Policy, ledger: o.Ledger, now: o.Now, log: o.Logger, refuse: o.Refused}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.refuse == nil {
		s.refuse = func(ctx context.Context, _ string, e audit.Event) error {
			return s.store.UpdateChanges(ctx, func(tx Tx) error { _, err := tx.Append(ctx, e); return err })
		}
	}
	return s
}

func errorf(kind error, format string, args ...any) error {
	return &access.Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func (s *Service) txn(ctx context.Context, what string, fn func(Tx) error) error {
	err := s.store.UpdateChanges(ctx, fn)
	var ae *access.Error
	var su *access.StepUpRequired
	if err == nil || errors.As(err, &ae) || errors.As(err, &su) {
		return err
	}
	return &access.Error{Kind: access.ErrUnavailable, Msg: fmt.Sprintf("%s failed and nothing was changed: %v; retry when the store is healthy", what, err), Cause: err}
}

// FileInput is a change request as the requester's checkout computed it.
type FileInput struct {
	Requester  string
	Repository string
	Ref        string
	Base       string
	Source     string
	Tree       string
	Paths      []string
	Commits    []Commit
}

// View is a change with its reviews, the rules it needs under the policy in force, who may
// approve, and how its approvals count now.
type View struct {
	Change  Change                    `json:"change"`
	Reviews []Review                  `json:"reviews"`
	Explain *policy.ChangeExplanation `json:"explanation,omitempty"`
	Tally   *policy.Tally             `json:"tally,omitempty"`
	// Problem says why the policy in force cannot judge the change (a repository or ref no
	// longer protected), when it cannot.
	Problem string `json:"problem,omitempty"`
	// UnknownIdentities are commit addresses that name no user: they exclude nobody.
	UnknownIdentities []string `json:"unknown_identities,omitempty"`
}

func checkFiling(in FileInput) error {
	if !IsObjectID(in.Source) || !IsObjectID(in.Tree) || !(IsObjectID(in.Base)) {
		return errorf(access.ErrInvalid, "base, source and tree must be full hexadecimal object ids (base all zeros for a ref to be created)")
	}
	if len(in.Paths) > MaxPaths || len(in.Commits) > MaxCommits {
		return errorf(access.ErrInvalid, "a change may touch at most %d paths and bring at most %d commits; split it", MaxPaths, MaxCommits)
	}
	for i, p := range in.Paths {
		if !validPath(p) {
			return errorf(access.ErrInvalid, "paths[%d] is not a path git reports", i)
		}
	}
	if len(in.Commits) == 0 {
		return errorf(access.ErrInvalid, "a change brings at least one commit; the source is already in the base")
	}
	for i, c := range in.Commits {
		if !IsObjectID(c.ID) || len(c.Author) > maxIdent || len(c.Committer) > maxIdent || len(c.CoAuthors) > 100 {
			return errorf(access.ErrInvalid, "commits[%d] is malformed (a full id, addresses of at most %d bytes, at most 100 co-authors)", i, maxIdent)
		}
		for _, p := range c.Parents {
			if !IsObjectID(p) {
				return errorf(access.ErrInvalid, "commits[%d].parents holds %q, not an object id", i, p)
			}
		}
	}
	return nil
}

// File records a change request (change.request) and returns it with who may approve.
func (s *Service) File(ctx context.Context, in FileInput) (View, error) {
	if err := checkFiling(in); err != nil {
		return View{}, err
	}
	pol := s.policy()
	paths := sortedCopy(in.Paths)
	req, err := pol.ChangeRequirement(in.Repository, in.Ref, paths)
	if err != nil {
		return View{}, errorf(access.ErrInvalid, "%v", err)
	}
	parties := Parties(in.Commits, req.EmailDomains, in.Requester, "")
	membership, owners := pol.ChangeFacts(nil, parties)
	c := Change{ID: access.NewID("chg"), Repository: in.Repository, Ref: in.Ref, Base: in.Base, Source: in.Source, Tree: in.Tree,
		Paths: paths, Commits: in.Commits, Requester: in.Requester, State: StatePending, CreatedAt: s.now().UTC()}
	rec := RequestRecord{ID: c.ID, Repository: c.Repository, Ref: c.Ref, Base: c.Base, Source: c.Source, Tree: c.Tree, Requester: c.Requester,
		PathsDigest: PathsDigest(paths), PathsCount: len(paths), Commits: c.Commits, Rule: req.Rule(), Membership: membership, Owners: owners}
	limit := pol.Settings().MaxPendingRequests
	err = s.txn(ctx, "filing the change", func(tx Tx) error {
		// Invariant 11: whoever may file can make Rampart write; open changes per person are
		// bounded like pending requests (max_pending_requests), checked under the write lock.
		open, err := tx.ListChanges(ctx, Filter{Requester: in.Requester, States: []State{StatePending, StateApproved}, Limit: limit + 1})
		if err != nil {
			return err
		}
		if len(open) >= limit {
			return errorf(access.ErrLimited, "%s has %d open change requests already (max_pending_requests); wait for them to land, or be denied or voided, before filing more", in.Requester, len(open))
		}
		seq, err := tx.Append(ctx, audit.Event{Code: CodeRequest, Class: audit.ClassAPIActivity, Activity: audit.ActivityCreate, ActivityName: "Create",
			Time: c.CreatedAt, Actor: in.Requester, Resources: []string{"git/" + c.Repository}, Message: fmt.Sprintf("%s asked to merge %s into %s of %s (tree %s)", in.Requester, short(c.Source), c.Ref, c.Repository, short(c.Tree)),
			Details: map[string]any{"change": rec}})
		if err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		c.RequestSeq, c.Version = seq, seq
		return tx.InsertChange(ctx, c)
	})
	if err != nil {
		return View{}, err
	}
	return s.view(pol, c, nil), nil
}

// Get returns a change and its reviews.
func (s *Service) Get(ctx context.Context, id string) (View, error) {
	c, err := s.store.Change(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return View{}, errorf(access.ErrMissing, "change %q does not exist", id)
	} else if err != nil {
		return View{}, errorf(access.ErrUnavailable, "read change %s: %v", id, err)
	}
	rs, err := s.store.ChangeReviews(ctx, id)
	if err != nil {
		return View{}, errorf(access.ErrUnavailable, "read reviews of %s: %v", id, err)
	}
	return s.view(s.policy(), c, rs), nil
}

// List returns changes matching f, newest first.
func (s *Service) List(ctx context.Context, f Filter) ([]Change, error) {
	cs, err := s.store.ListChanges(ctx, f)
	if err != nil {
		return nil, errorf(access.ErrUnavailable, "list changes: %v", err)
	}
	return cs, nil
}

func (s *Service) view(pol *policy.Policy, c Change, rs []Review) View {
	v := View{Change: c, Reviews: rs}
	if v.Reviews == nil {
		v.Reviews = []Review{}
	}
	req, err := pol.ChangeRequirement(c.Repository, c.Ref, c.Paths)
	if err != nil {
		v.Problem = err.Error()
		return v
	}
	parties := Parties(c.Commits, req.EmailDomains, c.Requester, "")
	v.UnknownIdentities = unknownIdentities(c.Commits, req.EmailDomains)
	if e, err := pol.ExplainChange(c.Repository, c.Ref, c.Paths, parties); err == nil {
		v.Explain = e
	}
	approvers, _ := s.counted(req, c, rs, nil)
	t := pol.TallyChange(req.Policy, parties, approvers)
	v.Tally = &t
	return v
}

// counted returns the approvers of c whose approval counts for its base and tree under req (with
// the step-up req needs, as of when they approved), and the number of denials.
func (s *Service) counted(req *policy.ChangeRequirement, c Change, rs []Review, seqs *[]int64) (approvers []string, denials int) {
	for _, r := range rs {
		switch r.Decision {
		case Approve:
			if req.StepUp > 0 && (r.MFAAt.IsZero() || r.At.Sub(r.MFAAt) > req.StepUp) {
				continue
			}
			approvers = append(approvers, r.Approver)
			if seqs != nil {
				*seqs = append(*seqs, r.Seq)
			}
		case Deny:
			denials++
		}
	}
	return approvers, denials
}

// ReviewInput is one person's answer to a change, with the base and merge tree their own
// checkout computed (what they saw).
type ReviewInput struct {
	ChangeID     string
	Approver     string
	Decision     Decision
	Base         string
	Tree         string
	Comment      string
	MFAAt        time.Time
	SessionID    string
	CredentialID string
}

// Review records an approval or a denial (change.approve, change.deny), bound to the change's
// repository, ref, base and merge tree: the reviewer's base and tree must be the change's. An
// approver excluded from the change (a party, or tied to one) is refused, and so is an approval
// without the step-up the rules require. Reviewing twice the same way changes nothing.
func (s *Service) Review(ctx context.Context, in ReviewInput) (View, error) {
	if in.Decision != Approve && in.Decision != Deny {
		return View{}, errorf(access.ErrInvalid, "decision must be %q or %q", Approve, Deny)
	}
	if len(in.Comment) > access.MaxCommentLen {
		return View{}, errorf(access.ErrInvalid, "comment is longer than %d bytes", access.MaxCommentLen)
	}
	pol := s.policy()
	var out Change
	var outReviews []Review
	err := s.txn(ctx, "recording the review", func(tx Tx) error {
		c, err := tx.Change(ctx, in.ChangeID)
		if errors.Is(err, ErrNotFound) {
			return errorf(access.ErrMissing, "change %q does not exist", in.ChangeID)
		} else if err != nil {
			return err
		}
		if c.State != StatePending && c.State != StateApproved {
			return errorf(access.ErrConflict, "change %s is %s; only pending or approved changes can be reviewed (file a new request)", c.ID, c.State)
		}
		if in.Base != c.Base || in.Tree != c.Tree {
			return errorf(access.ErrConflict, "your checkout computes merge tree %s from base %s, but change %s is for tree %s from base %s: you would approve something you have not seen; fetch, check out the change's source and look again (rampart change show %s)",
				short(in.Tree), short(in.Base), c.ID, short(c.Tree), short(c.Base), c.ID)
		}
		req, err := pol.ChangeRequirement(c.Repository, c.Ref, c.Paths)
		if err != nil {
			return errorf(access.ErrConflict, "change %s can no longer be reviewed: %v", c.ID, err)
		}
		parties := Parties(c.Commits, req.EmailDomains, c.Requester, "")
		if _, why := pol.ChangeEligibleSteps(req.Policy, in.Approver, parties); why != "" {
			return errorf(access.ErrForbidden, "%s may not review change %s: %s %s under %s", in.Approver, c.ID, in.Approver, why, req.Policy.Name)
		}
		now := s.now().UTC()
		if in.Decision == Approve && req.StepUp > 0 {
			if age := now.Sub(in.MFAAt); in.MFAAt.IsZero() || age > req.StepUp || age < -time.Minute {
				return &access.StepUpRequired{RequestID: c.ID, Policy: req.StepUpPolicy, MaxAge: req.StepUp, MFAAt: in.MFAAt, At: now}
			}
		}
		rs, err := tx.ChangeReviews(ctx, c.ID)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Approver == in.Approver && r.Decision == in.Decision {
				out, outReviews = c, rs
				return nil
			}
		}
		rec := ReviewRecord{ChangeID: c.ID, Repository: c.Repository, Ref: c.Ref, Base: c.Base, Tree: c.Tree, Approver: in.Approver, Decision: in.Decision,
			Groups: append([]string{}, pol.GroupsOf(in.Approver)...), SessionID: in.SessionID, CredentialID: in.CredentialID, Comment: in.Comment}
		if !in.MFAAt.IsZero() {
			rec.MFAAt = in.MFAAt.UTC().Format(time.RFC3339Nano)
		}
		code := CodeApprove
		if in.Decision == Deny {
			code = CodeDeny
		}
		seq, err := tx.Append(ctx, audit.Event{Code: code, Class: audit.ClassAPIActivity, Activity: audit.ActivityUpdate, ActivityName: "Update", Time: now,
			Actor: in.Approver, Resources: []string{"git/" + c.Repository}, Message: fmt.Sprintf("%s %sd change %s: tree %s from %s on %s of %s", in.Approver, in.Decision, c.ID, short(c.Tree), short(c.Base), c.Ref, c.Repository),
			Details: map[string]any{"review": rec}})
		if err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		r := Review{ChangeID: c.ID, Approver: in.Approver, Decision: in.Decision, Comment: in.Comment, At: now, MFAAt: in.MFAAt, SessionID: in.SessionID, CredentialID: in.CredentialID, Seq: seq}
		if err := tx.PutChangeReview(ctx, r); err != nil {
			return err
		}
		rs = replaceReview(rs, r)
		approvers, denials := s.counted(req, c, rs, nil)
		switch {
		case denials >= max(req.Policy.DenyCount, 1):
			c.State, c.DecidedAt = StateDenied, now
		case pol.TallyChange(req.Policy, parties, approvers).Satisfied:
			c.State = StateApproved
		default:
			c.State = StatePending
		}
		c.Version = seq
		out, outReviews = c, rs
		return tx.UpdateChange(ctx, c)
	})
	if err != nil {
		return View{}, err
	}
	return s.view(pol, out, outReviews), nil
}

func replaceReview(rs []Review, r Review) []Review {
	for i := range rs {
		if rs[i].Approver == r.Approver {
			rs[i] = r
			return rs
		}
	}
	return append(rs, r)
}

func sortedCopy(in []string) []string {
	out := append([]string{}, in...)
	sort.Strings(out)
	return out
}

// bundle builds the approvals bundle of the given ledger entries: a checkpoint covering all of
// them (signed now if the newest does not) and an inclusion proof for each.
func (s *Service) bundle(ctx context.Context, seqs []int64) (*Bundle, error) {
	if s.ledger == nil {
		return nil, errors.New("no ledger to prove entries with")
	}
	signed, cp, err := s.ledger.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("sign a checkpoint: %w", err)
	}
	b := &Bundle{Format: BundleFormat, Checkpoint: signed}
	for _, seq := range seqs {
		if seq < 0 || uint64(seq) >= cp.Size {
			return nil, fmt.Errorf("ledger entry %d is not covered by the newest checkpoint (size %d) yet; try again in a second", seq, cp.Size)
		}
		recs, err := s.store.Entries(ctx, seq, 1)
		if err != nil || len(recs) != 1 || recs[0].Seq != seq {
			return nil, fmt.Errorf("read ledger entry %d: %v", seq, err)
		}
		proof, err := s.ledger.InclusionProof(ctx, uint64(seq), cp.Size)
		if err != nil {
			return nil, fmt.Errorf("prove ledger entry %d: %w", seq, err)
		}
		be := BundleEntry{Index: uint64(seq), Entry: string(recs[0].Data), Proof: make([]string, len(proof))}
		for i, h := range proof {
			be.Proof[i] = base64.StdEncoding.EncodeToString(h)
		}
		b.Entries = append(b.Entries, be)
	}
	return b, nil
}

// Bundle returns the approvals bundle of a change for the offline hook: its request and every
// approval, with proofs to a signed checkpoint.
func (s *Service) Bundle(ctx context.Context, id string) (*Bundle, error) {
	v, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	seqs := []int64{v.Change.RequestSeq}
	for _, r := range v.Reviews {
		if r.Decision == Approve {
			seqs = append(seqs, r.Seq)
		}
	}
	if v.Change.LandSeq > 0 {
		seqs = append(seqs, v.Change.LandSeq)
	}
	b, err := s.bundle(ctx, seqs)
	if err != nil {
		return nil, errorf(access.ErrUnavailable, "the bundle of change %s: %v", id, err)
	}
	return b, nil
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// Landed reports whether the change gate landed commit sha on ref of repository: the commit is
// the tip a landed change's update brought, under the rules in force then. It answers from the
// store; an error means it cannot tell, and callers refuse (invariant 6). CI job identity asks
// it before a pipeline that needs approved changes gets a token (package ci).
func (s *Service) Landed(ctx context.Context, repository, ref, sha string) (bool, error) {
	if !IsObjectID(sha) {
		return false, nil
	}
	cs, err := s.store.ListChanges(ctx, Filter{Repository: repository, Ref: ref, LandedAs: sha, States: []State{StateLanded}, Limit: 1})
	if err != nil {
		return false, err
	}
	return len(cs) == 1, nil
}
