package change

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/gittree"
	"rampart.dev/rampart/policy"
)

// VerifyOptions say what to verify.
type VerifyOptions struct {
	// Repository is the repository's name in the policy (kind: Repository): the binding every
	// entry must name. A note copied from another repository names another.
	Repository string
	// Ref is the protected ref as the policy names it (refs/heads/main); Rev is what to walk in
	// the checkout (default Ref; e.g. refs/remotes/origin/main in a clone).
	Ref string
	Rev string
	// Since is the commit verification starts after (its state is trusted, as pinned); "" starts
	// after the root commit of the first-parent chain.
	Since string
	// Key verifies the ledger's checkpoints: the pinned public key.
	Key note.Verifier
	// PolicyPath, when set, is where the policy files are in the repository itself (a policy
	// repository guarding itself): each update is judged by the rules of the policy at its
	// parent, not by the rule the server recorded.
	PolicyPath string
}

// Violation is an update that does not verify.
type Violation struct {
	Commit string `json:"commit"`
	Parent string `json:"parent"`
	Reason string `json:"reason"`
}

// Report is the outcome of VerifyHistory.
type Report struct {
	Repository string      `json:"repository"`
	Ref        string      `json:"ref"`
	Tip        string      `json:"tip"`
	From       string      `json:"from"`
	Updates    int         `json:"updates"`
	Violations []Violation `json:"violations"`
}

// VerifyHistory walks the first-parent history of the protected ref from Since (or the root) to
// its tip and checks every update C (with first parent P) against the note on C: a landing of
// this repository and ref from P to C with tree(C), signed by the ledger (an inclusion proof to a
// checkpoint the pinned key signed), the request and approvals it names bound to the same
// repository, ref, base P and tree(C), and quorum counted again (policy.RuleTally) with the
// parties recomputed from git: the authors, committers and co-authors of C ^P, the requester and
// the pusher. It needs nothing but the repository and the key. An error means it could not
// verify at all (exit 1); violations are listed in the report (exit 3).
func VerifyHistory(ctx context.Context, g *Git, o VerifyOptions) (*Report, error) {
	if o.Key == nil {
		return nil, errors.New("a ledger public key is required (--key)")
	}
	if err := policy.ValidateName(o.Repository); err != nil {
		return nil, fmt.Errorf("repository: %v", err)
	}
	rev := o.Rev
	if rev == "" {
		rev = o.Ref
	}
	tip, err := g.ResolveCommit(ctx, rev)
	if err != nil {
		return nil, err
	}
	since := ""
	if o.Since != "" {
		if since, err = g.ResolveCommit(ctx, o.Since); err != nil {
			return nil, fmt.Errorf("--since: %w", err)
		}
		if ok, err := g.IsAncestor(ctx, since, tip); err != nil || !ok {
			return nil, fmt.Errorf("--since %s is not an ancestor of %s: the history was rewritten, or it is another branch", short(since), rev)
		}
	}
	chain, err := g.FirstParentHistory(ctx, tip, since)
	if err != nil {
		return nil, err
	}
	// Oldest first.
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	rep := &Report{Repository: o.Repository, Ref: o.Ref, Tip: tip, Violations: []Violation{}}
	if since == "" {
		if len(chain) == 0 {
			return rep, nil
		}
		since, chain = chain[0].ID, chain[1:] // the root is the starting state
	}
	rep.From = since
	v, err := newVerifier(ctx, g, o, since, tip)
	if err != nil {
		return nil, err
	}
	for _, c := range chain {
		rep.Updates++
		if why := v.update(ctx, c); why != "" {
			rep.Violations = append(rep.Violations, Violation{Commit: c.ID, Parent: first(c.Parents), Reason: why})
		}
	}
	return rep, nil
}

func first(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[0]
}

// Approved reports whether commit landed on ref of the repository as an approved update of its
// first parent, under the rules in force at that parent: nil when it did, otherwise an error
// saying why. With policyPath the rules are the policy files at the parent in the repository
// itself (how a server that loads its own policy from Git accepts a new policy commit: weakening
// the rules needs approval under the old ones); without, the rule the ledger recorded at the
// landing. It needs the repository (with refs/notes/rampart) and the ledger's public key.
func Approved(ctx context.Context, g *Git, repository, ref, commit string, key note.Verifier, policyPath string) error {
	c, err := g.ResolveCommit(ctx, commit)
	if err != nil {
		return err
	}
	chain, err := g.FirstParentHistory(ctx, c, "")
	if err != nil || len(chain) == 0 {
		return fmt.Errorf("read commit %s: %v", short(c), err)
	}
	if len(chain[0].Parents) == 0 {
		return fmt.Errorf("commit %s has no parent: a first state is pinned, not approved", short(c))
	}
	o := VerifyOptions{Repository: repository, Ref: ref, Key: key, PolicyPath: policyPath}
	v, err := newVerifier(ctx, g, o, chain[0].Parents[0], c)
	if err != nil {
		return err
	}
	if why := v.update(ctx, chain[0]); why != "" {
		return fmt.Errorf("commit %s is not an approved update of %s: %s", short(c), ref, why)
	}
	return nil
}

// verifier holds what checking the updates of one history needs, read from git in batches.
type verifier struct {
	g        *Git
	o        VerifyOptions
	notes    map[string][]byte
	commits  map[string]Commit // every commit reachable from the tip
	seen     map[string]bool   // commits reachable from the state verified so far
	trees    map[string]string // commit → tree
	paths    map[[2]string][]string
	cps      map[string]audit.Checkpoint // verified checkpoints, by signed text
	opened   map[string]opened           // notes parsed and opened beforehand, by commit
	policies map[string]*policy.Policy   // by commit
}

func newVerifier(ctx context.Context, g *Git, o VerifyOptions, since, tip string) (*verifier, error) {
	v := &verifier{g: g, o: o, seen: map[string]bool{}, trees: map[string]string{}, cps: map[string]audit.Checkpoint{}, policies: map[string]*policy.Policy{}}
	var err error
	if v.notes, err = g.Notes(ctx, NotesRef); err != nil {
		return nil, fmt.Errorf("read %s: %w", NotesRef, err)
	}
	all, err := g.AllCommits(ctx, tip)
	if err != nil {
		return nil, err
	}
	v.commits = make(map[string]Commit, len(all))
	for _, c := range all {
		v.commits[c.ID] = c
		v.trees[c.ID] = c.Tree
	}
	v.mark(since)
	// Changed paths of every first-parent step, in one git process.
	chain, err := g.FirstParentHistory(ctx, tip, since)
	if err != nil {
		return nil, err
	}
	var pairs [][2]string
	for _, c := range chain {
		if len(c.Parents) > 0 {
			pairs = append(pairs, [2]string{v.trees[c.Parents[0]], c.Tree})
		}
	}
	v.openNotes(chain)
	v.paths = map[[2]string][]string{}
	if len(pairs) > 0 {
		res, err := g.ChangedPathsBatch(ctx, append([][2]string(nil), pairs...))
		if err != nil {
			return nil, err
		}
		for i, p := range pairs {
			v.paths[p] = res[i]
		}
	}
	return v, nil
}

// opened is a note parsed and checked against the pinned key: its entries, or why not.
type opened struct {
	entries []Entry
	why     string
}

// openNotes parses and opens the notes of commits (those to verify) on every CPU: the part of
// verification that needs no order.
func (v *verifier) openNotes(commits []Commit) {
	v.opened = make(map[string]opened, len(commits))
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				o := v.openNote(id, &mu)
				mu.Lock()
				v.opened[id] = o
				mu.Unlock()
			}
		}()
	}
	for _, c := range commits {
		work <- c.ID
	}
	close(work)
	wg.Wait()
}

func (v *verifier) openNote(id string, mu *sync.Mutex) opened {
	data, ok := v.notes[id]
	if !ok {
		return opened{why: fmt.Sprintf("no approvals note (%s): this update did not go through the hook, or its note was never published (rampart change publish)", NotesRef)}
	}
	b, err := ParseBundle(data)
	if err != nil {
		return opened{why: "the note is not an approvals bundle: " + err.Error()}
	}
	mu.Lock()
	cp, ok := v.cps[string(b.Checkpoint)]
	mu.Unlock()
	if !ok {
		if cp, err = audit.OpenCheckpoint(b.Checkpoint, v.o.Key); err != nil {
			return opened{why: "the note's checkpoint does not verify with the pinned key: " + err.Error()}
		}
		mu.Lock()
		v.cps[string(b.Checkpoint)] = cp
		mu.Unlock()
	}
	entries, _, err := openEntries(b, cp)
	if err != nil {
		return opened{why: "the note does not verify: " + err.Error()}
	}
	return opened{entries: entries}
}

// open returns the entries of the note of commit id, opened (openNotes did it beforehand for
// the commits of the history).
func (v *verifier) open(id string) ([]Entry, string) {
	o, ok := v.opened[id]
	if !ok {
		o = v.openNote(id, &sync.Mutex{})
	}
	return o.entries, o.why
}

// mark adds id and everything reachable from it to the seen set.
func (v *verifier) mark(id string) {
	stack := []string{id}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if v.seen[c] {
			continue
		}
		v.seen[c] = true
		stack = append(stack, v.commits[c].Parents...)
	}
}

// brought returns the commits reachable from c not yet seen, and marks them seen.
func (v *verifier) brought(c string) []Commit {
	var out []Commit
	stack := []string{c}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if v.seen[id] {
			continue
		}
		v.seen[id] = true
		cm := v.commits[id]
		out = append(out, cm)
		stack = append(stack, cm.Parents...)
	}
	return out
}

// update checks one first-parent step and returns why it does not verify ("" when it does).
func (v *verifier) update(ctx context.Context, c Commit) string {
	if len(c.Parents) == 0 {
		return "a root commit in the middle of the history"
	}
	parent, tree := c.Parents[0], c.Tree
	pushed := v.brought(c.ID)
	paths := v.paths[[2]string{v.trees[parent], tree}]
	entries, why := v.open(c.ID)
	if why != "" {
		return why
	}
	bySeq := map[int64]Entry{}
	var land *LandRecord
	var landEntry Entry
	for _, e := range entries {
		bySeq[e.Seq] = e
		if l := e.Land; l != nil && l.Repository == v.o.Repository && l.Ref == v.o.Ref && l.Old == parent && l.New == c.ID && l.Tree == tree {
			land, landEntry = l, e
		}
	}
	if land == nil {
		return fmt.Sprintf("the note holds no landing of repository %s, ref %s, from %s to %s with tree %s (approvals for another repository, ref, base or tree count for nothing)", v.o.Repository, v.o.Ref, short(parent), short(c.ID), short(tree))
	}
	req := bySeq[land.RequestSeq].Request
	if req == nil || req.ID != land.ChangeID || req.Repository != v.o.Repository || req.Ref != v.o.Ref || req.Base != parent || req.Tree != tree {
		return fmt.Sprintf("the landing names request entry %d, which the note does not hold bound to %s, %s, base %s and tree %s", land.RequestSeq, v.o.Repository, v.o.Ref, short(parent), short(tree))
	}
	digest := PathsDigest(paths)
	if land.PathsDigest != digest || req.PathsDigest != digest {
		return fmt.Sprintf("the recorded changed paths differ from the %d paths git computes from %s to %s", len(paths), short(parent), short(c.ID))
	}
	rule := land.Rule
	if rule.Repository != v.o.Repository || rule.Ref != v.o.Ref {
		return "the landing's rule is for another repository or ref"
	}
	if v.o.PolicyPath != "" {
		pol, err := v.policyAt(ctx, parent)
		if err != nil {
			return fmt.Sprintf("the policy in force at %s (%s) cannot be read: %v", short(parent), v.o.PolicyPath, err)
		}
		creq, err := pol.ChangeRequirement(v.o.Repository, v.o.Ref, paths)
		if err != nil {
			return fmt.Sprintf("under the policy at %s: %v", short(parent), err)
		}
		rule = creq.Rule()
	}
	if err := rule.Validate(); err != nil {
		return "the landing's rule is malformed: " + err.Error()
	}
	stepUp := rule.StepUpDuration()
	var approvers []string
	for _, seq := range land.ApprovalSeqs {
		r := bySeq[seq].Review
		if r == nil || r.Decision != Approve || r.ChangeID != land.ChangeID || r.Repository != v.o.Repository || r.Ref != v.o.Ref || r.Base != parent || r.Tree != tree {
			return fmt.Sprintf("approval entry %d is missing from the note or is not bound to %s, %s, base %s and tree %s", seq, v.o.Repository, v.o.Ref, short(parent), short(tree))
		}
		if stepUp > 0 {
			mfa, err := time.Parse(time.RFC3339Nano, r.MFAAt)
			if err != nil || bySeq[seq].Time.Sub(mfa) > stepUp+time.Second {
				continue // approved without the step-up the rule needs: does not count
			}
		}
		approvers = append(approvers, r.Approver)
	}
	parties := Parties(append(append([]Commit{}, req.Commits...), pushed...), rule.EmailDomains, req.Requester, land.Pusher)
	if rule.ExcludeGroups {
		for _, pt := range parties {
			if _, ok := land.Membership[pt.Subject]; !ok {
				return fmt.Sprintf("%s (%s) was not known to the server when it decided: their groups are unknown, so independence from them cannot be shown", pt.Subject, pt.Role)
			}
		}
	}
	t := policy.RuleTally(rule, land.Membership, land.Owners, parties, approvers)
	if !t.Satisfied {
		return fmt.Sprintf("quorum not met (landing entry %d, pushed by %s): %s", landEntry.Seq, land.Pusher, describe(t))
	}
	return ""
}

func describe(t policy.Tally) string {
	var parts []string
	for _, st := range t.Steps {
		parts = append(parts, fmt.Sprintf("%s has %d of %d (%s)", st.Name, len(st.Counted), st.Need, strings.Join(st.Counted, ", ")))
	}
	for _, ig := range t.Ignored {
		parts = append(parts, fmt.Sprintf("%s does not count: %s", ig.Approver, ig.Why))
	}
	return strings.Join(parts, "; ")
}

// policyAt reads the policy files under PolicyPath at commit.
func (v *verifier) policyAt(ctx context.Context, commit string) (*policy.Policy, error) {
	if p, ok := v.policies[commit]; ok {
		return p, nil
	}
	p, err := PolicyAt(ctx, v.g, commit, v.o.PolicyPath)
	if err != nil {
		return nil, err
	}
	v.policies[commit] = p
	return p, nil
}

// PolicyAt parses the policy files under dir in the tree of commit, read with git by
// internal/gittree: the files policy.ReadFS would read from a checkout (*.yaml and *.yml, names
// starting with '.' skipped, the count and size limits), a symbolic link refused.
func PolicyAt(ctx context.Context, g *Git, commit, dir string) (*policy.Policy, error) {
	if err := checkID("commit", commit); err != nil {
		return nil, err
	}
	files, _, err := gittree.Read(ctx, g.Dir, commit, strings.Trim(dir, "/"))
	if err != nil {
		return nil, err
	}
	return policy.Parse(files)
}
