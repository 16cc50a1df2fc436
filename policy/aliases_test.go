package policy_test

import (
	"strings"
	"testing"

	"rampart.dev/rampart/policy"
)

func aliasDoc(aliases string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: Resource\nmetadata: {name: r/a}\nspec:\n  kind: thing\n  sensitivity: public\n  aliases: " + aliases + "\n"
}

// Resource aliases are read, and refused at file:line:column when empty, too long, too many,
// repeated or holding control characters.
func TestResourceAliases(t *testing.T) {
	base := settingsDoc + groupDoc("a", "x", "y")
	p, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(base + aliasDoc(`["基座模型", "the base model"]`))}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := p.Resource("r/a")
	if strings.Join(r.Aliases, "|") != "基座模型|the base model" {
		t.Fatalf("aliases %q", r.Aliases)
	}
	many := make([]string, policy.MaxAliases+1)
	for i := range many {
		many[i] = "n" + strings.Repeat("x", i)
	}
	for name, c := range map[string]struct{ aliases, want string }{
		"empty":    {`["ok", " "]`, `p.yaml:17:19: spec.aliases[1]: alias is empty`},
		"too long": {`["` + strings.Repeat("长", 22) + `"]`, `spec.aliases[0]: alias is 66 bytes; the limit is 64`},
		"too many": {"[" + strings.Join(many, ", ") + "]", `p.yaml:17:3: spec.aliases: 33 aliases; at most 32`},
		"twice":    {`[base, base]`, `spec.aliases[1]: alias "base" is listed twice (also aliases[0])`},
		"control":  {`["a\tb"]`, `spec.aliases[0]: alias "a\tb" contains a control character`},
		"not list": {`base`, `spec.aliases: expected a list`},
	} {
		_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(base + aliasDoc(c.aliases))}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
