package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
)

// SignIn is the OIDC sign-in service (identity/signin): browser pages and OAuth-style endpoints
// that authenticate their callers themselves.
type SignIn interface {
	Login(w http.ResponseWriter, r *http.Request)
	Callback(w http.ResponseWriter, r *http.Request)
	LoginMFA(w http.ResponseWriter, r *http.Request)
	Device(w http.ResponseWriter, r *http.Request)
	Token(w http.ResponseWriter, r *http.Request)
	StepUp(w http.ResponseWriter, r *http.Request)
	EnrolTOTP(w http.ResponseWriter, r *http.Request)
	ConfirmTOTP(w http.ResponseWriter, r *http.Request)
}

// Lifecycle disables and enables people (server.Instance): disabling ends every credential,
// grant and decision of theirs at once (invariant 8); enabling only lets them sign in again.
type Lifecycle interface {
	DisableUser(ctx context.Context, subject, actor, reason string) (identity.Disabled, access.SubjectRevoked, error)
	EnableUser(ctx context.Context, subject, actor string) error
}

// UserDisabled is the answer of POST /v1/users/{subject}/disable: what disabling ended.
type UserDisabled struct {
	Subject string `json:"subject"`
	Status  string `json:"status"`
	identity.Disabled
	// Grants are the ids of the grants revoked; Requests the pending requests by or for the
	// person that were cancelled; Approvals the pending requests whose approval by them was
	// withdrawn.
	Grants    []string `json:"grants_revoked"`
	Requests  []string `json:"requests_cancelled"`
	Approvals []string `json:"approvals_withdrawn"`
}

// SCIM is the SCIM 2.0 provisioning service (identity/scim): the organisation's directory
// creates, updates and deprovisions people and groups. It authenticates the directory itself
// (a bearer secret from the server configuration) and answers in SCIM's own formats.
type SCIM interface {
	ServiceProviderConfig(w http.ResponseWriter, r *http.Request)
	ResourceTypes(w http.ResponseWriter, r *http.Request)
	Schemas(w http.ResponseWriter, r *http.Request)
	ListUsers(w http.ResponseWriter, r *http.Request)
	CreateUser(w http.ResponseWriter, r *http.Request)
	GetUser(w http.ResponseWriter, r *http.Request)
	ReplaceUser(w http.ResponseWriter, r *http.Request)
	PatchUser(w http.ResponseWriter, r *http.Request)
	DeleteUser(w http.ResponseWriter, r *http.Request)
	ListGroups(w http.ResponseWriter, r *http.Request)
	CreateGroup(w http.ResponseWriter, r *http.Request)
	GetGroup(w http.ResponseWriter, r *http.Request)
	ReplaceGroup(w http.ResponseWriter, r *http.Request)
	PatchGroup(w http.ResponseWriter, r *http.Request)
	DeleteGroup(w http.ResponseWriter, r *http.Request)
}

// UserStore lists the people Rampart knows.
type UserStore interface {
	ListUsers(ctx context.Context) ([]identity.User, error)
	ListSessions(ctx context.Context, subject string) ([]identity.Session, error)
}

// sessions answers GET /v1/sessions[?subject=NAME|?all=true]: the caller's own sessions;
// admins and auditors may list anyone's.
func (s *Server) sessions(w http.ResponseWriter, r *http.Request, c caller) error {
	if s.users == nil {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server keeps no sign-in sessions"}
	}
	q := r.URL.Query()
	subject := q.Get("subject")
	all, err := boolParam(r, "all")
	if err != nil {
		return err
	}
	switch {
	case all:
		subject = ""
		if !c.admin() && !c.auditor() {
			return errForbidden("listing everyone's sessions needs an admin or auditor")
		}
	case subject == "":
		subject = c.Subject
	case subject != c.Subject && !c.admin() && !c.auditor():
		return errForbidden("%s may list only their own sessions", c.Subject)
	}
	list, err := s.users.ListSessions(r.Context(), subject)
	if err != nil {
		return err
	}
	if list == nil {
		list = []identity.Session{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// revokeSession is POST /v1/sessions/{id}/revoke: one's own session, or anyone's for admins.
// Another person's session is reported missing to non-admins (it is not theirs to know about).
func (s *Server) revokeSession(w http.ResponseWriter, r *http.Request, c caller) error {
	if s.sessionsSvc == nil {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server has no sign-in sessions"}
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptional(w, r, &body); err != nil {
		return err
	}
	if body.Reason == "" {
		body.Reason = "revoked by " + c.Subject
	}
	id := r.PathValue("id")
	err := s.sessionsSvc.RevokeIf(r.Context(), id, c.Subject, body.Reason, func(ses identity.Session) error {
		if ses.Subject != c.Subject && !c.admin() {
			return identity.ErrSessionNotFound
		}
		return nil
	})
	if errors.Is(err, identity.ErrSessionNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no session %s of yours", id)}
	} else if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"session_id": id, "status": "revoked"})
	return nil
}

// listUsers is GET /v1/users (admins and auditors).
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, c caller) error {
	if !c.admin() && !c.auditor() {
		return errForbidden("listing users needs an admin or auditor")
	}
	if s.users == nil {
		writeJSON(w, http.StatusOK, []identity.User{})
		return nil
	}
	list, err := s.users.ListUsers(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []identity.User{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// userAction is POST /v1/users/{subject}/{disable,enable,unbind,mfa/reset} (admins).
func (s *Server) userAction(action string) handler {
	return func(w http.ResponseWriter, r *http.Request, c caller) error {
		if !c.admin() {
			return errForbidden("%s a user needs an admin", map[string]string{"disable": "disabling", "enable": "enabling", "unbind": "unbinding",
				"mfa-reset": "resetting the second factor of", "mfa-allow-enrol": "allowing a second-factor enrolment of"}[action])
		}
		if s.sessionsSvc == nil {
			return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server has no user records"}
		}
		subject := r.PathValue("subject")
		if err := policy.ValidateSubject(subject); err != nil || policy.SubjectKind(subject) != policy.KindUser {
			return errInvalid("%q is not a user name", subject)
		}
		var err error
		switch action {
		case "disable":
			if subject == c.Subject {
				return errInvalid("an admin cannot disable themselves (ask another admin)")
			}
			return s.disableUser(w, r, c, subject)
		case "enable":
			if s.lifecycle != nil {
				err = s.lifecycle.EnableUser(r.Context(), subject, c.Subject)
			} else {
				err = s.sessionsSvc.Enable(r.Context(), subject, c.Subject)
			}
		case "unbind":
			err = s.sessionsSvc.Unbind(r.Context(), subject, c.Subject)
		case "mfa-reset":
			err = s.sessionsSvc.ResetMFA(r.Context(), subject, c.Subject)
		case "mfa-allow-enrol":
			if subject == c.Subject {
				return errInvalid("an admin cannot allow their own enrolment (ask another admin)")
			}
			var until time.Time
			until, err = s.sessionsSvc.AllowMFAEnrolment(r.Context(), subject, c.Subject)
			if errors.Is(err, identity.ErrUnauthenticated) {
				return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}
			} else if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, map[string]any{"subject": subject, "status": action, "until": until.UTC()})
			return nil
		}
		if errors.Is(err, identity.ErrSessionNotFound) || errors.Is(err, identity.ErrNoFactor) {
			return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
		} else if err != nil {
			return err
		}
		if s.tokens != nil {
			s.tokens.ForgetSubject(subject)
		}
		writeJSON(w, http.StatusOK, map[string]string{"subject": subject, "status": action})
		return nil
	}
}

// disableUser ends everything of a person's at once (invariant 8) and says what it ended.
func (s *Server) disableUser(w http.ResponseWriter, r *http.Request, c caller, subject string) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptional(w, r, &body); err != nil {
		return err
	}
	if err := checkReason(body.Reason); err != nil {
		return err
	}
	out := UserDisabled{Subject: subject, Status: "disabled", Grants: []string{}, Requests: []string{}, Approvals: []string{}}
	var (
		rev access.SubjectRevoked
		err error
	)
	if s.lifecycle != nil {
		out.Disabled, rev, err = s.lifecycle.DisableUser(r.Context(), subject, c.Subject, body.Reason)
	} else {
		out.Disabled, err = s.sessionsSvc.Disable(r.Context(), subject, c.Subject, body.Reason)
	}
	if err != nil {
		if errors.Is(err, access.ErrUnavailable) || errors.Is(err, access.ErrInvalid) {
			return toError(err)
		}
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "could not disable " + subject + ": " + err.Error()}
	}
	if out.Sessions == nil {
		out.Sessions = []string{}
	}
	for _, g := range rev.Grants {
		out.Grants = append(out.Grants, g.ID)
	}
	out.Requests = append(out.Requests, rev.Requests...)
	out.Approvals = append(out.Approvals, rev.Approvals...)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func checkReason(s string) error {
	if len(s) > 1024 {
		return errInvalid("field \"reason\" is %d bytes; the limit is 1024", len(s))
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return errInvalid("field \"reason\" contains a control character (%U); write plain text", r)
		}
	}
	return nil
}

// ownSession refuses a review (approve or deny) unless the caller's credential is a person's own
// sign-in session or a token bound to it (invariant 8): an approval is a person's decision, and
// only their session proves it is theirs. Service and workload credentials never review; nor
// does a token bound to no session (a bootstrap or administrator's token, or one minted to
// outlive its session), since whoever holds it need not be its person at the keyboard.
func ownSession(c caller, what string) error {
	switch {
	case c.Kind == identity.KindService || c.Kind == identity.KindWorkload || c.Kind == identity.KindPipeline:
		return errForbidden("a %s credential (%s) may never %s a request: reviews come only from a person's own sign-in session (rampart login)", c.Kind, c.Subject, what)
	case c.SessionID == "":
		return errForbidden("to %s, use your own sign-in session (rampart login) or a token minted from it; token %s is bound to no session (a bootstrap or administrator's token, or one minted to outlive its session)", what, c.TokenID)
	}
	return nil
}

// untrustedStepUp explains a step-up refusal when the caller did step up, with a factor that
// does not count for approvals yet.
func untrustedStepUp(err error, c caller) error {
	var su *access.StepUpRequired
	if !errors.As(err, &su) || c.MFAAt.IsZero() || !c.MFAAt.After(c.TrustedMFAAt) || su.At.Sub(c.MFAAt) > su.MaxAge {
		return err
	}
	return &Error{Status: http.StatusUnauthorized, Code: CodeStepUpRequired, maxAge: su.MaxAge, Message: fmt.Sprintf(
		"%s; your step-up at %s used a Rampart second factor enrolled in the last %s (not under the identity provider's multi-factor authentication), which does not count for approvals yet: step up at the identity provider (rampart login --step-up)",
		su.Error(), c.MFAAt.UTC().Format(time.RFC3339), identity.FactorTrustAge)}
}
