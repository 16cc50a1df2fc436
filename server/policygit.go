package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/policy"
)

// PolicyGitConfig loads the policy from a Git repository instead of a directory (invariant 10:
// the guard is guarded). The server serves the newest commit of Ref that it can reach from Pin
// through updates each approved under the policy in force before it, as `rampart change verify`
// decides them; an update that is not approved is refused, and the last verified policy stays in
// force (docs/change.md, "Rampart's policy under its own quorum").
type PolicyGitConfig struct {
	// Repo is the repository: a local path (bare or with a work tree, read and never written) or
	// a URL git can fetch, mirrored into <data_dir>/policy.git.
	Repo string `yaml:"repo"`
	// Ref is the protected ref whose tip is served. Default refs/heads/main.
	Ref string `yaml:"ref"`
	// Dir is the policy directory inside the repository. Default: its root.
	Dir string `yaml:"dir"`
	// Pin is the commit trusted at install (a full object id): the first policy, and where
	// every verification starts. Move it only by reinstalling.
	Pin string `yaml:"pin"`
	// Repository is the name of the Repository in the policy that governs this repository (its
	// protected refs and path rules). Default "policy".
	Repository string `yaml:"repository"`
	// PollInterval is how often the ref is read again. Default 30s; SIGHUP reads it at once.
	PollInterval policy.Duration `yaml:"poll_interval"`
}

// DefaultPolicyPoll is how often the policy repository is read when poll_interval is unset.
const DefaultPolicyPoll = 30 * time.Second

func (c *PolicyGitConfig) validate(doc *strictyaml.Document) {
	if c.Repo == "" {
		doc.Errorf("policy_git.repo", "name the policy repository: a local path or a URL git can fetch")
	}
	if c.Ref == "" {
		c.Ref = "refs/heads/main"
	}
	if !strings.HasPrefix(c.Ref, "refs/") || strings.ContainsAny(c.Ref, " \t\n\x00*?[\\:^~") || strings.Contains(c.Ref, "..") {
		doc.Errorf("policy_git.ref", "%q is not a full ref name such as refs/heads/main", c.Ref)
	}
	if !isObjectID(c.Pin) {
		doc.Errorf("policy_git.pin", "pin the first policy by its full commit id (git rev-parse HEAD in the repository), not %q", c.Pin)
	}
	if c.Dir != "" {
		clean := path.Clean(c.Dir)
		if path.IsAbs(c.Dir) || clean == ".." || strings.HasPrefix(clean, "../") {
			doc.Errorf("policy_git.dir", "%q must be a relative directory inside the repository", c.Dir)
		}
	}
	if c.Repository == "" {
		c.Repository = "policy"
	}
	if c.PollInterval != 0 && c.PollInterval.Std() < time.Second {
		doc.Errorf("policy_git.poll_interval", "must be at least 1s")
	}
}

func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// PolicyGate decides how far the policy repository may move: from the commit in force, along
// the first-parent history of the ref, towards to. It returns the newest commit up to which
// every update is approved under the rules in force before it (from itself when the first is
// not), and why it stopped short of to.
type PolicyGate func(ctx context.Context, ref, from, to string) (reached string, err error)

// PolicyRepo is what the server reads of the policy repository.
type PolicyRepo interface {
	// RefTip returns the commit ref points to ("" when it does not exist).
	RefTip(ctx context.Context, ref string) (string, error)
	// IsAncestor reports whether commit a is an ancestor of (or is) b.
	IsAncestor(ctx context.Context, a, b string) (bool, error)
	// LoadPolicy loads and validates the policy in directory dir of commit.
	LoadPolicy(ctx context.Context, commit, dir string) (*policy.Policy, error)
}

// PolicyStatus is what /readyz says of a policy loaded from Git.
type PolicyStatus struct {
	Source string `json:"source"`
	Ref    string `json:"ref,omitempty"`
	// Commit is the commit in force; Digest, its policy's digest.
	Commit string `json:"commit,omitempty"`
	Digest string `json:"digest"`
	// Refused is the newest commit of the ref that is not served, and why.
	Refused *PolicyRefusal `json:"refused,omitempty"`
}

// PolicyRefusal is a commit of the policy repository that was not loaded.
type PolicyRefusal struct {
	Commit string    `json:"commit"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

type policyGit struct {
	cfg  PolicyGitConfig
	repo PolicyRepo
	gate PolicyGate
	// fetch brings a remote repository's ref and notes up to date (nil for a local one).
	fetch func(ctx context.Context) error

	// state is the file that remembers the last verified commit between runs.
	state string

	mu       sync.Mutex
	verified string
	refused  *PolicyRefusal
	refusals int
}

func (in *Instance) newPolicyGit(c PolicyGitConfig, gate PolicyGate) (*policyGit, error) {
	p := &policyGit{cfg: c, gate: gate, verified: c.Pin, state: filepath.Join(in.cfg.DataDir, "policy-git.json")}
	dir := c.Repo
	if isRemote(c.Repo) {
		dir = filepath.Join(in.cfg.DataDir, "policy.git")
		p.fetch = func(ctx context.Context) error { return mirror(ctx, dir, c.Repo, c.Ref) }
	} else if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("policy_git.repo: %s is not a directory (a local repository) or a URL: %v", dir, err)
	}
	p.repo = policyRepo{g: &change.Git{Dir: dir}}
	if p.gate == nil {
		p.gate = in.changeGate(dir)
	}
	return p, nil
}

// pinned loads the policy in force before anything new is verified: the commit this server
// last verified (policy-git.json in the data directory) when there is one for the same
// repository, ref and pin, otherwise the pinned commit. Starting again from the pin would roll
// the policy back to it whenever the approvals of later commits could not be verified (a notes
// ref lost or damaged): a server never goes back to a policy older than one it served. When the
// commit it last verified is no longer in the repository, it refuses to start.
func (p *policyGit) pinned(ctx context.Context) (*policy.Policy, string, error) {
	if p.fetch != nil {
		if err := p.fetch(ctx); err != nil {
			return nil, "", fmt.Errorf("policy_git: %w", err)
		}
	}
	start, what := p.cfg.Pin, "policy_git.pin"
	if last, err := p.loadState(); err != nil {
		return nil, "", err
	} else if last != "" {
		if ok, err := p.repo.IsAncestor(ctx, p.cfg.Pin, last); err != nil || !ok {
			return nil, "", fmt.Errorf("policy_git: commit %s, the last this server verified (%s), is no longer in %s or does not descend from the pin (%v); "+
				"restore it in the repository: starting from the pin would roll the policy back. To start over on purpose, delete %s", last, p.state, p.cfg.Repo, err, p.state)
		}
		start, what = last, "the last verified commit "+last+" ("+p.state+")"
	}
	pol, err := p.repo.LoadPolicy(ctx, start, p.cfg.Dir)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", what, start, err)
	}
	p.verified = start
	return pol, p.origin(start), nil
}

// policyGitState is what a server remembers of the policy repository between runs.
type policyGitState struct {
	Repo   string `json:"repo"`
	Ref    string `json:"ref"`
	Pin    string `json:"pin"`
	Commit string `json:"commit"`
}

// loadState returns the commit last verified for this repository, ref and pin ("" for none:
// no file, or one written for another configuration, such as an earlier pin).
func (p *policyGit) loadState() (string, error) {
	b, err := os.ReadFile(p.state)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p.state, err)
	}
	var st policyGitState
	if err := json.Unmarshal(b, &st); err != nil || !isObjectID(st.Commit) {
		return "", fmt.Errorf("%s is damaged (%v); restore it from backup, or delete it to verify again from the pin", p.state, err)
	}
	if st.Repo != p.cfg.Repo || st.Ref != p.cfg.Ref || st.Pin != p.cfg.Pin {
		return "", nil
	}
	return st.Commit, nil
}

// saveState records commit as the last verified (written to a temporary file and renamed).
func (p *policyGit) saveState(commit string) error {
	b, _ := json.Marshal(policyGitState{Repo: p.cfg.Repo, Ref: p.cfg.Ref, Pin: p.cfg.Pin, Commit: commit})
	tmp := p.state + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.state)
}

func (p *policyGit) origin(commit string) string {
	return fmt.Sprintf("git %s %s at %s", p.cfg.Repo, p.cfg.Ref, commit)
}

// advance reads the ref and moves as far towards its tip as the gate allows. It returns the
// policy to load (nil when the commit in force stays) and the refusal to record (nil when there
// is nothing new to say).
func (p *policyGit) advance(ctx context.Context) (next *policy.Policy, commit string, refusal *PolicyRefusal, err error) {
	if p.fetch != nil {
		if err := p.fetch(ctx); err != nil {
			return nil, "", nil, err
		}
	}
	tip, err := p.repo.RefTip(ctx, p.cfg.Ref)
	if err != nil {
		return nil, "", nil, err
	}
	p.mu.Lock()
	from := p.verified
	p.mu.Unlock()
	if tip == from {
		p.setRefused(nil)
		return nil, "", nil, nil
	}
	reached, why := from, error(nil)
	switch ok, aerr := p.repo.IsAncestor(ctx, from, tip); {
	case tip == "":
		why = fmt.Errorf("the ref %s does not exist any more (deleted); the policy of %s stays in force", p.cfg.Ref, from)
	case aerr != nil:
		return nil, "", nil, aerr
	case !ok:
		why = fmt.Errorf("%s does not descend from %s, the commit in force: the ref's history was rewritten", tip, from)
	default:
		reached, why = p.gate(ctx, p.cfg.Ref, from, tip)
		if reached == "" {
			reached = from
		}
	}
	if reached != from {
		next, err = p.repo.LoadPolicy(ctx, reached, p.cfg.Dir)
		if err != nil {
			// An approved commit whose policy does not validate is refused too.
			why = fmt.Errorf("%s is approved but its policy does not validate: %w", reached, err)
			tip, reached, next = reached, from, nil
		}
	}
	if why == nil {
		p.setRefused(nil)
		return next, reached, nil, nil
	}
	r := &PolicyRefusal{Commit: tip, Reason: why.Error()}
	if p.setRefused(r) {
		refusal = r
	}
	return next, reached, refusal, nil
}

// setRefused records the current refusal; it reports whether it is new (another commit or
// another reason than the one already recorded), so that a refused tip is recorded once, not
// at every poll.
func (p *policyGit) setRefused(r *PolicyRefusal) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r == nil {
		p.refused = nil
		return false
	}
	if p.refused != nil && p.refused.Commit == r.Commit && p.refused.Reason == r.Reason {
		return false
	}
	p.refusals++
	p.refused = r
	return true
}

// setVerified makes commit the one in force and remembers it for the next start.
func (p *policyGit) setVerified(commit string) error {
	p.mu.Lock()
	p.verified = commit
	p.mu.Unlock()
	if err := p.saveState(commit); err != nil {
		return fmt.Errorf("policy commit %s is in force, but remembering it in %s failed (a restart would verify again from an older commit): %w", commit, p.state, err)
	}
	return nil
}

// syncPolicyGit is a poll of the policy repository: it loads the newest approved commit and
// records a refusal (a High ledger entry, the metric, /readyz) for one that is not.
func (in *Instance) syncPolicyGit(ctx context.Context) error {
	in.polMu.Lock()
	defer in.polMu.Unlock()
	next, commit, refusal, err := in.pgit.advance(ctx)
	if err != nil {
		return fmt.Errorf("policy repository %s: %w", in.cfg.PolicyGit.Repo, err)
	}
	if next != nil {
		if err := in.loadPolicyLocked(ctx, next, in.pgit.origin(commit)); err != nil {
			return err
		}
		if err := in.pgit.setVerified(commit); err != nil {
			in.log.Error("policy repository", "err", err)
		}
	}
	if refusal != nil {
		refusal.Since = in.now()
		return in.recordPolicyRefusal(ctx, refusal)
	}
	return nil
}

// recordPolicyRefusal writes the policy.refused entry (High) for a commit not loaded.
func (in *Instance) recordPolicyRefusal(ctx context.Context, r *PolicyRefusal) error {
	in.pgit.mu.Lock()
	inForce := in.pgit.verified
	in.pgit.mu.Unlock()
	in.log.Error("policy commit refused; the last verified policy stays in force", "commit", r.Commit, "in_force", inForce, "reason", r.Reason)
	return recorder(in.Store)(ctx, audit.Event{Code: "policy.refused", Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate,
		ActivityName: "Update", Severity: audit.SeverityHigh, Actor: audit.SystemActor, Failed: true, Time: in.now(),
		Message: fmt.Sprintf("policy commit %s of %s %s refused: %s", r.Commit, in.cfg.PolicyGit.Repo, in.cfg.PolicyGit.Ref, r.Reason),
		Details: map[string]any{"repository": in.cfg.PolicyGit.Repo, "ref": in.cfg.PolicyGit.Ref, "commit": r.Commit, "in_force": inForce, "reason": r.Reason}})
}

// PolicyStatus describes the policy in force for /readyz.
func (in *Instance) PolicyStatus() any {
	pol := in.Access.Policy()
	if in.pgit == nil {
		return PolicyStatus{Source: "directory", Digest: pol.Digest}
	}
	in.pgit.mu.Lock()
	defer in.pgit.mu.Unlock()
	st := PolicyStatus{Source: "git", Ref: in.cfg.PolicyGit.Ref, Commit: in.pgit.verified, Digest: pol.Digest}
	if r := in.pgit.refused; r != nil {
		c := *r
		st.Refused = &c
	}
	return st
}

func (in *Instance) policyGitMetrics(reg *prometheus.Registry) {
	if in.pgit == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rampart_policy_git_refused", Help: "1 when the tip of the policy repository's ref is refused (not approved, rewritten, or invalid) and an older verified commit stays in force.",
	}, func() float64 {
		in.pgit.mu.Lock()
		defer in.pgit.mu.Unlock()
		if in.pgit.refused != nil {
			return 1
		}
		return 0
	}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "rampart_policy_git_refusals_total", Help: "Policy commits refused since start (each commit and reason counted once).",
	}, func() float64 {
		in.pgit.mu.Lock()
		defer in.pgit.mu.Unlock()
		return float64(in.pgit.refusals)
	}))
}
