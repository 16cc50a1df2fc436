package policy_test

import (
	"strings"
	"testing"

	"rampart.dev/rampart/policy"
)

// Bad text in a policy file is refused at file:line:column (invariant 7), like every policy
// error, whether it is in a value, in a key, written as a YAML escape, or hidden in a comment
// where it reorders what a reviewer of the policy change reads ("Trojan Source").
func TestPolicyTextRefused(t *testing.T) {
	base := settingsDoc + groupDoc("a", "x")
	role := func(desc string) string {
		return "---\napiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: r1}\nspec:\n  description: " + desc + "\n  rules: [{actions: [read], resources: [\"r/1\"]}]\n"
	}
	// The role's description is on line 15 of the file; its value starts at column 16.
	for _, tc := range []struct {
		name, src, want string
	}{
		{"invalid UTF-8", base + role("caf\xe9"), "p.yaml:15:19: the file is not valid UTF-8 here (byte 0xe9); save it as UTF-8"},
		{"raw override", base + role("read \u202eetirw"), "p.yaml:15:21: the file contains U+202E RIGHT-TO-LEFT OVERRIDE, a bidirectional control character"},
		{"override in a comment", base + "# harmless \u2067 comment\n" + role("ok"), "p.yaml:10:12: the file contains U+2067 RIGHT-TO-LEFT ISOLATE"},
		{"escaped override", base + role(`"read \u202eetirw"`), `p.yaml:15:16: spec.description: the value contains U+202E RIGHT-TO-LEFT OVERRIDE at byte 5`},
		{"escaped isolate in a list", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: Group\nmetadata: {name: b}\nspec: {members: [\"bob\\u2066\"]}\n",
			`p.yaml:14:18: spec.members[0]: the value contains U+2066 LEFT-TO-RIGHT ISOLATE`},
		{"escaped control", base + role(`"a\x1b[2Jb"`), `spec.description: the value contains U+001B ESCAPE at byte 1`},
		{"escaped C1 control", base + role(`"a\x9bb"`), `spec.description: the value contains U+009B at byte 1, a C1 control character`},
		{"escaped carriage return", base + role(`"a\rb"`), `spec.description: the value contains U+000D CARRIAGE RETURN`},
		{"lone carriage return", base + role("a\rb"), "p.yaml:15:17: the file contains U+000D CARRIAGE RETURN"},
		{"escaped key", base + role(`ok`) + "  \"ru\\u200bles\": []\n", `p.yaml:17:3: spec: the key "ru\u200bles" contains U+200B ZERO WIDTH SPACE`},
		{"duplicate key", base + role("first") + "  description: second\n", `p.yaml:17:3: spec.description: field "description" appears twice`},
		{"duplicate map key", settingsDoc[:len(settingsDoc)-len("spec: {admin_group: a}\n")] + "spec: {admin_group: a, admin_group: b}\n" + groupDoc("a", "x") + groupDoc("b", "y"),
			`p.yaml:4:24: spec.admin_group: field "admin_group" appears twice`},
	} {
		_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(tc.src + resourceDoc("r/1", "internal"))}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got\n%v\nwant it to contain\n%s", tc.name, err, tc.want)
			continue
		}
		// No message replays the character onto the terminal that prints it.
		if strings.ContainsAny(err.Error(), "\u202e\u2066\u2067\u200b\x1b\r") || strings.Contains(err.Error(), "\xe9") {
			t.Errorf("%s: the error holds the raw character: %q", tc.name, err.Error())
		}
	}
}

// What the rule allows loads: CRLF line endings, a byte order mark, multi-line descriptions,
// tabs, and any script.
func TestPolicyTextAllowed(t *testing.T) {
	src := "\ufeff" + strings.ReplaceAll(settingsDoc+groupDoc("a", "x")+resourceDoc("r/1", "internal")+
		"---\napiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: r1}\nspec:\n  description: |\n    Lecture des poids, 東京.\n    \tSecond line.\n  rules: [{actions: [read], resources: [\"r/1\"]}]\n", "\n", "\r\n")
	p := mustParse(t, src)
	r, ok := p.Role("r1")
	if !ok || r.Description != "Lecture des poids, 東京.\n\tSecond line.\n" {
		t.Fatalf("description %q", r.Description)
	}
}
