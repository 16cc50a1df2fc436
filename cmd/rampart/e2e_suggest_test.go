package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The three outcomes of `rampart suggest` as a user and a script see them (issue 18): a role
// (exit 0), several roles for several needs, and "No role fits" with the words not understood
// and the nearest resources (exit 4, HTTP 200 underneath), never an unrelated role.
func TestSuggestOutcomes(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(t.TempDir(), "data"))
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	c.ok("login", "--dev", "--user", "alice")

	out := c.ok("suggest", "read the frontier-7 weights")
	if !regexp.MustCompile(`Least privileged role:\s+weights-reader-frontier-7\n`).MatchString(out) || strings.Contains(out, "No role fits") {
		t.Fatalf("suggested: %s", out)
	}
	var adv struct {
		Status  string   `json:"status"`
		Roles   []string `json:"roles"`
		Unknown []string `json:"unknown"`
		Nearest []string `json:"nearest"`
		Message string   `json:"message"`
		Parts   []struct {
			Role struct{ Role string } `json:"role"`
		} `json:"parts"`
	}
	if err := json.Unmarshal([]byte(c.ok("-o", "json", "suggest", "read the frontier-7 weights")), &adv); err != nil || adv.Status != "suggested" || len(adv.Roles) != 1 || adv.Roles[0] != "weights-reader-frontier-7" {
		t.Fatalf("suggested, json: %+v %v", adv, err)
	}

	// Two needs, two roles.
	out = c.ok("suggest", "read the frontier-7 weights and read the eval suite dataset")
	if !regexp.MustCompile(`Roles to request:\s+weights-reader-frontier-7, dataset-reader-eval-suite-v3\n`).MatchString(out) {
		t.Errorf("two needs: %s", out)
	}

	// A model that is not in the catalogue: not understood, named, exit 4, no role.
	r := c.run(nil, "suggest", "read the zephyr-9 weights")
	if r.code != 4 || !strings.Contains(r.out, "No role fits") || !regexp.MustCompile(`Not understood:\s+.*zephyr`).MatchString(r.out) || strings.Contains(r.out, "Least privileged role") {
		t.Errorf("not understood: exit %d\n%s%s", r.code, r.out, r.err)
	}
	r = c.run(nil, "-o", "json", "suggest", "read the zephyr-9 weights")
	adv.Roles, adv.Unknown = nil, nil
	if err := json.Unmarshal([]byte(r.out), &adv); r.code != 4 || err != nil || adv.Status != "not_understood" || len(adv.Roles) != 0 || len(adv.Unknown) == 0 {
		t.Errorf("not understood, json: exit %d %+v %v\n%s", r.code, adv, err, r.out)
	}

	// suggest eval without --policy asks the server: sets, none (an intent not understood, a
	// resource with no role for the action (422), a resource not in the catalogue (404)).
	file := filepath.Join(t.TempDir(), "eval.yaml")
	if err := os.WriteFile(file, []byte(`cases:
- {intent: "read the frontier-7 weights", expect: weights-reader-frontier-7, category: plain}
- {intent: "read the zephyr-9 weights", expect: none, category: unknown-noun}
- {intent: "read the frontier-7 weights and read the eval suite dataset", expect: [dataset-reader-eval-suite-v3, weights-reader-frontier-7], category: multi-need}
- {resource: weights/frontier-7, action: exec, expect: none, category: resource-action}
- {resource: weights/frontier-77, action: read, expect: none, category: resource-action}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("suggest", "eval", file, "--min", "1", "--min-category", "1"); !strings.Contains(out, "accuracy: 100.0% (5 of 5)") {
		t.Errorf("remote eval: %s", out)
	}
}

// request create with several --resource files one request per distinct role, together.
func TestRequestCreateSeveralResources(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(t.TempDir(), "data"))
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	c.ok("login", "--dev", "--user", "alice")

	// Nothing is requested when one resource has no role for the action, though the other has.
	r := c.run(nil, "request", "create", "--resource", "weights/frontier-7", "--resource", "datasets/eval-suite-v3", "--action", "delete", "--reason", "x", "--yes")
	if r.code != 4 || !strings.Contains(r.err, "--resource datasets/eval-suite-v3: no requestable role grants delete") || !strings.Contains(r.err, "nothing was requested") {
		t.Fatalf("no role for one resource: %+v", r)
	}
	if out := c.ok("-o", "json", "request", "list"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("a refused set filed requests: %s", out)
	}
	// Without --yes and no terminal, nothing is requested either.
	if r := c.run(nil, "request", "create", "--resource", "weights/frontier-7", "--resource", "datasets/eval-suite-v3", "--action", "read", "--reason", "x"); r.code != 2 || !strings.Contains(r.err, "--yes") {
		t.Fatalf("unconfirmed set: %+v", r)
	}
	if r := c.run(nil, "request", "create", "--resource", "weights/frontier-7", "--resource", "datasets/eval-suite-v3", "--action", "read", "--reason", "x", "--wait"); r.code != 2 {
		t.Fatalf("--wait with a set: %+v", r)
	}

	out := c.ok("request", "create", "--resource", "weights/frontier-7", "--resource", "datasets/eval-suite-v3", "--action", "read", "--reason", "eval run 7", "--duration", "2h", "--yes")
	if !strings.Contains(out, "weights-reader-frontier-7 for alice, 2h") || !strings.Contains(out, "dataset-reader-eval-suite-v3 for alice, 2h") || !strings.Contains(out, "(for datasets/eval-suite-v3)") {
		t.Fatalf("set: %s", out)
	}
	var reqs []struct{ Role, Reason string }
	if err := json.Unmarshal([]byte(c.ok("-o", "json", "request", "list")), &reqs); err != nil || len(reqs) != 2 {
		t.Fatalf("requests after the set: %+v %v", reqs, err)
	}
	for _, q := range reqs {
		if q.Reason != "eval run 7" {
			t.Errorf("request %+v: reason not shared", q)
		}
	}
}

// suggest eval reports accuracy per category and fails under --min or --min-category.
func TestSuggestEvalCategories(t *testing.T) {
	c := &cli{t: t, addr: "127.0.0.1:1"} // offline: --policy
	file := filepath.Join(t.TempDir(), "eval.yaml")
	if err := os.WriteFile(file, []byte(`cases:
- {resource: weights/frontier-7, action: read, expect: weights-reader-frontier-7, category: plain}
- {resource: weights/frontier-8-preview, action: read, expect: weights-reader-frontier-8, category: plain}
- {resource: weights/zephyr-9, action: read, expect: none, category: unknown-noun}
- {resource: weights/frontier-7, action: exec, expect: none, category: unknown-noun}
- resource: weights/frontier-7
  action: read
  expect: weights-admin-frontier-7   # a wrong label, to see a miss
  category: wrong
`), 0o600); err != nil {
		t.Fatal(err)
	}
	eval := []string{"suggest", "eval", file, "--policy", "../../testdata/suggest/policy"}
	out := c.ok(append(eval, "--min", "0.75")...)
	for _, want := range []string{"accuracy: 80.0% (4 of 5)", "plain", "unknown-noun", "wrong", "0.0%"} {
		if !strings.Contains(out, want) {
			t.Errorf("report does not say %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`miss:\s+` + regexp.QuoteMeta(file) + `:6\s+\[wrong\]\s+read on weights/frontier-7\s+want weights-admin-frontier-7\s+got suggested weights-reader-frontier-7`).MatchString(out) {
		t.Errorf("the miss is not named with its file:line, category, label and answer:\n%s", out)
	}
	r := c.run(nil, append(eval, "--min-category", "0.9")...)
	if r.code != 1 || !strings.Contains(r.err, "category wrong: 0.0% (0 of 1) is below --min-category 90.0%") {
		t.Errorf("under --min-category: %+v", r)
	}
	r = c.run(nil, append(eval, "--min", "0.9")...)
	if r.code != 1 || !strings.Contains(r.err, "accuracy 80.0% is below --min 90.0%") {
		t.Errorf("under --min: %+v", r)
	}
	if r := c.run(nil, append(eval, "--min-category", "1.5")...); r.code != 2 {
		t.Errorf("--min-category 1.5: %+v", r)
	}
	var rep struct {
		Categories map[string]struct {
			Total, Correct int
			Accuracy       float64
		} `json:"categories"`
		Misses []struct {
			Category, Status string
			Line             int
		} `json:"misses"`
	}
	if err := json.Unmarshal([]byte(c.ok(append([]string{"-o", "json"}, eval...)...)), &rep); err != nil || rep.Categories["unknown-noun"].Correct != 2 || rep.Categories["plain"].Accuracy != 1 || len(rep.Misses) != 1 || rep.Misses[0].Category != "wrong" || rep.Misses[0].Status != "suggested" || rep.Misses[0].Line != 6 {
		t.Errorf("json report: %+v %v", rep, err)
	}
	// A bad label is refused with its file:line and field.
	if err := os.WriteFile(file, []byte("cases:\n- intent: read x\n  expect: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.run(nil, eval...); r.code != 1 || !strings.Contains(r.err, file+":3:3: cases[0].expect: the list of roles is empty") {
		t.Errorf("bad label: %+v", r)
	}
}
