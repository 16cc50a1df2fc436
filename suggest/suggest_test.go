package suggest_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

var testdata = filepath.Join("..", "testdata", "suggest")

func catalogue(t testing.TB) *suggest.Engine {
	t.Helper()
	pol, err := policy.Load(os.DirFS(filepath.Join(testdata, "policy")))
	if err != nil {
		t.Fatal(err)
	}
	return suggest.New(pol)
}

func cases(t testing.TB) []suggest.Case {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "eval.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := suggest.ParseCases("eval.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// The labelled set must reach 95% top-1 with the deterministic engine.
func TestEvaluation(t *testing.T) {
	e := catalogue(t)
	cs := cases(t)
	if len(cs) < 60 {
		t.Fatalf("labelled set has %d cases; it must have at least 60", len(cs))
	}
	r := e.Evaluate(cs)
	for _, m := range r.Misses {
		t.Logf("miss: %+v got %q %s", m.Case, m.Got, m.Error)
	}
	if r.Accuracy < 0.95 {
		t.Fatalf("top-1 accuracy %.1f%% (%d/%d), target 95%%", 100*r.Accuracy, r.Correct, r.Total)
	}
	t.Logf("top-1 accuracy %.1f%% (%d/%d)", 100*r.Accuracy, r.Correct, r.Total)
}

func TestSearch(t *testing.T) {
	e := catalogue(t)
	cases := []struct{ q, want string }{
		{"frontier-7 weights", "weights/frontier-7"},
		{"fronteir 7", "weights/frontier-7"},                    // transposition
		{"frontir-8 preview", "weights/frontier-8-preview"},     // deletion
		{"held-out evaluation suite", "datasets/eval-suite-v3"}, // description and tags
		{"hugging face hub", "egress/huggingface.co:443"},
		{"customer feedbak pii", "datasets/customer-feedback"}, // typo in a tag-matched word
		{"data-stewards feedback database", "databases/feedback-db"},
		{"GPU", "clusters/gpu-pool-a"},
	}
	for _, c := range cases {
		hits, err := e.Search(c.q, 3)
		if err != nil {
			t.Fatalf("%q: %v", c.q, err)
		}
		if len(hits) == 0 || hits[0].Resource.Name != c.want {
			var got []string
			for _, h := range hits {
				got = append(got, h.Resource.Name)
			}
			t.Errorf("search %q: top %v, want %s first", c.q, got, c.want)
		}
	}
	if _, err := e.Search("   ", 3); err == nil {
		t.Fatal("an empty query was accepted")
	}
	if hits, _ := e.Search("zzzzqqqq", 3); len(hits) != 0 {
		t.Fatalf("nonsense matched %v", hits)
	}
}

func TestRankAndExplain(t *testing.T) {
	e := catalogue(t)
	rk, err := e.Rank("weights/frontier-7", []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, c := range rk.Candidates {
		order = append(order, c.Role)
	}
	want := []string{"weights-reader-frontier-7", "weights-reader-frontier-7-all", "weights-reader-all", "weights-admin-frontier-7"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("order %v, want %v", order, want)
	}
	if rk.Explanation != "weights-reader-frontier-7 grants read on 1 resource (privilege 8) and needs 2 approvals; the next, weights-reader-frontier-7-all, also grants read on 1 resource (privilege 16)" {
		t.Fatalf("explanation: %s", rk.Explanation)
	}
	rk, _ = e.Rank("weights/frontier-7", []string{"write"})
	if rk.Candidates[0].Role != "weights-admin-frontier-7" || len(rk.Candidates) != 1 || !strings.Contains(rk.Explanation, "only role") {
		t.Fatalf("write: %+v", rk)
	}
	// The next candidate's extra privileges are named.
	rk, _ = e.Rank("datasets/rlhf-preferences", []string{"read"})
	if !strings.Contains(rk.Explanation, "the next, dataset-annotator-rlhf, also grants write on 1 resource") {
		t.Fatalf("explanation: %s", rk.Explanation)
	}
	// Wildcard roles are candidates too, ranked by what they really grant.
	rk, _ = e.Rank("namespaces/evals", []string{"exec"})
	if rk.Candidates[0].Role != "evals-runner" || rk.Candidates[len(rk.Candidates)-1].Role != "cluster-admin" {
		t.Fatalf("exec candidates: %+v", rk.Candidates)
	}
}

func TestNoCandidateNamesOwners(t *testing.T) {
	e := catalogue(t)
	_, err := e.Rank("weights/atlas-2", []string{"delete"})
	var nc *suggest.NoCandidateError
	if !errors.As(err, &nc) || !strings.Contains(err.Error(), "owned by weights-owners (bob, carol)") {
		t.Fatalf("no candidate: %v", err)
	}
	if _, err := e.Rank("weights/frontier-9", []string{"read"}); !errors.Is(err, suggest.ErrUnknownResource) || !strings.Contains(err.Error(), "did you mean") {
		t.Fatalf("unknown resource: %v", err)
	}
	if _, err := e.Rank("weights/frontier-7", []string{"*"}); err == nil {
		t.Fatal("wildcard action accepted")
	}
}

func TestVerify(t *testing.T) {
	e := catalogue(t)
	rk, _ := e.Rank("weights/frontier-7", []string{"read"})
	if err := e.Verify(rk, "weights-reader-frontier-7"); err != nil {
		t.Fatalf("the least privileged candidate refused: %v", err)
	}
	for role, why := range map[string]string{
		"weights-admin-frontier-7":      "grants more privilege (240 over 9 pairs) than weights-reader-frontier-7",
		"weights-reader-all":            "grants more privilege",
		"weights-reader-frontier-7-all": "grants more privilege (16 over 2 pairs) than weights-reader-frontier-7",
		"dataset-admin":                 "not one of the candidates",
		"":                              "not one of the candidates",
	} {
		err := e.Verify(rk, role)
		var ve *suggest.VerificationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), why) {
			t.Errorf("Verify(%q) = %v, want %q", role, err, why)
		}
	}
}

func TestIntentErrors(t *testing.T) {
	e := catalogue(t)
	// Words that describe nothing are not invalid input: the answer says so.
	if s, err := e.Suggest("I need to please"); err != nil || s.Status != suggest.StatusNotUnderstood || !strings.Contains(s.Message, "names no resource") {
		t.Fatalf("no resource words: %+v %v", s, err)
	}
	if _, err := e.Suggest("   "); err == nil {
		t.Fatal("a blank sentence was accepted")
	}
	if s, err := e.Suggest("access the quux frobnicator"); err != nil || s.Status != suggest.StatusNotUnderstood || s.Target != nil ||
		!strings.Contains(s.Message, `"quux" and "frobnicator" match nothing in the catalogue`) {
		t.Fatalf("no match: %+v %v", s, err)
	}
	if _, err := e.Suggest(strings.Repeat("x ", 600)); err == nil {
		t.Fatal("oversized intent accepted")
	}
}

func TestParseCasesRefusesBadFiles(t *testing.T) {
	for src, want := range map[string]string{
		"cases:\n- {intent: x}\n":                          "expect is required",
		"cases:\n- {resource: a/b, expect: r}\n":           "give an intent, or a resource and an action",
		"cases:\n- {intent: x, action: read, expect: r}\n": "not both",
		"cases:\n- {intent: x, expect: r, extra: 1}\n":     `unknown field "extra"`,
		"cases: []\n": "no cases",
	} {
		if _, err := suggest.ParseCases("f.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}

func FuzzSuggest(f *testing.F) {
	e := catalogue(f)
	for _, s := range []string{"run evals on frontier-7", "", "   ", "read and write and delete everything", "fronteir", "ünïcödé wéights", strings.Repeat("a", 2000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := e.Suggest(text)
		if err != nil || s.Status != suggest.StatusSuggested {
			if s.Target != nil || len(s.Targets) > 0 {
				t.Fatalf("status %q with targets %+v", s.Status, s.Targets)
			}
			return
		}
		// Whatever the text, a suggestion is a verified, least privileged candidate.
		if len(s.Target.Candidates) == 0 {
			t.Fatal("a suggestion without candidates")
		}
		if err := e.Verify(s.Target.Ranking, s.Target.Candidates[0].Role); err != nil {
			t.Fatalf("suggested %q does not verify: %v", s.Target.Candidates[0].Role, err)
		}
		_, _ = e.Search(text, 5)
	})
}
