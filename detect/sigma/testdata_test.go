package sigma

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/detect"
)

func readTestdata(t *testing.T, names ...string) []File {
	t.Helper()
	var files []File
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Name: n, Data: b})
	}
	return files
}

// TestConvertedRulesFire: the example rules, converted, loaded by the policy loader and run by
// the detection engine, fire on the events they describe and not on others.
func TestConvertedRulesFire(t *testing.T) {
	rules, err := Convert(readTestdata(t, "checkpoint_sweep.yml", "egress_to_paste.yml", "break_glass_read.yml", "denied_probe.yml"), DefaultMapping())
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(rules)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := detect.NewEngine(loaded, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	seq := int64(0)
	fired := map[string][]string{}
	feed := func(ev detect.Event) {
		seq++
		ev.Seq, ev.Time = seq, t0.Add(time.Duration(seq)*time.Minute)
		for _, f := range eng.Process(ev) {
			fired[f.Rule] = append(fired[f.Rule], f.Subject)
		}
	}
	// carol reads four checkpoints in minutes; the evaluation service reads as many and is
	// filtered out; bob reads three (not more than 3).
	for i, r := range []string{"frontier/m7/ckpt-1", "frontier/m7/ckpt-2", "frontier/m7/ckpt-3", "frontier/m7/ckpt-4"} {
		feed(detect.Event{Code: "weights.read", Actor: "carol", Resources: []string{r}})
		feed(detect.Event{Code: "weights.read", Actor: "svc-eval-1", Resources: []string{r}})
		if i < 3 {
			feed(detect.Event{Code: "weights.read", Actor: "bob", Resources: []string{r}})
		}
	}
	feed(detect.Event{Code: "egress.transfer", Actor: "dave", DstHost: "x.pastebin.com"})
	feed(detect.Event{Code: "egress.transfer", Actor: "erin", DstIP: "203.0.113.77"})
	feed(detect.Event{Code: "egress.transfer", Actor: "frank", DstHost: "pastebin.com.example", DstIP: "203.0.114.1"})
	feed(detect.Event{Code: "weights.read", Actor: "gina", Details: map[string]any{"break_glass": true}})
	feed(detect.Event{Code: "weights.read", Actor: "hal", Details: map[string]any{"break_glass": false}})
	for range 5 {
		feed(detect.Event{Code: "secret.denied", Actor: "ivan"})
		feed(detect.Event{Code: "weights.denied", Actor: "ivan"})
	}
	for range 4 {
		feed(detect.Event{Code: "weights.denied", Actor: "judy"})
	}
	want := map[string]string{
		"checkpoint-sweep":                    "carol",
		"egress-to-a-paste-or-file-drop-site": "dave,erin",
		"weights-read-under-break-glass":      "gina",
		"repeated-denied-checks":              "ivan",
	}
	for rule, subjects := range want {
		if got := strings.Join(fired[rule], ","); got != subjects {
			t.Errorf("rule %s fired for %q, want %q", rule, got, subjects)
		}
	}
	if len(fired) != len(want) {
		t.Errorf("fired: %v", fired)
	}
}

func TestUnmappedFieldFile(t *testing.T) {
	_, err := Convert(readTestdata(t, "unmapped_field.yml"), DefaultMapping())
	if err == nil || !strings.Contains(err.Error(), `unmapped_field.yml:5:5: Sigma field "Image" has no mapping`) {
		t.Fatalf("got %v", err)
	}
}
