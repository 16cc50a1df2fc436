package main_test

import (
	"encoding/json"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/changetest"
)

// Guarded change end to end (docs/change.md): the real rampart binary as the server and as the
// pre-receive and post-receive hooks of bare repositories served by the real `git http-backend`
// (behind a small Go CGI host that authenticates pushers), real git clients, and offline
// verification of the history with the notes it published.

// gitServer serves the bare repositories under root over HTTP with git http-backend; the user of
// the basic credentials is the pusher (REMOTE_USER), as any authenticating Git server sets it.
func gitServer(t *testing.T, root string) *httptest.Server {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is required: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, ok := r.BasicAuth()
		if !ok || user == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		h := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Dir: root,
			Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=" + user, "PATH=" + os.Getenv("PATH"),
				"HOME=" + root, "GIT_CONFIG_NOSYSTEM=1"}}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// bareRepo makes root/name.git holding seed's main, then installs the hooks.
func bareRepo(t *testing.T, root, name, seed string, preReceive string) string {
	t.Helper()
	bare := filepath.Join(root, name+".git")
	changetest.Git(t, root, nil, "init", "-q", "--bare", "-b", "main", bare)
	changetest.Git(t, seed, nil, "push", "-q", bare, "main:refs/heads/main")
	hooks := filepath.Join(bare, "hooks")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(hooks, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("pre-receive", preReceive)
	write("post-receive", "exec "+binary+" change hook post-receive")
	return bare
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

var changeID = regexp.MustCompile(`chg_[a-z2-7]{16}`)

func TestGuardedChangeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	changetest.Write(t, pdir, map[string]string{"p.yaml": changetest.Policy})
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(dir, "data"), "--policy", pdir, "--egress-addr", "")
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	token := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, bob, carol, dave, erin := token("alice"), token("bob"), token("carol"), token("dave"), token("erin")
	must := func(tok string, args ...string) string {
		t.Helper()
		r := c.as(tok, args...)
		if r.code != 0 {
			t.Fatalf("rampart %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.out, r.err)
		}
		return r.out
	}
	gitTok := strings.TrimSpace(must(erin, "-o", "json", "token", "create", "--subject", "service:git", "--kind", "service", "--ttl", "1h"))
	var tr struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(gitTok), &tr); err != nil || tr.Token == "" {
		t.Fatalf("service token: %s (%v)", gitTok, err)
	}
	key := strings.TrimSpace(must(alice, "audit", "key"))
	keyFile := filepath.Join(dir, "ledger.pub")
	changetest.Write(t, dir, map[string]string{"ledger.pub": key + "\n"})

	// The Git server: infra and other, the same first commit, the online hook.
	root := filepath.Join(dir, "srv")
	seed := changetest.Repo(t, filepath.Join(dir, "seed"))
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	online := func(repo, at string) string {
		return "RAMPART_TOKEN=" + shq(tr.Token) + " exec " + binary + " --addr " + at + " change hook pre-receive --repository " + repo
	}
	bareRepo(t, root, "infra", seed, online("infra", addr))
	bareRepo(t, root, "other", seed, online("other", addr))
	gs := gitServer(t, root)
	url := func(user, repo string) string {
		return strings.Replace(gs.URL, "http://", "http://"+user+":x@", 1) + "/" + repo + ".git"
	}

	// Alice's checkout: a feature branch with one commit.
	work := filepath.Join(dir, "work")
	changetest.Git(t, dir, nil, "clone", "-q", url("alice", "infra"), work)
	changetest.Git(t, work, nil, "config", "rampart.repository", "infra")
	changetest.Git(t, work, nil, "checkout", "-q", "-b", "feature")
	changetest.Commit(t, work, "alice", "tune the scheduler", map[string]string{"deploy/scheduler.yaml": "replicas: 3\n"})
	changetest.Git(t, work, nil, "push", "-q", "origin", "feature") // not protected: allowed

	push := func(user, repo, refspec string, force bool) (string, bool) {
		t.Helper()
		args := []string{"push", "--porcelain", url(user, repo), refspec}
		if force {
			args = append(args, "--force")
		}
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		return string(out), err == nil
	}
	// merge makes, on a detached HEAD at origin/main, the merge commit of source as user, and
	// returns its id.
	merge := func(user, source string) string {
		t.Helper()
		changetest.Git(t, work, nil, "fetch", "-q", "origin")
		changetest.Git(t, work, nil, "checkout", "-q", "--detach", "origin/main")
		changetest.Git(t, work, changetest.As(user), "merge", "-q", "--no-ff", "-m", "merge "+source, source)
		return changetest.Git(t, work, nil, "rev-parse", "HEAD")
	}

	out := must(alice, "change", "request", "--repo", work, "--ref", "refs/heads/main", "--source", "feature")
	id := changeID.FindString(out)
	if id == "" || !strings.Contains(out, "one-security (paths matching deploy/**)") || !strings.Contains(out, "not alice: is the requester") {
		t.Fatalf("change request: %s", out)
	}
	// The author approving her own change: refused, a denial (3).
	if r := c.as(alice, "change", "approve", id, "--repo", work); r.code != 3 || !strings.Contains(r.err, "is the requester") {
		t.Fatalf("alice approves her own change: %+v", r)
	}
	// A service credential never approves (invariant 8).
	if r := c.as(tr.Token, "change", "approve", id, "--repo", work); r.code != 3 || !strings.Contains(r.err, "reviews come only from a person's own sign-in session") {
		t.Fatalf("the git server's token approves: %+v", r)
	}
	must(bob, "change", "approve", id, "--repo", work)
	// Quorum needs a security engineer too; bob alone is not enough.
	m1 := merge("carol", "origin/feature")
	if out, ok := push("carol", "infra", m1+":refs/heads/main", false); ok || !strings.Contains(out, "lacks approvals") || !strings.Contains(out, "rampart change approve "+id) {
		t.Fatalf("push with one of two approvals: ok=%v\n%s", ok, out)
	}
	// A change filed (straight through the API) for another tree than its base and source merge
	// to: the reviewer's checkout refuses to show or approve it.
	var filed struct {
		Change struct {
			Base, Source, Tree string
			Paths              []string
			Commits            []map[string]any
		} `json:"change"`
	}
	if err := json.Unmarshal([]byte(must(alice, "-o", "json", "change", "show", id, "--repo", work)), &filed); err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(map[string]any{"repository": "infra", "ref": "refs/heads/main", "base": filed.Change.Base, "source": filed.Change.Source,
		"tree": changetest.Git(t, work, nil, "rev-parse", "origin/main^{tree}"), "paths": filed.Change.Paths, "commits": filed.Change.Commits})
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/changes", strings.NewReader(string(forged)))
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("file a forged tree: %v %v", resp, err)
	}
	var fv struct {
		Change struct{ ID string } `json:"change"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&fv)
	resp.Body.Close()
	for _, verb := range []string{"show", "approve"} {
		if r := c.as(dave, "change", verb, fv.Change.ID, "--repo", work); r.code != 1 || !strings.Contains(r.err, "what was filed is not what you see") {
			t.Fatalf("change %s of a forged tree: %+v", verb, r)
		}
	}
	if out := must(dave, "change", "show", id, "--repo", work); !strings.Contains(out, "deploy/scheduler.yaml") {
		t.Fatalf("change show: %s", out)
	}
	must(dave, "change", "approve", id, "--repo", work)
	// Dave approved: dave pushing does not count (the pusher never counts).
	if out, ok := push("dave", "infra", m1+":refs/heads/main", false); ok || !strings.Contains(out, "dave does not count: dave is the pusher") {
		t.Fatalf("the approver pushes: ok=%v\n%s", ok, out)
	}
	// The same merge pushed to another repository: the approvals are bound to infra.
	if out, ok := push("carol", "other", m1+":refs/heads/main", false); ok || !strings.Contains(out, "no approved change merges tree") {
		t.Fatalf("replayed onto another repository: ok=%v\n%s", ok, out)
	}
	// Carol, neither party nor counted, pushes: it lands, and post-receive publishes the note.
	if out, ok := push("carol", "infra", m1+":refs/heads/main", false); !ok || !strings.Contains(out, "approved by") {
		t.Fatalf("the approved merge is refused: %s", out)
	}

	// Attacks on the protected ref itself.
	root1 := changetest.Git(t, seed, nil, "rev-parse", "HEAD")
	if out, ok := push("carol", "infra", root1+":refs/heads/main", true); ok || !strings.Contains(out, "not one first-parent step") {
		t.Fatalf("force-push: ok=%v\n%s", ok, out)
	}
	if out, ok := push("carol", "infra", ":refs/heads/main", false); ok || !strings.Contains(out, "nobody may delete it") {
		t.Fatalf("deletion: ok=%v\n%s", ok, out)
	}
	// The approvals themselves: the notes ref is written by post-receive only; a push deleting or
	// replacing it is refused (a server loading its policy from Git verifies them at every start).
	if out, ok := push("carol", "infra", ":refs/notes/rampart", false); ok || !strings.Contains(out, "nobody pushes to it") {
		t.Fatalf("deleting the approvals notes: ok=%v\n%s", ok, out)
	}
	if out, ok := push("carol", "infra", m1+":refs/notes/rampart", true); ok || !strings.Contains(out, "nobody pushes to it") {
		t.Fatalf("replacing the approvals notes: ok=%v\n%s", ok, out)
	}

	// A co-author approving, and a tree changed after approval.
	changetest.Git(t, work, nil, "fetch", "-q", "origin")
	changetest.Git(t, work, nil, "checkout", "-q", "-b", "feature2", "origin/main")
	changetest.Write(t, work, map[string]string{"policy/roles.yaml": "x: 1\n"})
	changetest.Git(t, work, nil, "add", "-A")
	changetest.Git(t, work, changetest.As("alice"), "commit", "-q", "-m", "roles\n\nCo-authored-by: Bob <bob@example.com>")
	changetest.Git(t, work, nil, "push", "-q", "origin", "feature2")
	out = must(alice, "change", "request", "--repo", work, "--ref", "refs/heads/main", "--source", "feature2")
	id2 := changeID.FindString(out)
	if r := c.as(bob, "change", "approve", id2, "--repo", work); r.code != 3 || !strings.Contains(r.err, "co-author") {
		t.Fatalf("the co-author approves: %+v", r)
	}
	// Two maintainers where the rule needs a maintainer and a security engineer: not enough.
	must(carol, "change", "approve", id2, "--repo", work)
	m2 := merge("erin", "origin/feature2")
	if out, ok := push("erin", "infra", m2+":refs/heads/main", false); ok || !strings.Contains(out, "lacks approvals") {
		t.Fatalf("two maintainers for a two-group rule: ok=%v\n%s", ok, out)
	}
	// Nobody else may fill the second maintainer's slot (alice authored it, bob co-authored it):
	// explain says it can never be approved.
	if out := must(dave, "change", "show", id2, "--repo", work); !strings.Contains(out, "could never be approved") {
		t.Fatalf("change show of an unapprovable change: %s", out)
	}

	// A tree changed after approval (one more commit on the branch) is refused; the approved tree
	// still lands.
	changetest.Git(t, work, nil, "checkout", "-q", "-b", "feature3", "origin/main")
	approved := changetest.Commit(t, work, "alice", "more replicas", map[string]string{"deploy/scheduler.yaml": "replicas: 5\n"})
	changetest.Git(t, work, nil, "push", "-q", "origin", "feature3")
	id3 := changeID.FindString(must(alice, "change", "request", "--repo", work, "--ref", "refs/heads/main", "--source", "feature3"))
	must(carol, "change", "approve", id3, "--repo", work)
	must(dave, "change", "approve", id3, "--repo", work)
	changetest.Commit(t, work, "alice", "and one more", map[string]string{"deploy/scheduler.yaml": "replicas: 50\n"})
	changetest.Git(t, work, nil, "push", "-q", "origin", "feature3")
	m3 := merge("erin", "origin/feature3")
	if out, ok := push("erin", "infra", m3+":refs/heads/main", false); ok || !strings.Contains(out, "no approved change merges tree") {
		t.Fatalf("a tree changed after approval: ok=%v\n%s", ok, out)
	}
	// The new tree, filed and denied: a denial is recorded and ends the change.
	id4 := changeID.FindString(must(alice, "change", "request", "--repo", work, "--ref", "refs/heads/main", "--source", "feature3"))
	if out := must(dave, "change", "deny", id4, "--repo", work, "--comment", "50 replicas is too many"); !strings.Contains(out, "(denied)") {
		t.Fatalf("change deny: %s", out)
	}
	m4 := merge("erin", approved)
	if out, ok := push("erin", "infra", m4+":refs/heads/main", false); !ok {
		t.Fatalf("the approved tree is refused: %s", out)
	}
	// The change for policy/ was filed from the old base: the landing voided it.
	if out := must(alice, "change", "show", id2, "--repo", work); !strings.Contains(out, "(void)") {
		t.Fatalf("a change of the old base after a landing: %s", out)
	}

	// Offline verification from a fresh clone: it verifies; exit 0.
	clone := filepath.Join(dir, "clone")
	changetest.Git(t, dir, nil, "clone", "-q", url("erin", "infra"), clone)
	changetest.Git(t, clone, nil, "fetch", "-q", "origin", "refs/notes/rampart:refs/notes/rampart")
	verify := func(args ...string) result {
		return c.run(nil, append([]string{"change", "verify", "--repo", clone, "--repository", "infra", "--ref", "main", "--key", keyFile}, args...)...)
	}
	if r := verify(); r.code != 0 || !strings.Contains(r.out, "2 update(s)") || !strings.Contains(r.out, "0 violation(s)") {
		t.Fatalf("change verify: %+v", r)
	}
	// The same note read as another repository's: refused.
	if r := c.run(nil, "change", "verify", "--repo", clone, "--repository", "other", "--ref", "main", "--key", keyFile); r.code != 3 || !strings.Contains(r.out, "no landing of repository other") {
		t.Fatalf("verify as another repository: %+v", r)
	}
	// A truncated note, a forged entry: exit 3 with the reason.
	note := changetest.Git(t, clone, nil, "notes", "--ref", "refs/notes/rampart", "show", m1)
	setNote := func(body string) {
		t.Helper()
		changetest.Write(t, dir, map[string]string{"note": body})
		changetest.Git(t, clone, nil, "notes", "--ref", "refs/notes/rampart", "add", "-f", "-F", filepath.Join(dir, "note"), m1)
	}
	setNote(note[:len(note)/2])
	if r := verify(); r.code != 3 || !strings.Contains(r.out, "is not an approvals bundle") {
		t.Fatalf("truncated note: %+v", r)
	}
	setNote(strings.Replace(note, `\"dave\"`, `\"frank\"`, 1))
	if r := verify(); r.code != 3 || !strings.Contains(r.out, "is not in the signed checkpoint") {
		t.Fatalf("forged note: %+v", r)
	}
	// A proof for another checkpoint: the same entries under a newer checkpoint.
	newer := strings.TrimSpace(must(erin, "-o", "json", "audit", "checkpoint"))
	var cp struct {
		Checkpoint string `json:"checkpoint"`
	}
	if err := json.Unmarshal([]byte(newer), &cp); err != nil {
		t.Fatalf("checkpoint: %s", newer)
	}
	var b map[string]any
	if err := json.Unmarshal([]byte(note), &b); err != nil {
		t.Fatal(err)
	}
	b["checkpoint"] = []byte(cp.Checkpoint)
	swapped, _ := json.Marshal(b)
	setNote(string(swapped))
	if r := verify(); r.code != 3 || !strings.Contains(r.out, "proof is for another checkpoint") {
		t.Fatalf("proof for the wrong checkpoint: %+v", r)
	}
	setNote(note)
	if r := verify(); r.code != 0 {
		t.Fatalf("restored note: %+v", r)
	}
	// A commit written past the hook (by whoever controls the Git server's host: a fetch into the
	// bare repository runs no hook) has no note: exit 3.
	changetest.Git(t, work, nil, "checkout", "-q", "--detach", m4)
	changetest.Commit(t, work, "erin", "bypass", map[string]string{"deploy/evil.yaml": "x\n"})
	bare := filepath.Join(root, "infra.git")
	changetest.Git(t, bare, nil, "fetch", "-q", work, "HEAD:refs/heads/main")
	changetest.Git(t, clone, nil, "pull", "-q", "--ff-only", "origin", "main")
	if r := verify(); r.code != 3 || !strings.Contains(r.out, "no approvals note") {
		t.Fatalf("an update without approvals: %+v", r)
	}

	// The online hook with the server unreachable: refused (fail closed).
	deadRoot := filepath.Join(dir, "dead")
	if err := os.MkdirAll(deadRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	bareRepo(t, deadRoot, "infra", seed, online("infra", freeAddr(t)))
	dead := gitServer(t, deadRoot)
	cmd := exec.Command("git", "push", "--porcelain", strings.Replace(dead.URL, "http://", "http://carol:x@", 1)+"/infra.git", m1+":refs/heads/main")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "cannot establish whether this update is approved") {
		t.Fatalf("unreachable server: err=%v\n%s", err, out)
	}
}
