package main_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
)

// totpApp is a person's authenticator app: it gives a code of a step not used yet (a code is
// accepted once), never earlier than the current step, so the server, a few seconds later,
// finds it within its skew.
type totpApp struct {
	t    *testing.T
	key  []byte
	last int64
}

func newTOTPApp(t *testing.T, enrolOutput string) *totpApp {
	t.Helper()
	secret := regexp.MustCompile(`secret: (\S+)`).FindStringSubmatch(enrolOutput)
	if secret == nil {
		t.Fatalf("mfa enrol printed no secret:\n%s", enrolOutput)
	}
	key, err := identity.DecodeTOTPSecret(secret[1])
	if err != nil {
		t.Fatal(err)
	}
	return &totpApp{t: t, key: key}
}

func (a *totpApp) code() string {
	a.last = max(identity.TOTPStepAt(time.Now()), a.last+1)
	return identity.TOTPAt(a.key, a.last)
}

// A person with neither a factor nor the provider's multi-factor authentication cannot enrol
// one (invariant 8) until an administrator allows it once (mfa.enrol_allowed); the allowance
// is used up by the enrolment (mfa.enrolled). Replacing the factor then takes a code of the
// current one (mfa.replaced), after which the old factor's codes are refused and the new one's
// step up.
func TestMFAAllowanceAndReplacementEndToEnd(t *testing.T) {
	addr := startSignInServer(t)
	alice := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	if out, errOut, err := browserLogin(t, alice, "", "alice", nil); err != nil {
		t.Fatalf("alice login: %v\n%s%s", err, out, errOut)
	}
	erin := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	if out, errOut, err := browserLogin(t, erin, "", "erin", nil); err != nil {
		t.Fatalf("erin login: %v\n%s%s", err, out, errOut)
	}

	// A password-only session cannot add a factor of its own.
	if r := alice.run(nil, "mfa", "enrol"); r.code == 0 || !strings.Contains(r.err, "mfa allow-enrol alice") {
		t.Fatalf("enrolment without a factor, the provider's MFA or an allowance: %+v", r)
	}
	// mfa.enrol_allowed, then mfa.enrolled through the allowance.
	if out := erin.ok("mfa", "allow-enrol", "alice"); !strings.Contains(out, "alice may enrol a second factor") {
		t.Fatalf("mfa allow-enrol: %s", out)
	}
	first := newTOTPApp(t, alice.ok("mfa", "enrol"))
	alice.ok("mfa", "confirm", first.code())
	if r := alice.run(nil, "mfa", "enrol"); r.code == 0 {
		t.Fatalf("the allowance was used twice: %+v", r)
	}
	// mfa.replaced: proved by a code of the factor in use.
	second := newTOTPApp(t, alice.ok("mfa", "enrol", "--otp", first.code()))
	alice.ok("mfa", "confirm", second.code())
	if r := alice.run(nil, "mfa", "step-up", first.code()); r.code == 0 || !strings.Contains(r.err, "wrong") {
		t.Fatalf("the replaced factor still steps up: %+v", r)
	}
	alice.ok("mfa", "step-up", second.code())

	e := ledgerEntries(t, erin, "", "mfa.enrol_allowed", "mfa.enrolled", "mfa.replaced")
	if a := e["mfa.enrol_allowed"]; len(a) != 1 || a[0].Actor.User.Name != "erin" || a[0].Severity != "High" {
		t.Errorf("mfa.enrol_allowed entries: %+v", a)
	}
	if en := e["mfa.enrolled"]; len(en) != 1 || en[0].Unmapped["via"] != identity.MFAViaAdmin {
		t.Errorf("mfa.enrolled entries: %+v", en)
	}
	if r := e["mfa.replaced"]; len(r) != 1 || r[0].Unmapped["via"] != identity.MFAViaFactor || r[0].Actor.User.Name != "alice" || r[0].Severity != "High" {
		t.Errorf("mfa.replaced entries: %+v", r)
	}
}
