package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
)

// CreateTokenBody is the body of POST /v1/tokens.
type CreateTokenBody struct {
	// Subject is who the token acts for: yourself (the default), or, for a service token, a
	// service:<name> subject.
	Subject string `json:"subject"`
	Kind    string `json:"kind"`
	// TTL is the token's life. A person's own token lasts until their session ends by default,
	// and may outlive it only after a fresh multi-factor sign-in; a service token lasts 24h by
	// default.
	TTL         string `json:"ttl"`
	Description string `json:"description,omitempty"`
}

// DefaultServiceTokenTTL is a service token's life unless asked otherwise.
const DefaultServiceTokenTTL = 24 * time.Hour

// createToken is POST /v1/tokens. Nobody, admins included, obtains a token that acts as another
// person (invariant 8): people mint tokens for themselves, from their own signed-in session,
// bound to it; admins also issue service tokens, which act only for service: subjects and never
// approve.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, c caller) error {
	var b CreateTokenBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if b.Kind == "" {
		b.Kind = identity.KindUser
	}
	if b.Subject == "" {
		b.Subject = c.Subject
	}
	ttl, err := parseDuration("ttl", b.TTL)
	if err != nil {
		return err
	}
	if err := policy.ValidateSubject(b.Subject); err != nil {
		return errInvalid("field \"subject\": %v", err)
	}
	var (
		secret string
		t      identity.Token
	)
	switch {
	case b.Kind == identity.KindService:
		if c.Kind != identity.KindUser || !c.admin() {
			return errForbidden("only admins issue service tokens")
		}
		if policy.SubjectKind(b.Subject) != policy.KindService {
			return errInvalid("field \"subject\": a service token acts for a machine, so its subject must be service:<name>, not %q; people mint their own tokens (rampart token create, signed in as themselves)", b.Subject)
		}
		if ttl == 0 {
			ttl = DefaultServiceTokenTTL
		}
		secret, t, err = s.tokens.Issue(r.Context(), b.Subject, b.Kind, b.Description, c.Subject, ttl)
	case b.Kind != identity.KindUser:
		return errInvalid("field \"kind\": %q is not user or service", b.Kind)
	case b.Subject != c.Subject:
		return errForbidden("nobody, admins included, may obtain a token that acts as another person (%s): %s must sign in and mint their own (rampart login, then rampart token create); admins issue service tokens only for service:<name> subjects", b.Subject, b.Subject)
	default:
		secret, t, err = s.tokens.Mint(r.Context(), identity.MintInput{Caller: c.Principal, TTL: ttl, Description: b.Description})
	}
	switch {
	case errors.Is(err, identity.ErrInvalidToken):
		return errInvalid("%v", err)
	case errors.Is(err, identity.ErrMintRefused):
		return errForbidden("%v", err)
	case errors.Is(err, identity.ErrTooManyTokens):
		return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited, Message: err.Error()}
	case errors.Is(err, identity.ErrStepUpNeeded):
		return &Error{Status: http.StatusUnauthorized, Code: CodeStepUpRequired, Message: err.Error(), maxAge: identity.TokenStepUpFresh}
	case errors.Is(err, identity.ErrUnauthenticated):
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: err.Error()}
	case err != nil:
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "could not issue the token: " + err.Error()}
	}
	writeJSON(w, http.StatusCreated, TokenResponse{Token: secret, ID: t.ID, Subject: t.Subject, Kind: t.Kind, ExpiresAt: t.ExpiresAt,
		SessionID: t.SessionID, SessionBound: t.SessionBound})
	return nil
}

// listTokens is GET /v1/tokens[?subject=NAME|?all=true]: the caller's own tokens; admins and
// auditors may list anyone's. Secrets are never stored, so none is shown.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, c caller) error {
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
			return errForbidden("listing everyone's tokens needs an admin or auditor")
		}
	case subject == "":
		subject = c.Subject
	case subject != c.Subject && !c.admin() && !c.auditor():
		return errForbidden("%s may list only their own tokens", c.Subject)
	}
	list, err := s.tokens.List(r.Context(), subject)
	if err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "could not list tokens: " + err.Error()}
	}
	if list == nil {
		list = []identity.Token{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// revokeToken is POST /v1/tokens/{id}/revoke: one's own tokens, or anyone's for admins.
// Another person's token is reported missing to non-admins.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := decodeOptional(w, r, &struct{}{}); err != nil {
		return err
	}
	id := r.PathValue("id")
	err := s.tokens.RevokeIf(r.Context(), id, c.Subject, "revoked by "+c.Subject, func(t identity.Token) error {
		if t.Subject != c.Subject && !c.admin() {
			return identity.ErrTokenNotFound
		}
		return nil
	})
	if errors.Is(err, identity.ErrTokenNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no unrevoked token %s of yours; see rampart token list", id)}
	} else if err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "could not revoke: " + err.Error()}
	}
	writeJSON(w, 200, map[string]string{"revoked": id})
	return nil
}
