package api

import (
	"net/http"

	"rampart.dev/rampart/change"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
)

// Guarded change (package change, docs/change.md): change requests to protected Git refs, reviews
// bound to the base and merge tree the reviewer's own checkout computed, the Git server hook's
// verdicts, and approvals bundles. Reviews come only from a person's own session (invariant 8),
// verdicts only from the repository's git_servers.

// FileChangeBody is the body of POST /v1/changes: what `rampart change request` computed with git
// in the requester's checkout.
type FileChangeBody struct {
	Repository string          `json:"repository"`
	Ref        string          `json:"ref"`
	Base       string          `json:"base"`
	Source     string          `json:"source"`
	Tree       string          `json:"tree"`
	Paths      []string        `json:"paths"`
	Commits    []change.Commit `json:"commits"`
}

// ReviewChangeBody is the body of POST /v1/changes/{id}/approve and /deny: the base and merge tree
// the reviewer's own checkout computed (they must be the change's).
type ReviewChangeBody struct {
	Base    string `json:"base"`
	Tree    string `json:"tree"`
	Comment string `json:"comment,omitempty"`
}

// ChangeList is a list of changes, newest first.
type ChangeList struct {
	Changes []change.Change `json:"changes"`
}

func (s *Server) changesOr404() error {
	if s.changes == nil {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server does not run guarded change"}
	}
	return nil
}

func (s *Server) fileChange(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.changesOr404(); err != nil {
		return err
	}
	var b FileChangeBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if c.Kind == identity.KindWorkload {
		return errForbidden("a workload credential (%s) may not file change requests", c.Subject)
	}
	v, err := s.changes.File(r.Context(), change.FileInput{Requester: c.Subject, Repository: b.Repository, Ref: b.Ref, Base: b.Base, Source: b.Source, Tree: b.Tree, Paths: b.Paths, Commits: b.Commits})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *Server) listChanges(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.changesOr404(); err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	f := change.Filter{Repository: q.Get("repository"), Ref: q.Get("ref"), Limit: limit}
	for _, st := range q["state"] {
		switch change.State(st) {
		case change.StatePending, change.StateApproved, change.StateLanded, change.StateDenied, change.StateVoid:
			f.States = append(f.States, change.State(st))
		default:
			return errInvalid("query parameter \"state\": unknown change state %q; use pending, approved, landed, denied or void", st)
		}
	}
	cs, err := s.changes.List(r.Context(), f)
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []change.Change{}
	}
	writeJSON(w, 200, ChangeList{Changes: cs})
	return nil
}

func (s *Server) getChange(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.changesOr404(); err != nil {
		return err
	}
	v, err := s.changes.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, v)
	return nil
}

func (s *Server) reviewChange(d change.Decision) handler {
	return func(w http.ResponseWriter, r *http.Request, c caller) error {
		if err := s.changesOr404(); err != nil {
			return err
		}
		var b ReviewChangeBody
		if err := decode(w, r, &b); err != nil {
			return err
		}
		if err := ownSession(c, string(d)); err != nil {
			return err
		}
		v, err := s.changes.Review(r.Context(), change.ReviewInput{ChangeID: r.PathValue("id"), Approver: c.Subject, Decision: d, Base: b.Base, Tree: b.Tree, Comment: b.Comment,
			MFAAt: c.TrustedMFAAt, SessionID: c.SessionID, CredentialID: c.TokenID})
		if err != nil {
			return untrustedStepUp(err, c)
		}
		writeJSON(w, 200, v)
		return nil
	}
}

func (s *Server) changeBundle(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.changesOr404(); err != nil {
		return err
	}
	b, err := s.changes.Bundle(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, b)
	return nil
}

// changeVerdict decides a ref update for the Git server's pre-receive hook. Only a service
// credential named in the repository's git_servers may ask (change.Service.Decide checks it): the
// verdict records a landing, and the pusher it names is taken on the Git server's word.
func (s *Server) changeVerdict(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.changesOr404(); err != nil {
		return err
	}
	var u change.Update
	if err := decode(w, r, &u); err != nil {
		return err
	}
	if c.Kind != identity.KindService {
		return errForbidden("only the Git server's service credential (a git_servers entry of the repository) may ask for verdicts; %s is a %s", c.Subject, c.Kind)
	}
	v, err := s.changes.Decide(r.Context(), c.Subject, u)
	if err != nil {
		return err
	}
	writeJSON(w, 200, v)
	return nil
}

// explainChange answers who could approve a change (rampart policy explain --repository).
func (s *Server) explainChange(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	repo, ref := q.Get("repository"), q.Get("ref")
	if repo == "" || ref == "" {
		return errInvalid("query parameters \"repository\" and \"ref\" are required")
	}
	if len(q["path"]) > change.MaxPaths {
		return errInvalid("at most %d paths", change.MaxPaths)
	}
	var parties []policy.ChangeParty
	for _, a := range q["author"] {
		parties = append(parties, policy.ChangeParty{Subject: a, Role: "an author"})
	}
	if v := q.Get("requester"); v != "" {
		parties = append(parties, policy.ChangeParty{Subject: v, Role: policy.PartyRequester})
	}
	if v := q.Get("pusher"); v != "" {
		parties = append(parties, policy.ChangeParty{Subject: v, Role: policy.PartyPusher})
	}
	e, err := c.pol.ExplainChange(repo, ref, q["path"], parties)
	if err != nil {
		return errInvalid("%v", err)
	}
	writeJSON(w, 200, e)
	return nil
}
