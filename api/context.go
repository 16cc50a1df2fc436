package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"rampart.dev/rampart/access"
)

// RequesterContext is what an approver sees beside a request: the requester's recent requests
// and the risk of their newest active sign-in session (GET /v1/requests/{id}/context).
type RequesterContext struct {
	RequestID string `json:"request_id"`
	Requester string `json:"requester"`
	// Recent are the requester's newest other requests of the last 30 days (at most 5), newest first.
	Recent []access.Request `json:"recent"`
	// SessionRisk is the risk level the sign-in of the requester's newest active session was
	// scored at ("" when they have none, or the server keeps no sessions); SessionAt is when it
	// began, SessionIP where it was last used from.
	SessionRisk string    `json:"session_risk,omitempty"`
	SessionAt   time.Time `json:"session_at,omitzero"`
	SessionIP   string    `json:"session_ip,omitempty"`
}

// recentWindow is how far back an approver sees the requester's requests.
const recentWindow = 30 * 24 * time.Hour

// recentRequests is how many of the requester's other requests an approver sees.
const recentRequests = 5

// requestContext answers an eligible approver of the request, an admin or an auditor; anyone else
// is told the request does not exist, as GET /v1/requests/{id} does.
func (s *Server) requestContext(w http.ResponseWriter, r *http.Request, c caller) error {
	v, err := s.access.Get(r.Context(), r.PathValue("id"), c.Subject)
	if err != nil {
		return err
	}
	req := v.Request
	if !s.access.CanReview(req, c.Subject) && !c.admin() && !c.auditor() {
		return errForbidden("only an eligible approver of request %s, an admin or an auditor may see its requester's context", req.ID)
	}
	// The last 30 days: the store lists oldest first, so a bounded window keeps this cheap for
	// someone with a long history.
	mine, err := s.access.List(r.Context(), req.Requester, access.ScopeMine, access.RequestFilter{AfterTime: time.Now().Add(-recentWindow)})
	if err != nil {
		return err
	}
	out := RequesterContext{RequestID: req.ID, Requester: req.Requester, Recent: []access.Request{}}
	// The store lists oldest first; walk back from the newest.
	for i := len(mine) - 1; i >= 0 && len(out.Recent) < recentRequests; i-- {
		if mine[i].ID != req.ID && mine[i].Requester == req.Requester {
			out.Recent = append(out.Recent, mine[i])
		}
	}
	if s.users != nil {
		sessions, err := s.users.ListSessions(r.Context(), req.Requester)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, ses := range sessions {
			if ses.Active(now) && ses.CreatedAt.After(out.SessionAt) {
				out.SessionRisk, out.SessionAt, out.SessionIP = ses.Risk, ses.CreatedAt, ses.IP
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// RequestContext returns what an approver sees beside a request.
func (c *Client) RequestContext(ctx context.Context, id string) (RequesterContext, error) {
	var out RequesterContext
	err := c.do(ctx, "GET", "/v1/requests/"+url.PathEscape(id)+"/context", nil, nil, &out)
	return out, err
}
