package change

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"rampart.dev/rampart/policy"
)

// RefUpdate is one line of a pre-receive or post-receive hook's standard input.
type RefUpdate struct {
	Old, New, Ref string
}

// Limits on the hook's input: git writes it, but a push is untrusted input to the server.
const (
	maxUpdates    = 10000
	maxUpdateLine = 4096
)

// ReadUpdates reads the "old new ref" lines git gives pre-receive and post-receive hooks. Every
// line must be two full object ids of the same length and a ref name under refs/; anything else is
// an error (the hook then refuses the whole push).
func ReadUpdates(r io.Reader) ([]RefUpdate, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxUpdateLine)
	var out []RefUpdate
	for n := 1; sc.Scan(); n++ {
		f := strings.Split(sc.Text(), " ")
		if len(f) != 3 || !IsObjectID(f[0]) || !IsObjectID(f[1]) || len(f[0]) != len(f[1]) || !validRefName(f[2]) {
			return nil, fmt.Errorf("hook input line %d is not \"<old-id> <new-id> <ref>\": %.100q", n, sc.Text())
		}
		if len(out) == maxUpdates {
			return nil, fmt.Errorf("more than %d ref updates in one push", maxUpdates)
		}
		out = append(out, RefUpdate{Old: f[0], New: f[1], Ref: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read hook input: %w", err)
	}
	return out, nil
}

func validRefName(s string) bool {
	if !strings.HasPrefix(s, "refs/") || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return !strings.Contains(s, "..") && !strings.Contains(s, "//") && !strings.HasSuffix(s, "/")
}

// Facts computes, with git, what a decision on a ref update needs: the new tip's first parent and
// tree, the changed paths, and the commits it brings with their identities.
func Facts(ctx context.Context, g *Git, repository, pusher string, ru RefUpdate) (Update, error) {
	u := Update{Repository: repository, Ref: ru.Ref, Old: ru.Old, New: ru.New, Pusher: pusher, Paths: []string{}, Commits: []Commit{}}
	if IsZero(ru.New) {
		return u, nil
	}
	if err := checkID("new", ru.New); err != nil {
		return u, err
	}
	cs, err := g.Commits(ctx, ru.New, ru.Old)
	if err != nil {
		return u, err
	}
	if len(cs) > MaxCommits {
		return u, fmt.Errorf("%s: the push brings %d commits; at most %d", ru.Ref, len(cs), MaxCommits)
	}
	u.Commits = cs
	// The new tip is the first commit git log lists, unless it was already reachable from the
	// old tip (a rewind) or is no commit (a tag: Parents refuses what peels to another id):
	// then ask git for its tree and parents.
	var parents []string
	if len(cs) > 0 && cs[0].ID == ru.New {
		u.Tree, parents = cs[0].Tree, cs[0].Parents
	} else {
		if u.Tree, err = g.Tree(ctx, ru.New); err != nil {
			return u, err
		}
		if parents, err = g.Parents(ctx, ru.New); err != nil {
			return u, fmt.Errorf("%s: only commits may be pushed to a protected ref: %w", ru.Ref, err)
		}
	}
	if !IsObjectID(u.Tree) {
		return u, fmt.Errorf("%s: git printed %q as the tree of %s", ru.Ref, u.Tree, short(ru.New))
	}
	if len(parents) > 0 {
		u.FirstParent = parents[0]
	}
	oldTree := ""
	if !IsZero(ru.Old) {
		if oldTree, err = g.Tree(ctx, ru.Old); err != nil {
			return u, err
		}
	}
	if u.Paths, err = g.ChangedPaths(ctx, oldTree, u.Tree); err != nil {
		return u, err
	}
	if len(u.Paths) > MaxPaths {
		return u, fmt.Errorf("%s: the push changes %d paths; at most %d", ru.Ref, len(u.Paths), MaxPaths)
	}
	return u, nil
}

// Decider decides ref updates: the server (api.Client, online) or OfflineDecider.
type Decider interface {
	Decide(ctx context.Context, u Update) (Verdict, error)
}

// OfflineDecider decides from approvals bundles, without the server: under a local copy of the
// policy, with approvals read from bundles signed by the ledger (rampart change bundle ID).
type OfflineDecider struct {
	Policy *policy.Policy
	// Bundles is a directory of *.json approvals bundles.
	Bundles string
	Key     note.Verifier
}

const maxBundleFiles = 1000

// Decide decides u as the server would, from the bundles' request and approval entries.
func (d *OfflineDecider) Decide(ctx context.Context, u Update) (Verdict, error) {
	repo, ok := d.Policy.Repository(u.Repository)
	if !ok {
		return Verdict{}, fmt.Errorf("repository %q is not declared in the hook's policy", u.Repository)
	}
	if why := reservedRef(u.Ref); why != "" {
		return Verdict{Protected: true, Reason: why}, nil
	}
	if _, protected := repo.ProtectedRef(u.Ref); !protected {
		return Verdict{Allowed: true, Reason: u.Ref + " is not protected"}, nil
	}
	if why := Shape(u); why != "" {
		return Verdict{Protected: true, Reason: why}, nil
	}
	req, err := d.Policy.ChangeRequirement(u.Repository, u.Ref, u.Paths)
	if err != nil {
		return Verdict{}, err
	}
	files, err := filepath.Glob(filepath.Join(d.Bundles, "*.json"))
	if err != nil {
		return Verdict{}, err
	}
	if len(files) > maxBundleFiles {
		return Verdict{}, fmt.Errorf("%s holds %d bundles; at most %d", d.Bundles, len(files), maxBundleFiles)
	}
	sort.Strings(files)
	var best Verdict
	var problems []string
	for _, f := range files {
		data, err := readLimited(f, MaxBundle)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		b, err := ParseBundle(data)
		if err != nil {
			problems = append(problems, filepath.Base(f)+": "+err.Error())
			continue
		}
		entries, _, err := OpenBundle(b, d.Key)
		if err != nil {
			problems = append(problems, filepath.Base(f)+": "+err.Error())
			continue
		}
		v, ok := d.judge(req, u, entries)
		if ok && v.Allowed {
			return v, nil
		}
		if ok && best.ChangeID == "" {
			best = v
		}
	}
	if best.ChangeID != "" {
		return best, nil
	}
	msg := fmt.Sprintf("no approvals bundle in %s approves tree %s into %s from %s: ask for a change with `rampart change request --repo . --ref %s --source <your branch>`, have it approved, and put `rampart change bundle ID` in that directory", d.Bundles, short(u.Tree), u.Ref, short(u.Old), u.Ref)
	if len(problems) > 0 {
		msg += " (unreadable bundles: " + strings.Join(problems, "; ") + ")"
	}
	return Verdict{Protected: true, Reason: msg}, nil
}

// judge counts the approvals of the change a bundle holds, if it is the change for u.
func (d *OfflineDecider) judge(req *policy.ChangeRequirement, u Update, entries []Entry) (Verdict, bool) {
	var rr *RequestRecord
	for _, e := range entries {
		if r := e.Request; r != nil && r.Repository == u.Repository && r.Ref == u.Ref && r.Base == u.Old && r.Tree == u.Tree {
			rr = r
		}
	}
	if rr == nil || rr.PathsDigest != PathsDigest(u.Paths) {
		return Verdict{}, false
	}
	dir := map[string][]string{}
	var approvers []string
	var denials int
	for _, e := range entries {
		r := e.Review
		if r == nil || r.ChangeID != rr.ID || r.Repository != u.Repository || r.Ref != u.Ref || r.Base != u.Old || r.Tree != u.Tree {
			continue
		}
		if r.Decision == Deny {
			denials++
			continue
		}
		if req.StepUp > 0 {
			if mfa, err := parseTime(r.MFAAt); err != nil || e.Time.Sub(mfa) > req.StepUp {
				continue
			}
		}
		approvers = append(approvers, r.Approver)
		dir[r.Approver] = r.Groups
	}
	pol := d.Policy.WithDirectory(dir)
	parties := Parties(append(append([]Commit{}, rr.Commits...), u.Commits...), req.EmailDomains, rr.Requester, u.Pusher)
	t := pol.TallyChange(req.Policy, parties, approvers)
	switch {
	case denials >= max(req.Policy.DenyCount, 1):
		return Verdict{Protected: true, ChangeID: rr.ID, Tally: &t, Reason: fmt.Sprintf("change %s was denied", rr.ID)}, true
	case t.Satisfied:
		return Verdict{Protected: true, Allowed: true, ChangeID: rr.ID, Tally: &t, Reason: fmt.Sprintf("change %s approved by %s (offline)", rr.ID, strings.Join(counted(t), ", "))}, true
	}
	return Verdict{Protected: true, ChangeID: rr.ID, Tally: &t, Reason: missing(rr.ID, req, t)}, true
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", filepath.Base(path), limit)
	}
	return data, nil
}

// PendingDir is where pre-receive leaves the bundles of accepted updates for post-receive, and
// the updates it let through offline for `rampart change hook publish`, under the git directory.
const PendingDir = "rampart"

// SavePending keeps an accepted update's bundle for post-receive (refs cannot be written while git
// quarantines a push).
func SavePending(gitDir, newTip string, b *Bundle) error {
	dir := filepath.Join(gitDir, PendingDir, "pending")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if !IsObjectID(newTip) {
		return fmt.Errorf("%q is not an object id", newTip)
	}
	return os.WriteFile(filepath.Join(dir, newTip+".json"), b.Marshal(), 0o600)
}

// SaveOffline appends an update the offline hook let through, for publishing later.
func SaveOffline(gitDir string, u Update) error {
	dir := filepath.Join(gitDir, PendingDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "offline.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	return err
}

// PublishPending writes the pending bundle of every update git reports as done (post-receive's
// input) as the note of its new tip, and removes it. It returns how many notes it wrote.
func PublishPending(ctx context.Context, g *Git, gitDir string, updates []RefUpdate) (int, error) {
	n := 0
	var errs []error
	for _, u := range updates {
		if IsZero(u.New) {
			continue
		}
		path := filepath.Join(gitDir, PendingDir, "pending", u.New+".json")
		data, err := readLimited(path, MaxBundle)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := g.AddNote(ctx, NotesRef, u.New, data); err != nil {
			errs = append(errs, fmt.Errorf("note on %s: %w", short(u.New), err))
			continue
		}
		_ = os.Remove(path)
		n++
	}
	return n, errors.Join(errs...)
}

func parseTime(s string) (t time.Time, err error) { return time.Parse(time.RFC3339Nano, s) }
