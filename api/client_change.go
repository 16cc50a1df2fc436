package api

import (
	"context"
	"net/url"

	"rampart.dev/rampart/change"
	"rampart.dev/rampart/policy"
)

// FileChange files a change request (POST /v1/changes).
func (c *Client) FileChange(ctx context.Context, b FileChangeBody) (change.View, error) {
	var v change.View
	err := c.do(ctx, "POST", "/v1/changes", nil, b, &v)
	return v, err
}

// GetChange returns a change with its reviews and who may approve it.
func (c *Client) GetChange(ctx context.Context, id string) (change.View, error) {
	var v change.View
	err := c.do(ctx, "GET", "/v1/changes/"+url.PathEscape(id), nil, nil, &v)
	return v, err
}

// ListChanges lists changes of a repository and ref ("" for all), in the given states.
func (c *Client) ListChanges(ctx context.Context, repository, ref string, states []string) ([]change.Change, error) {
	q := url.Values{}
	if repository != "" {
		q.Set("repository", repository)
	}
	if ref != "" {
		q.Set("ref", ref)
	}
	q["state"] = states
	var out ChangeList
	err := c.do(ctx, "GET", "/v1/changes", q, nil, &out)
	return out.Changes, err
}

// ReviewChange approves or denies a change, with the base and merge tree the reviewer's checkout
// computed.
func (c *Client) ReviewChange(ctx context.Context, id string, d change.Decision, b ReviewChangeBody) (change.View, error) {
	var v change.View
	err := c.do(ctx, "POST", "/v1/changes/"+url.PathEscape(id)+"/"+string(d), nil, b, &v)
	return v, err
}

// ChangeBundle returns the approvals bundle of a change (its request, approvals and landing with
// inclusion proofs to a signed checkpoint).
func (c *Client) ChangeBundle(ctx context.Context, id string) (*change.Bundle, error) {
	var b change.Bundle
	if err := c.do(ctx, "GET", "/v1/changes/"+url.PathEscape(id)+"/bundle", nil, nil, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// Decide asks the server for the verdict on a ref update (the pre-receive hook, online): it
// implements change.Decider.
func (c *Client) Decide(ctx context.Context, u change.Update) (change.Verdict, error) {
	var v change.Verdict
	err := c.do(ctx, "POST", "/v1/changes/verdict", nil, u, &v)
	return v, err
}

// ExplainChange answers who could approve a change of paths on ref of repository, with these
// authors, requester and pusher.
func (c *Client) ExplainChange(ctx context.Context, repository, ref string, paths, authors []string, requester, pusher string) (policy.ChangeExplanation, error) {
	q := url.Values{"repository": {repository}, "ref": {ref}, "path": paths, "author": authors}
	if requester != "" {
		q.Set("requester", requester)
	}
	if pusher != "" {
		q.Set("pusher", pusher)
	}
	var e policy.ChangeExplanation
	err := c.do(ctx, "GET", "/v1/policy/explain/change", q, nil, &e)
	return e, err
}

var _ change.Decider = (*Client)(nil)
