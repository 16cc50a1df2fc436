package change

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Update is one ref update as the Git server sees it, with what the hook computed from git.
type Update struct {
	Repository string `json:"repository"`
	Ref        string `json:"ref"`
	Old        string `json:"old"`
	New        string `json:"new"`
	// FirstParent is the new tip's first parent ("" for a root commit or a deletion); Tree its
	// tree.
	FirstParent string `json:"first_parent"`
	Tree        string `json:"tree"`
	// Paths changed from the old tip's tree to the new tip's; Commits reachable from New and not
	// from Old (with their identities).
	Paths   []string `json:"paths"`
	Commits []Commit `json:"commits"`
	// Pusher is who pushes, as the Git server authenticated them.
	Pusher string `json:"pusher"`
}

// Verdict is the decision on an update.
type Verdict struct {
	// Protected is false for a ref no rule protects (allowed, nothing recorded).
	Protected bool   `json:"protected"`
	Allowed   bool   `json:"allowed"`
	Reason    string `json:"reason"`
	ChangeID  string `json:"change_id,omitempty"`
	// Tally is how the approvals counted, for the change that came closest.
	Tally *policy.Tally `json:"tally,omitempty"`
	// Bundle is the landing's approvals bundle, to publish as the new tip's note.
	Bundle *Bundle `json:"bundle,omitempty"`
	// Warning says what went wrong after the landing was recorded (no bundle yet).
	Warning string `json:"warning,omitempty"`
}

// Shape refuses what no approval can allow: deleting a protected ref, and an update that is not
// one first-parent step from the old tip (a force-push, a fast-forward of several commits). It
// returns "" for an update of the right shape.
func Shape(u Update) string {
	switch {
	case IsZero(u.New):
		return fmt.Sprintf("deleting %s is refused: it is protected; nobody may delete it", u.Ref)
	case IsZero(u.Old):
		if u.FirstParent != "" {
			return fmt.Sprintf("creating %s is refused unless its first commit has no parent and was approved; create it with an approved change from base 0000000", u.Ref)
		}
		return ""
	case u.FirstParent != u.Old:
		return fmt.Sprintf("the update of %s from %s to %s is not one first-parent step from the old tip (a force-push, a rewrite, or a fast-forward of several commits): push a merge commit made with git merge --no-ff (or a squashed commit) on top of %s", u.Ref, short(u.Old), short(u.New), short(u.Old))
	}
	return ""
}

// reservedRef refuses every push to the notes ref that carries the approvals: only the Git
// server's post-receive hook writes it, in the repository itself (no push, so no pre-receive).
// Pushed, it could delete or replace the approvals that make the history verifiable, and a server
// loading its policy from Git verifies them again at every start.
func reservedRef(ref string) string {
	if ref == NotesRef {
		return fmt.Sprintf("%s holds the approvals the Git server publishes; only its post-receive hook writes it, nobody pushes to it", NotesRef)
	}
	return ""
}

func checkUpdate(u Update) error {
	for _, id := range []string{u.Old, u.New} {
		if !IsObjectID(id) {
			return errorf(access.ErrInvalid, "old and new must be full object ids")
		}
	}
	if !IsZero(u.New) && !IsObjectID(u.Tree) {
		return errorf(access.ErrInvalid, "tree must be the new tip's tree id")
	}
	if u.FirstParent != "" && !IsObjectID(u.FirstParent) {
		return errorf(access.ErrInvalid, "first_parent must be an object id")
	}
	if len(u.Paths) > MaxPaths || len(u.Commits) > MaxCommits {
		return errorf(access.ErrInvalid, "an update may carry at most %d paths and %d commits", MaxPaths, MaxCommits)
	}
	for i, p := range u.Paths {
		if !validPath(p) {
			return errorf(access.ErrInvalid, "paths[%d] is not a path git reports", i)
		}
	}
	for i, c := range u.Commits {
		if !IsObjectID(c.ID) || len(c.Author) > maxIdent || len(c.Committer) > maxIdent || len(c.CoAuthors) > 100 {
			return errorf(access.ErrInvalid, "commits[%d] is malformed", i)
		}
	}
	if err := policy.ValidateSubject(u.Pusher); err != nil {
		return errorf(access.ErrInvalid, "pusher: %v; the hook could not tell who pushes (set REMOTE_USER, or --pusher)", err)
	}
	return nil
}

// Decide decides an update for the Git server's hook, under the policy in force: caller must be
// one of the repository's git_servers. A protected ref's update lands only when a change filed
// for exactly its old tip and new tree has quorum, with the change's requester and commits, the
// pushed commits and the pusher excluded. A landing is recorded (change.land, and the ref's other
// open changes voided, change.void) and comes back with its bundle; a refusal is recorded through
// Options.Refused.
func (s *Service) Decide(ctx context.Context, caller string, u Update) (Verdict, error) {
	if err := checkUpdate(u); err != nil {
		return Verdict{}, err
	}
	pol := s.policy()
	repo, ok := pol.Repository(u.Repository)
	if !ok {
		return Verdict{}, errorf(access.ErrInvalid, "repository %q is not declared in the policy (kind: Repository); fix the hook's --repository", u.Repository)
	}
	if !contains(repo.GitServers, caller) {
		return Verdict{}, errorf(access.ErrForbidden, "%s may not decide updates of repository %s: only its git_servers (%s) may; give the hook a token of one of them", caller, u.Repository, quoteList(repo.GitServers))
	}
	if why := reservedRef(u.Ref); why != "" {
		return s.refused(ctx, u, Verdict{Protected: true, Reason: why})
	}
	if _, protected := repo.ProtectedRef(u.Ref); !protected {
		return Verdict{Allowed: true, Reason: u.Ref + " is not protected"}, nil
	}
	if why := Shape(u); why != "" {
		return s.refused(ctx, u, Verdict{Protected: true, Reason: why})
	}
	req, err := pol.ChangeRequirement(u.Repository, u.Ref, u.Paths)
	if err != nil {
		return Verdict{}, errorf(access.ErrInvalid, "%v", err)
	}
	cands, err := s.store.ListChanges(ctx, Filter{Repository: u.Repository, Ref: u.Ref, Base: u.Old, Tree: u.Tree, States: []State{StatePending, StateApproved}})
	if err != nil {
		return Verdict{}, errorf(access.ErrUnavailable, "find the change for this update: %v", err)
	}
	if len(cands) == 0 {
		return s.refused(ctx, u, Verdict{Protected: true, Reason: fmt.Sprintf(
			"no approved change merges tree %s into %s from %s: ask for one with `rampart change request --repo . --ref %s --source <your branch>` and have it approved (a change filed from another base or for another tree does not count: the ref or the branch moved since; file a new one)",
			short(u.Tree), u.Ref, short(u.Old), u.Ref)})
	}
	var best Verdict
	for _, c := range cands {
		if PathsDigest(c.Paths) != PathsDigest(u.Paths) {
			continue // filed with other paths than git computes: not this change
		}
		rs, err := s.store.ChangeReviews(ctx, c.ID)
		if err != nil {
			return Verdict{}, errorf(access.ErrUnavailable, "read the reviews of %s: %v", c.ID, err)
		}
		var seqs []int64
		approvers, denials := s.counted(req, c, rs, &seqs)
		parties := Parties(append(append([]Commit{}, c.Commits...), u.Commits...), req.EmailDomains, c.Requester, u.Pusher)
		t := pol.TallyChange(req.Policy, parties, approvers)
		if denials >= max(req.Policy.DenyCount, 1) {
			best = Verdict{Protected: true, ChangeID: c.ID, Tally: &t, Reason: fmt.Sprintf("change %s was denied by %d eligible reviewer(s)", c.ID, denials)}
			continue
		}
		if t.Satisfied {
			return s.land(ctx, pol, req, c, u, parties, approvers, seqs, t)
		}
		if best.ChangeID == "" || best.Tally == nil {
			best = Verdict{Protected: true, ChangeID: c.ID, Tally: &t, Reason: missing(c.ID, req, t)}
		}
	}
	if best.ChangeID == "" {
		best = Verdict{Protected: true, Reason: fmt.Sprintf("the change filed for tree %s lists other changed paths than git computes for this update; file a new request with rampart change request", short(u.Tree))}
	}
	return s.refused(ctx, u, best)
}

// missing says what a change still lacks, and the command that gives it.
func missing(id string, req *policy.ChangeRequirement, t policy.Tally) string {
	var need []string
	for _, st := range t.Steps {
		if n := st.Need - len(st.Counted); n > 0 {
			need = append(need, fmt.Sprintf("%d more from %s (%s)", n, strings.Join(st.From, " or "), st.Name))
		}
	}
	msg := fmt.Sprintf("change %s lacks approvals under %s: needs %s", id, req.Policy.Name, strings.Join(need, "; "))
	for _, ig := range t.Ignored {
		msg += fmt.Sprintf("; %s does not count: %s %s", ig.Approver, ig.Approver, ig.Why)
	}
	return msg + fmt.Sprintf("; ask an eligible approver (rampart policy explain --repository %s --ref %s) to run `rampart change approve %s`", req.Repository, req.Ref, id)
}

func (s *Service) refused(ctx context.Context, u Update, v Verdict) (Verdict, error) {
	e := audit.Event{Code: CodeRefused, Class: audit.ClassAPIActivity, Activity: audit.ActivityUpdate, ActivityName: "Update", Time: s.now().UTC(),
		Actor: u.Pusher, Failed: true, Resources: []string{"git/" + u.Repository}, Message: fmt.Sprintf("push of %s to %s of %s refused: %s", short(u.New), u.Ref, u.Repository, v.Reason),
		Details: map[string]any{"repository": u.Repository, "ref": u.Ref, "old": u.Old, "new": u.New, "tree": u.Tree, "pusher": u.Pusher, "change_id": v.ChangeID, "reason": v.Reason}}
	if err := s.refuse(ctx, "git:"+u.Pusher, e); err != nil {
		// The refusal stands; only its record failed. Never allow because of it.
		s.log.Warn("a refused push could not be recorded", "err", err)
	}
	return v, nil
}

func (s *Service) land(ctx context.Context, pol *policy.Policy, req *policy.ChangeRequirement, c Change, u Update, parties []policy.ChangeParty, approvers []string, seqs []int64, t policy.Tally) (Verdict, error) {
	membership, owners := pol.ChangeFacts(approvers, parties)
	rec := LandRecord{ChangeID: c.ID, Repository: u.Repository, Ref: u.Ref, Old: u.Old, New: u.New, Tree: u.Tree, Pusher: u.Pusher,
		PathsDigest: PathsDigest(u.Paths), PathsCount: len(u.Paths), RequestSeq: c.RequestSeq, ApprovalSeqs: seqs, Rule: req.Rule(),
		Membership: membership, Owners: owners, Parties: parties, Tally: t}
	now := s.now().UTC()
	var landSeq int64
	err := s.txn(ctx, "recording the landing", func(tx Tx) error {
		cur, err := tx.Change(ctx, c.ID)
		if err != nil {
			return err
		}
		if cur.State != StatePending && cur.State != StateApproved {
			return errorf(access.ErrConflict, "change %s is %s", c.ID, cur.State)
		}
		landSeq, err = tx.Append(ctx, audit.Event{Code: CodeLand, Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate, ActivityName: "Update", Time: now,
			Actor: u.Pusher, Resources: []string{"git/" + u.Repository}, Message: fmt.Sprintf("%s pushed %s to %s of %s: change %s, approved by %s", u.Pusher, short(u.New), u.Ref, u.Repository, c.ID, strings.Join(counted(t), ", ")),
			Details: map[string]any{"landing": rec}})
		if err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		cur.State, cur.DecidedAt, cur.LandSeq, cur.LandedAs, cur.Version = StateLanded, now, landSeq, u.New, landSeq
		if err := tx.UpdateChange(ctx, cur); err != nil {
			return err
		}
		// The ref moves: every other open change of it was computed from a base it no longer has.
		open, err := tx.ListChanges(ctx, Filter{Repository: u.Repository, Ref: u.Ref, States: []State{StatePending, StateApproved}})
		if err != nil {
			return err
		}
		for _, o := range open {
			if o.ID == c.ID || o.Base == u.New {
				continue
			}
			seq, err := tx.Append(ctx, audit.Event{Code: CodeVoid, Class: audit.ClassAPIActivity, Activity: audit.ActivityUpdate, ActivityName: "Update", Time: now,
				Actor: audit.SystemActor, Resources: []string{"git/" + o.Repository}, Message: fmt.Sprintf("change %s is void: %s moved from its base %s to %s; its approvals count for nothing; file a new request", o.ID, o.Ref, short(o.Base), short(u.New)),
				Details: map[string]any{"change_id": o.ID, "repository": o.Repository, "ref": o.Ref, "base": o.Base, "tree": o.Tree, "ref_now": u.New}})
			if err != nil {
				return fmt.Errorf("append to ledger: %w", err)
			}
			o.State, o.DecidedAt, o.Version = StateVoid, now, seq
			if err := tx.UpdateChange(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var ae *access.Error
		if errors.As(err, &ae) && errors.Is(err, access.ErrConflict) {
			return s.refused(ctx, u, Verdict{Protected: true, ChangeID: c.ID, Reason: ae.Msg})
		}
		return Verdict{}, err
	}
	v := Verdict{Protected: true, Allowed: true, ChangeID: c.ID, Tally: &t, Reason: fmt.Sprintf("change %s approved by %s", c.ID, strings.Join(counted(t), ", "))}
	b, err := s.bundle(ctx, append(append([]int64{c.RequestSeq}, seqs...), landSeq))
	if err != nil {
		v.Warning = fmt.Sprintf("the landing is recorded, but its bundle could not be built (%v): run `rampart change publish` to write the note", err)
	} else {
		v.Bundle = b
	}
	return v, nil
}

func counted(t policy.Tally) []string {
	var out []string
	for _, st := range t.Steps {
		out = append(out, st.Counted...)
	}
	return out
}

// Publish returns the bundle of the landing of change id (request, approvals and landing), to
// write as the note of the commit it landed (rampart change publish).
func (s *Service) Publish(ctx context.Context, id string) (*Bundle, string, error) {
	v, err := s.Get(ctx, id)
	if err != nil {
		return nil, "", err
	}
	if v.Change.State != StateLanded || v.Change.LandSeq == 0 {
		return nil, "", errorf(access.ErrConflict, "change %s has not landed (it is %s)", id, v.Change.State)
	}
	b, err := s.Bundle(ctx, id)
	return b, v.Change.LandedAs, err
}
