package api

import (
	"errors"
	"net"
	"net/http"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
)

// DevLoginBody is the body of POST /v1/dev/login.
type DevLoginBody struct {
	User string `json:"user"`
}

// DevLoginResponse is the answer of POST /v1/dev/login: a real sign-in session for the demo user
// (method "dev"), as a sign-in through the identity provider would open, without the provider.
// The secrets are shown once.
type DevLoginResponse struct {
	// Token is the session's access token (rps_…); it lasts minutes and is refreshed with
	// RefreshToken at POST /v1/auth/token, as after any sign-in.
	Token        string           `json:"token"`
	RefreshToken string           `json:"refresh_token"`
	Subject      string           `json:"subject"`
	ExpiresAt    time.Time        `json:"expires_at"`
	Session      identity.Session `json:"session"`
}

// devLogin opens a session for a demo user: rampart dev only, on loopback. It is a session, not
// an API token, so that the walkthrough's approvals come from a person's own session like every
// other approval (invariant 8).
func (s *Server) devLogin(w http.ResponseWriter, r *http.Request) {
	var b DevLoginBody
	if err := decode(w, r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	pol := s.access.Policy()
	if err := policy.ValidateSubject(b.User); err != nil || policy.SubjectKind(b.User) != policy.KindUser {
		why := "it names a machine"
		if err != nil {
			why = err.Error()
		}
		s.fail(w, r, errInvalid("field \"user\": %q is not a user name: %s", b.User, why))
		return
	}
	if len(pol.GroupsOf(b.User)) == 0 {
		s.fail(w, r, errInvalid("%q is not a user of the loaded policy; the dev login is for its group members", b.User))
		return
	}
	if s.sessionsSvc == nil {
		s.fail(w, r, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "this server keeps no sessions"})
		return
	}
	now := s.access.Now()
	iss, err := s.sessionsSvc.Create(r.Context(), identity.NewSession{Subject: b.User, Method: "dev", AuthTime: now, NoGroups: true,
		IP: clientIP(r), Risk: "none", Event: audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate,
			ActivityName: "Logon", Severity: audit.SeverityLow, Time: now, Actor: b.User, User: b.User,
			Message: b.User + " signed in with the development login of rampart dev (no identity provider)", Details: map[string]any{"method": "dev"}}})
	if errors.Is(err, identity.ErrUnauthenticated) {
		s.fail(w, r, errForbidden("%v", err))
		return
	} else if err != nil {
		s.fail(w, r, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "could not open the session: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, DevLoginResponse{Token: iss.AccessToken, RefreshToken: iss.RefreshToken, Subject: b.User,
		ExpiresAt: iss.AccessExpiresAt, Session: iss.Session})
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
