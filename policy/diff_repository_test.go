package policy_test

import (
	"testing"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
)

// withRepository is the demo policy plus one Repository document (none when spec is "").
func withRepository(t *testing.T, spec string) *policy.Policy {
	t.Helper()
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	if spec != "" {
		files = append(files, policy.File{Name: "repositories.yaml", Data: []byte("apiVersion: rampart.dev/v1alpha1\nkind: Repository\nmetadata: {name: infra}\nspec:\n" + spec)})
	}
	p, err := policy.Parse(files)
	if err != nil {
		t.Fatalf("policy with a repository: %v", err)
	}
	return p
}

// TestCompareRepositories: guarded change's rules are judged in the definition section, and a
// change that lets an update land with less approval is WEAKENED.
func TestCompareRepositories(t *testing.T) {
	const base = "  refs:\n  - {ref: refs/heads/main, approval: sensitive-data}\n  paths:\n  - {path: deploy/**, approval: critical-weights}\n  email_domains: [example.com]\n  git_servers: ['service:git']\n"
	for _, c := range []struct {
		name, old, new string
		verdict        policy.Verdict
		field          string
	}{
		{"repository removed", base, "", policy.Weakened, ""},
		{"path rule removed", base, "  refs:\n  - {ref: refs/heads/main, approval: sensitive-data}\n  email_domains: [example.com]\n  git_servers: ['service:git']\n", policy.Weakened, "paths"},
		{"path rule weakened", base, "  refs:\n  - {ref: refs/heads/main, approval: sensitive-data}\n  paths:\n  - {path: deploy/**, approval: sensitive-data}\n  email_domains: [example.com]\n  git_servers: ['service:git']\n", policy.Weakened, "paths"},
		{"ref rule changed", base, "  refs:\n  - {ref: refs/heads/main, approval: admission-exceptions}\n  paths:\n  - {path: deploy/**, approval: critical-weights}\n  email_domains: [example.com]\n  git_servers: ['service:git']\n", policy.Weakened, "refs"},
		{"git server added", base, "  refs:\n  - {ref: refs/heads/main, approval: sensitive-data}\n  paths:\n  - {path: deploy/**, approval: critical-weights}\n  email_domains: [example.com]\n  git_servers: ['service:git', 'service:other']\n", policy.Weakened, "git_servers"},
		{"path rule added", base, base + "", policy.Neutral, ""},
		{"repository added", "", base, policy.Neutral, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			newSpec := c.new
			if c.name == "path rule added" {
				newSpec = "  refs:\n  - {ref: refs/heads/main, approval: sensitive-data}\n  paths:\n  - {path: deploy/**, approval: critical-weights}\n  - {path: policy/**, approval: critical-weights}\n  email_domains: [example.com]\n  git_servers: ['service:git']\n"
			}
			d := policy.Compare(withRepository(t, c.old), withRepository(t, newSpec))
			changes := d.Find(policy.SectionDefinition, "repository", "infra")
			if len(changes) == 0 {
				t.Fatalf("no change reported for repository infra: %+v", d.Changes)
			}
			weakened := false
			for _, ch := range changes {
				if ch.Verdict == policy.Weakened {
					weakened = true
					if c.field != "" && ch.Field != c.field {
						t.Errorf("weakened field %q, want %q", ch.Field, c.field)
					}
				}
			}
			if weakened != (c.verdict == policy.Weakened) {
				t.Errorf("weakened = %v, want verdict %s: %+v", weakened, c.verdict, changes)
			}
		})
	}
}
