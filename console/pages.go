package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

// maxInbox bounds the pending requests a page looks at (pending requests are few; the bound
// keeps a page's cost fixed if they are not).
const maxInbox = 100

// pendingView is a pending request with its tally, as home and the inbox show it.
type pendingView struct {
	access.View
	// Mine: I filed it or benefit from it.
	Mine bool
}

// reviewable lists the requests the person can act on now: pending (or break-glass awaiting
// review), eligible under the policy in force, and not already answered by them.
func reviewable(v *view) ([]pendingView, error) {
	rs, err := v.api.ListRequests(v.ctx(), "review", nil, maxInbox)
	if err != nil {
		return nil, err
	}
	var out []pendingView
	for _, r := range rs {
		full, err := v.api.GetRequest(v.ctx(), r.ID)
		if err != nil {
			if api.IsStatus(err, http.StatusNotFound) {
				continue // decided or no longer visible since the listing
			}
			return nil, err
		}
		if slices.ContainsFunc(full.Reviews, func(rv access.Review) bool { return rv.Approver == v.me.Subject }) {
			continue
		}
		out = append(out, pendingView{View: full})
	}
	return out, nil
}

type homeData struct {
	Grants  []access.Grant
	Pending []pendingView
	Review  []pendingView
}

func (c *Console) home(v *view) error {
	var d homeData
	gs, err := v.api.GrantsPage(v.ctx(), "", false, []string{string(access.GrantActive)}, 100, "")
	if err != nil {
		return err
	}
	d.Grants = gs.Grants
	mine, err := v.api.ListRequests(v.ctx(), "mine", []string{string(access.Pending)}, maxInbox)
	if err != nil {
		return err
	}
	for _, r := range mine {
		full, err := v.api.GetRequest(v.ctx(), r.ID)
		if err != nil {
			return err
		}
		d.Pending = append(d.Pending, pendingView{View: full, Mine: true})
	}
	if d.Review, err = reviewable(v); err != nil {
		return err
	}
	c.render(v, http.StatusOK, "home", page{Title: "Home", Nav: "home", Data: d})
	return nil
}

type requestFormData struct {
	Query   string
	Hits    []api.ResourceInfo
	Advice  *suggest.Advice
	Problem string
	// Role, when one is chosen: its description, reach and approval.
	Role    *api.RoleInfo
	Explain *policy.Explanation
	Reason  string
}

// requestForm is the catalogue (search with typo tolerance, a suggested least-privileged role and
// its alternatives) and, once a role is chosen, the request form.
func (c *Console) requestForm(v *view) error {
	q := v.r.URL.Query()
	d := requestFormData{Query: strings.TrimSpace(q.Get("q"))}
	switch {
	case q.Get("role") != "":
		roles, err := v.api.Roles(v.ctx())
		if err != nil {
			return err
		}
		for i := range roles {
			if roles[i].Name == q.Get("role") {
				d.Role = &roles[i]
			}
		}
		if d.Role == nil {
			c.problem(v, http.StatusNotFound, "No such role", "There is no role named "+q.Get("role")+" in the policy in force. Search the catalogue instead.")
			return nil
		}
		ex, err := v.api.Explain(v.ctx(), "", "", d.Role.Name)
		if err != nil {
			return err
		}
		d.Explain = &ex
	case q.Get("resource") != "":
		adv, err := v.api.Suggest(v.ctx(), api.SuggestBody{Resource: q.Get("resource"), Actions: q["action"]})
		if err != nil {
			d.Problem = problemText(err)
		} else {
			d.Advice = &adv
		}
	case d.Query != "":
		hits, err := v.api.Search(v.ctx(), d.Query, 10)
		if err != nil {
			return err
		}
		d.Hits = hits
		adv, err := v.api.Suggest(v.ctx(), api.SuggestBody{Intent: d.Query})
		if err == nil {
			d.Advice = &adv
		}
	}
	c.render(v, http.StatusOK, "request", page{Title: "Request access", Nav: "request", Data: d})
	return nil
}

// problemText is an API error's message, for a page that shows it beside other content.
func problemText(err error) string {
	var se *api.ServerError
	if ok := asServerError(err, &se); ok {
		return se.Error()
	}
	return err.Error()
}

func (c *Console) createRequest(v *view) error {
	f := v.r.PostForm
	b := api.CreateRequestBody{Role: f.Get("role"), Reason: f.Get("reason"), Duration: strings.TrimSpace(f.Get("duration")), BreakGlass: f.Get("break_glass") == "yes"}
	if b.BreakGlass && f.Get("confirm") != "yes" {
		c.problem(v, http.StatusBadRequest, "Break-glass not confirmed", "Tick the confirmation to use break-glass access: it is granted at once, security is paged, and the access is reviewed afterwards. Nothing was filed.")
		return nil
	}
	out, err := v.api.CreateRequest(v.ctx(), b)
	if err != nil {
		return err
	}
	done := "created"
	if out.Grant != nil {
		done = "granted"
	}
	return seeOther(v, "/requests/"+url.PathEscape(out.Request.ID), done)
}

type requestsData struct {
	Requests []access.Request
	Scope    string
}

func (c *Console) requestList(v *view) error {
	scope := "mine"
	if v.r.URL.Query().Get("scope") == "all" && (v.me.Admin || v.me.Auditor) {
		scope = "all"
	}
	rs, err := v.api.ListRequests(v.ctx(), scope, nil, 200)
	if err != nil {
		return err
	}
	slices.Reverse(rs)
	c.render(v, http.StatusOK, "requests", page{Title: "Requests", Nav: "home", Data: requestsData{Requests: rs, Scope: scope}})
	return nil
}

type requestPageData struct {
	access.View
	// CanReview: the person may answer it now; Answered: they already did.
	CanReview bool
	Answered  bool
	Mine      bool
	Context   *api.RequesterContext
}

func (c *Console) requestPage(v *view) error {
	id := v.r.PathValue("id")
	rv, err := v.api.GetRequest(v.ctx(), id)
	if err != nil {
		return err
	}
	d := requestPageData{View: rv, Mine: rv.Request.Requester == v.me.Subject || rv.Request.Beneficiary == v.me.Subject}
	d.Answered = slices.ContainsFunc(rv.Reviews, func(r access.Review) bool { return r.Approver == v.me.Subject })
	if rv.Request.State == access.Pending || rv.Request.PostReview == access.PostReviewPending {
		rs, err := v.api.ListRequests(v.ctx(), "review", nil, maxInbox)
		if err != nil {
			return err
		}
		d.CanReview = !d.Answered && slices.ContainsFunc(rs, func(r access.Request) bool { return r.ID == id })
	}
	if d.CanReview || v.me.Admin || v.me.Auditor {
		if ctx, err := v.api.RequestContext(v.ctx(), id); err == nil {
			d.Context = &ctx
		}
	}
	p := page{Title: "Request " + id, Nav: "reviews", Data: d}
	if d.Mine {
		p.Nav = "home"
	}
	if d.CanReview && rv.RequireStepUp != "" {
		p.StepUp = stepUpLink(v.r)
	}
	c.render(v, http.StatusOK, "request_page", p)
	return nil
}

// requestState is what the request page's script polls: the request's version and state, so the
// page reloads itself when a decision lands.
func (c *Console) requestState(v *view) error {
	rv, err := v.api.GetRequest(v.ctx(), v.r.PathValue("id"))
	if err != nil {
		var se *api.ServerError
		if asServerError(err, &se) {
			v.w.Header().Set("Content-Type", "application/json")
			v.w.WriteHeader(se.Status)
			_ = json.NewEncoder(v.w).Encode(map[string]string{"error": se.Error()})
			return nil
		}
		return err
	}
	v.w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(v.w).Encode(map[string]any{"id": rv.Request.ID, "state": rv.Request.State, "version": rv.Request.Version, "reviews": len(rv.Reviews)})
}

func (c *Console) review(d access.Decision) func(v *view) error {
	return func(v *view) error {
		id := v.r.PathValue("id")
		f := v.r.PostForm
		if _, err := v.api.Review(v.ctx(), id, d, api.ReviewBody{Duration: strings.TrimSpace(f.Get("duration")), Comment: f.Get("comment")}); err != nil {
			return err
		}
		return seeOther(v, "/requests/"+url.PathEscape(id), map[access.Decision]string{access.Approve: "approved", access.Deny: "denied"}[d])
	}
}

func (c *Console) cancel(v *view) error {
	id := v.r.PathValue("id")
	if _, err := v.api.Cancel(v.ctx(), id); err != nil {
		return err
	}
	return seeOther(v, "/requests/"+url.PathEscape(id), "cancelled")
}

type reviewsData struct {
	Requests []pendingView
	Changes  []change.Change
}

func (c *Console) reviews(v *view) error {
	var d reviewsData
	var err error
	if d.Requests, err = reviewable(v); err != nil {
		return err
	}
	if chs, err := v.api.ListChanges(v.ctx(), "", "", []string{"pending"}); err == nil {
		d.Changes = chs
	}
	c.render(v, http.StatusOK, "reviews", page{Title: "Reviews", Nav: "reviews", Data: d})
	return nil
}

type grantsData struct {
	Grants []access.Grant
	All    bool
	State  string
	Next   string
}

func (c *Console) grants(v *view) error {
	q := v.r.URL.Query()
	all := q.Get("all") == "1" && (v.me.Admin || v.me.Auditor)
	state := q.Get("state")
	var states []string
	switch state {
	case "active", "revoked", "expired":
		states = []string{state}
	default:
		state = ""
	}
	gs, err := v.api.GrantsPage(v.ctx(), "", all, states, 100, q.Get("page_token"))
	if err != nil {
		return err
	}
	c.render(v, http.StatusOK, "grants", page{Title: "Grants", Nav: "grants", Data: grantsData{Grants: gs.Grants, All: all, State: state, Next: gs.NextPageToken}})
	return nil
}

func (c *Console) grantPage(v *view) error {
	g, err := v.api.GetGrant(v.ctx(), v.r.PathValue("id"))
	if err != nil {
		return err
	}
	c.render(v, http.StatusOK, "grant", page{Title: "Grant " + g.ID, Nav: "grants", Data: g})
	return nil
}

func (c *Console) renew(v *view) error {
	id := v.r.PathValue("id")
	f := v.r.PostForm
	out, err := v.api.Renew(v.ctx(), id, api.RenewBody{Duration: strings.TrimSpace(f.Get("duration")), Reason: f.Get("reason")})
	if err != nil {
		return err
	}
	return seeOther(v, "/requests/"+url.PathEscape(out.Request.ID), "renewal")
}

func (c *Console) revoke(v *view) error {
	id := v.r.PathValue("id")
	if _, err := v.api.Revoke(v.ctx(), id, v.r.PostForm.Get("reason")); err != nil {
		return err
	}
	return seeOther(v, "/grants/"+url.PathEscape(id), "revoked")
}

// changePage shows a guarded change. Approving one vouches for a merge tree, which only a
// checkout can recompute (`rampart change approve`); the page shows the command, not a button.
func (c *Console) changePage(v *view) error {
	cv, err := v.api.GetChange(v.ctx(), v.r.PathValue("id"))
	if err != nil {
		return err
	}
	c.render(v, http.StatusOK, "change", page{Title: "Change " + cv.Change.ID, Nav: "reviews", Data: cv})
	return nil
}

func (c *Console) logout(v *view) error {
	if err := v.api.RevokeSession(v.ctx(), v.me.SessionID, "signed out in the console"); err != nil {
		return err
	}
	c.clearCookies(v.w)
	c.render(v, http.StatusOK, "problem", page{Title: "Signed out", Notice: "You are signed out; your session is revoked."})
	return nil
}
