package policy_test

import (
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/policy"
)

func TestRefusalSettings(t *testing.T) {
	p := mustParse(t, settingsDoc+groupDoc("a", "x"))
	if r := p.Settings().Refusals; r.Window.Std() != time.Minute || r.MaxSources != 200 || r.RiskHistory != 20 || r.SignInStarts != 30 {
		t.Fatalf("defaults: %+v", r)
	}
	set := func(refusals string) string {
		return strings.Replace(settingsDoc, "spec: {admin_group: a}\n", "spec:\n  admin_group: a\n  refusals: "+refusals+"\n", 1) + groupDoc("a", "x")
	}
	p = mustParse(t, set("{window: 10s, max_sources: 50, risk_history: 8}"))
	if r := p.Settings().Refusals; r.Window.Std() != 10*time.Second || r.MaxSources != 50 || r.RiskHistory != 8 {
		t.Fatalf("set: %+v", r)
	}
	for _, tc := range []struct{ refusals, want string }{
		{"{window: 100ms}", "p.yaml:6:14: spec.refusals.window: refusals.window 100ms must lie between 1s and 24h"},
		{"{window: 48h}", "spec.refusals.window: refusals.window 48h must lie between 1s and 24h"},
		{"{max_sources: -1}", "spec.refusals.max_sources: refusals.max_sources -1 must lie between 1 and 100000"},
		{"{risk_history: 1000000}", "spec.refusals.risk_history: refusals.risk_history 1000000 must lie between 1 and 10000"},
		{"{sign_in_starts: -3}", "spec.refusals.sign_in_starts: refusals.sign_in_starts -3 must lie between 1 and 100000"},
		{"{windw: 1m}", `unknown field "windw"`},
	} {
		_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(set(tc.refusals))}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("refusals %s: %v, want %q", tc.refusals, err, tc.want)
		}
	}
}
