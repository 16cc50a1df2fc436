package risk_test

import (
	"encoding/json"
	"strings"
	"testing"

	"rampart.dev/rampart/identity/risk"
)

func TestLevelText(t *testing.T) {
	for l := risk.None; l <= risk.High; l++ {
		b, err := l.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back risk.Level
		if err := back.UnmarshalText(b); err != nil || back != l || string(b) != l.String() {
			t.Fatalf("%d → %q → %d, %v", l, b, back, err)
		}
	}
	if got := []string{risk.None.String(), risk.Low.String(), risk.Medium.String(), risk.High.String()}; strings.Join(got, "|") != "none|low|medium|high" {
		t.Fatalf("names %v", got)
	}
	if _, err := risk.Level(4).MarshalText(); err == nil {
		t.Fatal("marshalled level 4")
	}
	if risk.Level(-1).String() != "level(-1)" {
		t.Fatal(risk.Level(-1).String())
	}
	for _, bad := range []string{"", "HIGH", "critical", " low"} {
		var l risk.Level
		if err := l.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	b, err := json.Marshal(risk.Detection{Code: "bad_ip", Level: risk.High})
	if err != nil || !strings.Contains(string(b), `"level":"high"`) {
		t.Fatalf("JSON %s, %v", b, err)
	}
}

func TestOutcomes(t *testing.T) {
	var zero risk.Outcomes
	for l, want := range map[risk.Level]risk.Outcome{risk.None: risk.Allow, risk.Low: risk.Allow, risk.Medium: risk.StepUp, risk.High: risk.Block, risk.Level(9): risk.Block, risk.Level(-1): risk.Block} {
		if got := zero.For(l); got != want {
			t.Errorf("zero Outcomes.For(%s) = %s, want %s", l, got, want)
		}
	}
	if zero.String() != "none=allow,low=allow,medium=step_up,high=block" || zero.String() != risk.DefaultOutcomes().String() {
		t.Errorf("String() = %q", zero.String())
	}
	for _, tc := range []struct{ text, want string }{
		{"", "none=allow,low=allow,medium=step_up,high=block"},
		{"medium=block", "none=allow,low=allow,medium=block,high=block"},
		{"low=step_up, medium=block", "none=allow,low=step_up,medium=block,high=block"},
		{"none=allow low=allow medium=allow high=allow", "none=allow,low=allow,medium=allow,high=allow"}, // report-only
	} {
		o, err := risk.ParseOutcomes(tc.text)
		if err != nil {
			t.Fatalf("ParseOutcomes(%q): %v", tc.text, err)
		}
		if o.String() != tc.want {
			t.Errorf("ParseOutcomes(%q) = %s, want %s", tc.text, o, tc.want)
		}
		var back risk.Outcomes
		if err := back.UnmarshalText([]byte(o.String())); err != nil || back.String() != o.String() {
			t.Errorf("round trip of %s: %s, %v", o, back, err)
		}
	}
	for _, tc := range []struct{ text, want string }{
		{"high=allow", "more lenient than step_up for medium"},
		{"low=block", "medium is step_up, more lenient than block for low"},
		{"medium=deny", `"deny" is not allow, step_up or block`},
		{"urgent=block", `"urgent" is not one of none, low, medium, high`},
		{"medium", "is not level=outcome"},
		{"medium=block,medium=block", "medium is given twice"},
	} {
		if _, err := risk.ParseOutcomes(tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseOutcomes(%q): %v, want an error with %q", tc.text, err, tc.want)
		}
	}
	if err := (risk.Outcomes{Medium: "maybe"}).Validate(); err == nil {
		t.Error("validated an unknown outcome")
	}
	if got := (risk.Outcomes{Medium: "maybe"}).For(risk.Medium); got != risk.Block {
		t.Errorf("an unknown outcome gives %s, want block", got)
	}
}
