package scim

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"rampart.dev/rampart/policy"
)

// Schema and message URNs (RFC 7643, RFC 7644).
const (
	SchemaUser           = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup          = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaEnterpriseUser = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	SchemaListResponse   = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaPatchOp        = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaError          = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaSPConfig       = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	SchemaResourceType   = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema         = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// MediaType is what SCIM answers are (and requests may be) sent as.
const MediaType = "application/scim+json"

// Error is a SCIM error (RFC 7644 section 3.12): the HTTP status, a scimType for 400s and 409s,
// and a detail for people.
type Error struct {
	Status int
	Type   string
	Detail string
}

func (e *Error) Error() string { return e.Detail }

// body is the error's JSON form; status is a string, as the RFC has it.
func (e *Error) body() map[string]any {
	b := map[string]any{"schemas": []string{SchemaError}, "status": fmt.Sprint(e.Status), "detail": e.Detail}
	if e.Type != "" {
		b["scimType"] = e.Type
	}
	return b
}

func invalidValue(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "invalidValue", Detail: fmt.Sprintf(format, args...)}
}

// ErrNotFound is returned by stores for a missing user or group.
var ErrNotFound = errors.New("scim resource not found")

// User is a person as the directory provisioned them. UserName is their Rampart subject.
type User struct {
	ID         string
	UserName   string
	ExternalID string
	Active     bool
	// Attrs is the rest of what the directory sent (name, emails, extensions…), kept to answer
	// it back; never a password.
	Attrs    map[string]any
	Created  time.Time
	Modified time.Time
	Version  int64
}

// Group is a group as the directory provisioned it; policy Groups map it by DisplayName or
// ExternalID (idp_groups).
type Group struct {
	ID          string
	DisplayName string
	ExternalID  string
	// Members are user ids.
	Members  []string
	Attrs    map[string]any
	Created  time.Time
	Modified time.Time
	Version  int64
}

// stripped are attributes never kept in Attrs: the server's own, the ones kept apart, and
// passwords (Okta sends one; Rampart authenticates people at the identity provider).
var stripped = map[string]bool{"id": true, "meta": true, "schemas": true, "password": true, "groups": true,
	"username": true, "active": true, "externalid": true}

// userFrom reads a user from a resource as JSON. The userName becomes the Rampart subject: lower
// case, and a valid user name that is not a machine's.
func userFrom(obj map[string]any) (User, error) {
	var u User
	name, ok := lookup(obj, "userName").(string)
	if !ok || strings.TrimSpace(name) == "" {
		return u, invalidValue("userName is required: the person's user name at the identity provider, as its username claim sends it")
	}
	u.UserName = strings.ToLower(strings.TrimSpace(name))
	err := policy.ValidateSubject(u.UserName)
	if err == nil && policy.SubjectKind(u.UserName) != policy.KindUser {
		err = errors.New("that is the form of a machine subject")
	}
	if err != nil {
		return u, invalidValue("userName %q cannot name a person in Rampart: %v", name, err)
	}
	u.Active = true
	switch a := lookup(obj, "active").(type) {
	case nil:
	case bool:
		u.Active = a
	case string:
		// Entra ID (before its 2020 compliance fixes) sends "True" and "False".
		switch strings.ToLower(a) {
		case "true":
			u.Active = true
		case "false":
			u.Active = false
		default:
			return u, invalidValue("active must be true or false, not %q", a)
		}
	default:
		return u, invalidValue("active must be true or false")
	}
	if x := lookup(obj, "externalId"); x != nil {
		if u.ExternalID, ok = x.(string); !ok {
			return u, invalidValue("externalId must be a string")
		}
	}
	u.Attrs = map[string]any{}
	for k, v := range obj {
		if !stripped[strings.ToLower(k)] {
			u.Attrs[k] = v
		}
	}
	return u, nil
}

// groupFrom reads a group from a resource as JSON.
func groupFrom(obj map[string]any) (Group, error) {
	var g Group
	name, ok := lookup(obj, "displayName").(string)
	if !ok || strings.TrimSpace(name) == "" || len(name) > 256 {
		return g, invalidValue("displayName is required: the group's name (at most 256 bytes)")
	}
	g.DisplayName = name
	if x := lookup(obj, "externalId"); x != nil {
		if g.ExternalID, ok = x.(string); !ok {
			return g, invalidValue("externalId must be a string")
		}
	}
	switch ms := lookup(obj, "members").(type) {
	case nil:
	case []any:
		seen := map[string]bool{}
		for i, m := range ms {
			mm, ok := m.(map[string]any)
			id, _ := lookup(mm, "value").(string)
			if !ok || id == "" {
				return g, invalidValue("members[%d] must be an object whose value is a user id", i)
			}
			if !seen[id] {
				g.Members, seen[id] = append(g.Members, id), true
			}
		}
	default:
		return g, invalidValue("members must be a list")
	}
	g.Attrs = map[string]any{}
	for k, v := range obj {
		if kl := strings.ToLower(k); !stripped[kl] && kl != "displayname" && kl != "members" {
			g.Attrs[k] = v
		}
	}
	return g, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// render returns the user as a SCIM resource.
func (s *Service) renderUser(u User) map[string]any {
	out := map[string]any{}
	for k, v := range u.Attrs {
		out[k] = v
	}
	schemas := []any{SchemaUser}
	if lookup(u.Attrs, SchemaEnterpriseUser) != nil {
		schemas = append(schemas, SchemaEnterpriseUser)
	}
	out["schemas"], out["id"], out["userName"], out["active"] = schemas, u.ID, u.UserName, u.Active
	if u.ExternalID != "" {
		out["externalId"] = u.ExternalID
	}
	out["meta"] = map[string]any{"resourceType": "User", "created": stamp(u.Created), "lastModified": stamp(u.Modified),
		"location": s.location("Users", u.ID), "version": fmt.Sprintf(`W/"%d"`, u.Version)}
	return out
}

// renderGroup returns the group as a SCIM resource; names maps member ids to their userNames.
func (s *Service) renderGroup(g Group, names map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range g.Attrs {
		out[k] = v
	}
	members := []any{}
	for _, id := range g.Members {
		m := map[string]any{"value": id, "$ref": s.location("Users", id), "type": "User"}
		if n := names[id]; n != "" {
			m["display"] = n
		}
		members = append(members, m)
	}
	out["schemas"], out["id"], out["displayName"], out["members"] = []any{SchemaGroup}, g.ID, g.DisplayName, members
	if g.ExternalID != "" {
		out["externalId"] = g.ExternalID
	}
	out["meta"] = map[string]any{"resourceType": "Group", "created": stamp(g.Created), "lastModified": stamp(g.Modified),
		"location": s.location("Groups", g.ID), "version": fmt.Sprintf(`W/"%d"`, g.Version)}
	return out
}

func (s *Service) location(kind, id string) string {
	return s.cfg.BaseURL + "/scim/v2/" + kind + "/" + id
}
