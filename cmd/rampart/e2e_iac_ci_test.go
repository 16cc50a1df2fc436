package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"rampart.dev/rampart/audit"
)

// ciSteps reads the workflow of docs/iac.md's "Required CI steps" and returns its job's env
// names and the run: lines of its rampart steps (policy validate, iac check, change verify).
func ciSteps(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/iac.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "## Required CI steps")
	_, block, ok2 := strings.Cut(after, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/iac.md has no yaml block under ## Required CI steps")
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Run string `json:"run"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	if err := yaml.Unmarshal([]byte(block), &wf); err != nil {
		t.Fatalf("docs/iac.md's workflow: %v", err)
	}
	var out []string
	for _, job := range wf.Jobs {
		for _, s := range job.Steps {
			if strings.HasPrefix(s.Run, "rampart ") {
				out = append(out, strings.TrimSpace(s.Run))
			}
		}
	}
	want := []string{"rampart policy validate", "rampart iac check", "rampart change verify"}
	if len(out) != len(want) {
		t.Fatalf("docs/iac.md's workflow runs %q; want the steps %q", out, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(out[i], w) {
			t.Fatalf("step %d of docs/iac.md's workflow is %q; want %s", i, out[i], w)
		}
	}
	return out
}

// ciRepo makes an infrastructure repository as the workflow expects it (policy/, deploy/),
// pushed to an origin and checked out fresh as CI does; it returns the checkout and the
// commit the gate starts from.
func ciRepo(t *testing.T, deploy string) (checkout, since string) {
	t.Helper()
	root := t.TempDir()
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=ci", "GIT_AUTHOR_EMAIL=ci@example.org", "GIT_COMMITTER_NAME=ci", "GIT_COMMITTER_EMAIL=ci@example.org", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	origin, work := filepath.Join(root, "origin.git"), filepath.Join(root, "work")
	git(root, "init", "-q", "--bare", "-b", "main", origin)
	git(root, "init", "-q", "-b", "main", work)
	copyDir(t, "../../internal/demo/policy", filepath.Join(work, "policy"))
	copyDir(t, deploy, filepath.Join(work, "deploy"))
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "infrastructure")
	since = git(work, "rev-parse", "HEAD")
	git(work, "remote", "add", "origin", origin)
	git(work, "push", "-q", "origin", "main")
	checkout = filepath.Join(root, "checkout")
	git(root, "clone", "-q", origin, checkout)
	return checkout, since
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runStep runs one step's run: line with bash in the checkout, the real binary on PATH.
func runStep(t *testing.T, dir, line string, env ...string) result {
	t.Helper()
	cmd := exec.Command("bash", "-eu", "-c", line)
	cmd.Dir = dir
	var keep []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAMPART_") {
			keep = append(keep, kv)
		}
	}
	cmd.Env = append(append(keep, "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "RAMPART_CONFIG_DIR="+t.TempDir(), "GIT_CONFIG_GLOBAL=/dev/null"), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// The required CI steps of docs/iac.md, as written there, against fixture repositories.
func TestRequiredCISteps(t *testing.T) {
	steps := ciSteps(t)
	_, vkey, err := audit.GenerateKey("rampart.example/ledger")
	if err != nil {
		t.Fatal(err)
	}
	run := func(dir, since string) [3]result {
		var out [3]result
		for i, s := range steps {
			out[i] = runStep(t, dir, s, "RAMPART_LEDGER_KEY="+vkey, "RAMPART_TRUSTED_SINCE="+since)
		}
		return out
	}
	// Compliant: all three pass.
	dir, since := ciRepo(t, "../../iac/testdata/kustomize")
	// The kustomization to deploy is the overlay: the workflow checks deploy/, so put it there.
	if err := os.WriteFile(filepath.Join(dir, "deploy", "kustomization.yaml"), []byte("resources:\n- overlays/research\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, r := range run(dir, since) {
		if r.code != 0 {
			t.Fatalf("compliant repository, step %q: %+v", steps[i], r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rampart-iac.sarif")); err != nil {
		t.Fatalf("iac check wrote no SARIF log for the upload step: %v", err)
	}
	// A failing manifest: iac check exits 3.
	dir, since = ciRepo(t, "../../iac/testdata/bad")
	if r := run(dir, since); r[0].code != 0 || r[1].code != 3 || !strings.Contains(r[1].out, "rampart.secret-in-git") {
		t.Fatalf("failing manifests: %+v", r)
	}
	// An update of main that no change approved: change verify exits 3.
	dir, since = ciRepo(t, "../../iac/testdata/good")
	cmd := exec.Command("bash", "-euc", `echo "# unapproved" >> deploy/trainer.yaml && git -c user.name=m -c user.email=m@example.org commit -qam unapproved && git push -q origin HEAD:main && git fetch -q origin`)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r := run(dir, since); r[0].code != 0 || r[1].code != 0 || r[2].code != 3 {
		t.Fatalf("an unapproved update: %+v", r)
	}
}
