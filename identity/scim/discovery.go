package scim

import "net/http"

// ServiceProviderConfig is GET /scim/v2/ServiceProviderConfig: what this service provider
// supports (RFC 7643 section 5).
func (s *Service) ServiceProviderConfig(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	writeSCIM(w, http.StatusOK, map[string]any{
		"schemas":          []string{SchemaSPConfig},
		"documentationUri": "https://rampart.dev/docs/identity#scim",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": s.cfg.MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": false},
		"authenticationSchemes": []any{map[string]any{"type": "oauthbearertoken", "name": "Bearer secret", "primary": true,
			"description": "Authorization: Bearer <the secret in the server configuration's scim.token_file or scim.token_env>"}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": s.cfg.BaseURL + "/scim/v2/ServiceProviderConfig"},
	})
}

// resourceTypes are the two resource types served.
func (s *Service) resourceTypes() []any {
	return []any{
		map[string]any{"schemas": []string{SchemaResourceType}, "id": "User", "name": "User", "endpoint": "/Users",
			"description": "A person; userName is their Rampart subject", "schema": SchemaUser,
			"schemaExtensions": []any{map[string]any{"schema": SchemaEnterpriseUser, "required": false}},
			"meta":             map[string]any{"resourceType": "ResourceType", "location": s.cfg.BaseURL + "/scim/v2/ResourceTypes/User"}},
		map[string]any{"schemas": []string{SchemaResourceType}, "id": "Group", "name": "Group", "endpoint": "/Groups",
			"description": "A group; policy Groups map it by displayName or externalId (idp_groups)", "schema": SchemaGroup,
			"meta": map[string]any{"resourceType": "ResourceType", "location": s.cfg.BaseURL + "/scim/v2/ResourceTypes/Group"}},
	}
}

// ResourceTypes is GET /scim/v2/ResourceTypes.
func (s *Service) ResourceTypes(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	rts := s.resourceTypes()
	writeSCIM(w, http.StatusOK, map[string]any{"schemas": []string{SchemaListResponse}, "totalResults": len(rts), "startIndex": 1,
		"itemsPerPage": len(rts), "Resources": rts})
}

func attr(name, typ, desc string, multi, required bool, mutability, uniqueness string, caseExact bool, sub ...any) map[string]any {
	a := map[string]any{"name": name, "type": typ, "multiValued": multi, "description": desc, "required": required,
		"caseExact": caseExact, "mutability": mutability, "returned": "default", "uniqueness": uniqueness}
	if len(sub) > 0 {
		a["subAttributes"] = sub
	}
	return a
}

// schemas are the attributes Rampart keeps and acts on; others a directory sends are kept and
// answered back as given.
func (s *Service) schemas() []any {
	str := func(name, desc string) any {
		return attr(name, "string", desc, false, false, "readWrite", "none", false)
	}
	user := map[string]any{"schemas": []string{SchemaSchema}, "id": SchemaUser, "name": "User", "description": "A person",
		"attributes": []any{
			attr("userName", "string", "The person's user name at the identity provider, lower-cased: their Rampart subject. Immutable here.", false, true, "immutable", "server", false),
			attr("active", "boolean", "false disables the person in Rampart: every session, token and grant of theirs ends.", false, false, "readWrite", "none", false),
			attr("externalId", "string", "The directory's id of the person.", false, false, "readWrite", "none", true),
			str("displayName", "The person's name for display."),
			attr("name", "complex", "The person's name.", false, false, "readWrite", "none", false,
				str("formatted", "The full name."), str("familyName", "The family name."), str("givenName", "The given name.")),
			attr("emails", "complex", "Email addresses.", true, false, "readWrite", "none", false,
				str("value", "The address."), str("type", "work, home or other."), attr("primary", "boolean", "The primary address.", false, false, "readWrite", "none", false)),
		},
		"meta": map[string]any{"resourceType": "Schema", "location": s.cfg.BaseURL + "/scim/v2/Schemas/" + SchemaUser}}
	group := map[string]any{"schemas": []string{SchemaSchema}, "id": SchemaGroup, "name": "Group", "description": "A group",
		"attributes": []any{
			attr("displayName", "string", "The group's name; policy Groups map it with idp_groups.", false, true, "readWrite", "none", false),
			attr("externalId", "string", "The directory's id of the group (Entra ID: its object id); policy Groups may map it.", false, false, "readWrite", "none", true),
			attr("members", "complex", "The group's members: provisioned users.", true, false, "readWrite", "none", false,
				attr("value", "string", "The member's id.", false, true, "immutable", "none", true),
				attr("display", "string", "The member's userName.", false, false, "readOnly", "none", false),
				attr("$ref", "reference", "The member's URI.", false, false, "immutable", "none", true)),
		},
		"meta": map[string]any{"resourceType": "Schema", "location": s.cfg.BaseURL + "/scim/v2/Schemas/" + SchemaGroup}}
	return []any{user, group}
}

// Schemas is GET /scim/v2/Schemas.
func (s *Service) Schemas(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	sc := s.schemas()
	writeSCIM(w, http.StatusOK, map[string]any{"schemas": []string{SchemaListResponse}, "totalResults": len(sc), "startIndex": 1,
		"itemsPerPage": len(sc), "Resources": sc})
}
