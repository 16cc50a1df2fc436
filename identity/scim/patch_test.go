package scim

import (
	"encoding/json"
	"strings"
	"testing"
)

func patched(t *testing.T, res, body string) (map[string]any, error) {
	t.Helper()
	r := resource(t, res)
	ops, err := ParsePatch([]byte(body))
	if err != nil {
		return nil, err
	}
	return r, applyPatch(r, ops)
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The PATCH shapes Entra ID and Okta document, applied to a user and a group.
func TestPatch(t *testing.T) {
	user := `{"userName":"bjensen@example.com","active":true,"name":{"givenName":"Barbara","familyName":"Jensen"},
		"emails":[{"type":"work","value":"bjensen@example.com","primary":true}]}`
	group := `{"displayName":"weights-owners","members":[{"value":"u1","display":"bob"},{"value":"u2","display":"carol"}]}`
	for _, tc := range []struct {
		name, res, body string
		check           func(m map[string]any) bool
	}{
		{"entra disable (boolean)", user, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":false}]}`,
			func(m map[string]any) bool { return m["active"] == false }},
		{"entra disable (legacy string)", user, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
			func(m map[string]any) bool { return m["active"] == "False" }},
		{"okta deactivate (no path)", user, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`,
			func(m map[string]any) bool { return m["active"] == false }},
		{"entra multi-valued", user, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
			{"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
			{"op":"Replace","path":"name.familyName","value":"updatedFamilyName"}]}`,
			func(m map[string]any) bool {
				return strings.Contains(jsonOf(t, m), `"value":"updatedEmail@microsoft.com"`) && m["name"].(map[string]any)["familyName"] == "updatedFamilyName"
			}},
		{"entra add to a missing element", `{"userName":"x"}`, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
			{"op":"Add","path":"emails[type eq \"work\"].value","value":"x@example.com"}]}`,
			func(m map[string]any) bool {
				return jsonOf(t, m["emails"]) == `[{"type":"work","value":"x@example.com"}]`
			}},
		{"entra no-path add of dotted and extension attributes", user, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
			{"op":"Add","value":{"name.givenName":"Babs","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"42","displayName":"Babs Jensen"}}]}`,
			func(m map[string]any) bool {
				ext, _ := m["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)
				return m["name"].(map[string]any)["givenName"] == "Babs" && ext["employeeNumber"] == "42" && m["displayName"] == "Babs Jensen"
			}},
		{"entra add members", group, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"$ref":null,"value":"u3"},{"$ref":null,"value":"u1"}]}]}`,
			func(m map[string]any) bool { return len(m["members"].([]any)) == 3 }},
		{"entra remove members (value list)", group, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members","value":[{"$ref":null,"value":"u1"}]}]}`,
			func(m map[string]any) bool { return jsonOf(t, m["members"]) == `[{"display":"carol","value":"u2"}]` }},
		{"okta remove member (filter)", group, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"u2\"]"}]}`,
			func(m map[string]any) bool { return jsonOf(t, m["members"]) == `[{"display":"bob","value":"u1"}]` }},
		{"okta add member", group, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"u9","display":"dave@example.com"}]}]}`,
			func(m map[string]any) bool { return len(m["members"].([]any)) == 3 }},
		{"okta rename (no path, with id)", group, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"id":"g1","displayName":"Test SCIMv2"}}]}`,
			func(m map[string]any) bool { return m["displayName"] == "Test SCIMv2" && m["id"] == nil }},
		{"replace all members", group, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[{"value":"u7"}]}]}`,
			func(m map[string]any) bool { return jsonOf(t, m["members"]) == `[{"value":"u7"}]` }},
		{"remove all members", group, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members"}]}`,
			func(m map[string]any) bool { _, ok := m["members"]; return !ok }},
		{"a remove that matches nothing", group, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"nobody\"]"}]}`,
			func(m map[string]any) bool { return len(m["members"].([]any)) == 2 }},
	} {
		m, err := patched(t, tc.res, tc.body)
		if err != nil || !tc.check(m) {
			t.Errorf("%s: %v\n%s", tc.name, err, jsonOf(t, m))
		}
	}
	for _, tc := range []struct{ name, body, scimType string }{
		{"not a PatchOp", `{"Operations":[{"op":"add","value":{}}]}`, "invalidSyntax"},
		{"unknown op", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"move","path":"a"}]}`, "invalidSyntax"},
		{"no operations", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[]}`, "invalidSyntax"},
		{"unknown member", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[],"extra":1}`, "invalidSyntax"},
		{"bad path", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails[type eq","value":1}]}`, "invalidPath"},
		{"remove without path", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove"}]}`, "noTarget"},
		{"read-only", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"id","value":"x"}]}`, "mutability"},
		{"replace of nothing", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails[type eq \"home\"].value","value":"x"}]}`, "noTarget"},
		{"no-path value not an object", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","value":[1]}]}`, "invalidValue"},
	} {
		_, err := patched(t, user, tc.body)
		e, ok := err.(*Error)
		if !ok || e.Type != tc.scimType || e.Status != 400 {
			t.Errorf("%s: %v, want a 400 %s", tc.name, err, tc.scimType)
		}
	}
}

// FuzzPatch: any body either is refused with a SCIM error, or applies to a user and a group
// without panicking, leaving resources that still encode as JSON; a user or group read from the
// result is valid or refused with a SCIM error.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"u2\"]"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"emails[type eq \"work\"].value","value":"a@b"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","value":{"urn:x:y:User":{"a":1},"name.givenName":"z"}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members","value":[{"value":"u1"}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := ParsePatch(body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("a refusal that is not a SCIM error: %v", err)
			}
			return
		}
		for _, base := range []string{
			`{"userName":"bjensen","active":true,"emails":[{"type":"work","value":"b@x"}],"name":{"givenName":"B"}}`,
			`{"displayName":"g","members":[{"value":"u1"},{"value":"u2"},"odd"]}`,
		} {
			var res map[string]any
			_ = json.Unmarshal([]byte(base), &res)
			if err := applyPatch(res, ops); err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("a failure that is not a SCIM error: %v", err)
				}
				continue
			}
			if _, err := json.Marshal(res); err != nil {
				t.Fatalf("the result does not encode: %v", err)
			}
			for _, read := range []func(map[string]any) error{
				func(m map[string]any) error { _, err := userFrom(m); return err },
				func(m map[string]any) error { _, err := groupFrom(m); return err },
			} {
				if err := read(res); err != nil {
					if _, ok := err.(*Error); !ok {
						t.Fatalf("a refusal that is not a SCIM error: %v", err)
					}
				}
			}
		}
	})
}
