package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

// Client calls a Rampart server. The zero HTTP client is replaced by one with a timeout.
type Client struct {
	// BaseURL is the server's address, e.g. http://127.0.0.1:8470.
	BaseURL string
	Token   string
	HTTP    *http.Client
	// Device is this installation's id, sent to the sign-in endpoints so that the risk engine
	// can tell devices apart.
	Device string
}

// NewClient returns a client for addr: a URL, or a bare host:port, which means https unless the
// host is this machine (loopback), where rampart dev serves plain http. Whatever BaseURL says,
// the client refuses to send any request over plain http to another machine (ErrPlaintext).
func NewClient(addr, token string) *Client {
	return &Client{BaseURL: baseURL(addr), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// ServerError is an error answer from the server, or a failure to reach it.
type ServerError struct {
	Status  int
	Code    string
	Message string
	// Body is the raw answer when it was not a Rampart error object.
	Body string
}

func (e *ServerError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("server answered %d: %s", e.Status, strings.TrimSpace(e.Body))
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	_, err := c.doRaw(ctx, method, path, query, body, func(r io.Reader) error {
		if out == nil {
			return nil
		}
		return json.NewDecoder(r).Decode(out)
	})
	return err
}

func (c *Client) doRaw(ctx context.Context, method, path string, query url.Values, body any, read func(io.Reader) error) (http.Header, error) {
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := guarded(hc).Do(req)
	if perr := refused(err); perr != nil {
		return nil, perr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Rampart server at %s: %w (is `rampart dev` or `rampart server` running? set --addr or RAMPART_ADDR)", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error *Error `json:"error"`
		}
		se := &ServerError{Status: resp.StatusCode, Body: string(raw)}
		if json.Unmarshal(raw, &e) == nil && e.Error != nil {
			se.Code, se.Message = e.Error.Code, e.Error.Message
		}
		return resp.Header, se
	}
	return resp.Header, read(resp.Body)
}

// IsStatus reports whether err is a server answer with the given status.
func IsStatus(err error, status int) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Status == status
}

// DevLogin opens a session for a demo user (dev mode only).
func (c *Client) DevLogin(ctx context.Context, user string) (DevLoginResponse, error) {
	var out DevLoginResponse
	err := c.do(ctx, "POST", "/v1/dev/login", nil, DevLoginBody{User: user}, &out)
	return out, err
}

// Whoami describes the caller.
func (c *Client) Whoami(ctx context.Context) (Whoami, error) {
	var out Whoami
	err := c.do(ctx, "GET", "/v1/whoami", nil, nil, &out)
	return out, err
}

// Resources lists the catalogue.
func (c *Client) Resources(ctx context.Context) ([]ResourceInfo, error) {
	var out struct {
		Resources []ResourceInfo `json:"resources"`
	}
	err := c.do(ctx, "GET", "/v1/resources", nil, nil, &out)
	return out.Resources, err
}

// Roles lists roles.
func (c *Client) Roles(ctx context.Context) ([]RoleInfo, error) {
	var out struct {
		Roles []RoleInfo `json:"roles"`
	}
	err := c.do(ctx, "GET", "/v1/roles", nil, nil, &out)
	return out.Roles, err
}

// Explain is a dry run of the policy for a request by requester for beneficiary ("": the
// requester).
func (c *Client) Explain(ctx context.Context, requester, beneficiary, role string) (policy.Explanation, error) {
	var out policy.Explanation
	q := url.Values{"requester": {requester}, "role": {role}}
	if beneficiary != "" {
		q.Set("beneficiary", beneficiary)
	}
	err := c.do(ctx, "GET", "/v1/policy/explain", q, nil, &out)
	return out, err
}

// CreateRequest makes an access request.
func (c *Client) CreateRequest(ctx context.Context, b CreateRequestBody) (Created, error) {
	var out Created
	err := c.do(ctx, "POST", "/v1/requests", nil, b, &out)
	return out, err
}

// CreateRequests files, for an action on several resources (b.Resources and b.Action), one
// request per distinct suggested role; nothing is filed if any resource has no role.
func (c *Client) CreateRequests(ctx context.Context, b CreateRequestBody) (CreatedSet, error) {
	var out CreatedSet
	err := c.do(ctx, "POST", "/v1/requests", nil, b, &out)
	return out, err
}

// ListRequests lists requests in a scope (mine, review, all), following pages up to limit.
func (c *Client) ListRequests(ctx context.Context, scope string, states []string, limit int) ([]access.Request, error) {
	var all []access.Request
	q := url.Values{"scope": {scope}, "state": states}
	for {
		var page RequestList
		if err := c.do(ctx, "GET", "/v1/requests", q, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Requests...)
		if page.NextPageToken == "" || (limit > 0 && len(all) >= limit) {
			break
		}
		q.Set("page_token", page.NextPageToken)
	}
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// GetRequest returns a request with its reviews, tally and grant.
func (c *Client) GetRequest(ctx context.Context, id string) (access.View, error) {
	var out access.View
	err := c.do(ctx, "GET", "/v1/requests/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// Review approves or denies a request.
func (c *Client) Review(ctx context.Context, id string, d access.Decision, b ReviewBody) (access.View, error) {
	var out access.View
	err := c.do(ctx, "POST", "/v1/requests/"+url.PathEscape(id)+"/"+string(d), nil, b, &out)
	return out, err
}

// Cancel withdraws a pending request.
func (c *Client) Cancel(ctx context.Context, id string) (access.View, error) {
	var out access.View
	err := c.do(ctx, "POST", "/v1/requests/"+url.PathEscape(id)+"/cancel", nil, struct{}{}, &out)
	return out, err
}

// ListGrants lists grants of a subject ("" for the caller; all=true for everyone's).
func (c *Client) ListGrants(ctx context.Context, subject string, all bool, states []string) ([]access.Grant, error) {
	q := url.Values{"state": states}
	if subject != "" {
		q.Set("subject", subject)
	}
	if all {
		q.Set("all", "true")
	}
	var out []access.Grant
	for {
		var page GrantList
		if err := c.do(ctx, "GET", "/v1/grants", q, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Grants...)
		if page.NextPageToken == "" {
			return out, nil
		}
		q.Set("page_token", page.NextPageToken)
	}
}

// GrantsPage lists one page of grants (limit at most 1000; pageToken from the previous page's
// NextPageToken, "" for the first).
func (c *Client) GrantsPage(ctx context.Context, subject string, all bool, states []string, limit int, pageToken string) (GrantList, error) {
	q := url.Values{"state": states, "limit": {strconv.Itoa(limit)}}
	if subject != "" {
		q.Set("subject", subject)
	}
	if all {
		q.Set("all", "true")
	}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	var out GrantList
	err := c.do(ctx, "GET", "/v1/grants", q, nil, &out)
	return out, err
}

// GetGrant returns a grant.
func (c *Client) GetGrant(ctx context.Context, id string) (access.Grant, error) {
	var out access.Grant
	err := c.do(ctx, "GET", "/v1/grants/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// Renew asks to extend a grant.
func (c *Client) Renew(ctx context.Context, id string, b RenewBody) (Created, error) {
	var out Created
	err := c.do(ctx, "POST", "/v1/grants/"+url.PathEscape(id)+"/renew", nil, b, &out)
	return out, err
}

// Revoke ends a grant.
func (c *Client) Revoke(ctx context.Context, id, reason string) (access.Grant, error) {
	var out access.Grant
	err := c.do(ctx, "POST", "/v1/grants/"+url.PathEscape(id)+"/revoke", nil, RevokeBody{Reason: reason}, &out)
	return out, err
}

// Check asks for a decision. A 503 answer carries a denying decision and an error.
func (c *Client) Check(ctx context.Context, q authz.Query) (authz.Decision, error) {
	var out authz.Decision
	err := c.do(ctx, "POST", "/v1/check", nil, q, &out)
	return out, err
}

// CheckBatch asks for several decisions.
func (c *Client) CheckBatch(ctx context.Context, qs []authz.Query) ([]authz.Decision, error) {
	var out struct {
		Decisions []authz.Decision `json:"decisions"`
	}
	err := c.do(ctx, "POST", "/v1/check/batch", nil, BatchBody{Checks: qs}, &out)
	return out.Decisions, err
}

// LedgerKey returns the ledger's name and public key.
func (c *Client) LedgerKey(ctx context.Context) (LedgerKey, error) {
	var out LedgerKey
	err := c.do(ctx, "GET", "/v1/audit/key", nil, nil, &out)
	return out, err
}

// Checkpoint asks for a signed checkpoint covering every committed entry (issued now if the
// ledger grew since the last one).
func (c *Client) Checkpoint(ctx context.Context) (CheckpointResponse, error) {
	var out CheckpointResponse
	err := c.do(ctx, "POST", "/v1/audit/checkpoint", nil, struct{}{}, &out)
	return out, err
}

// LatestCheckpoint returns the newest stored checkpoint without asking for a new one.
func (c *Client) LatestCheckpoint(ctx context.Context) (CheckpointResponse, error) {
	var out CheckpointResponse
	err := c.do(ctx, "GET", "/v1/audit/checkpoint", nil, nil, &out)
	return out, err
}

// Entries calls fn with each ledger entry from index from onwards (raw bytes as hashed), stopping
// after limit entries (0: all).
func (c *Client) Entries(ctx context.Context, from uint64, limit uint64, fn func(seq uint64, data []byte) error) error {
	page := uint64(MaxEntriesPage)
	n := uint64(0)
	for {
		if limit > 0 && limit-n < page {
			page = limit - n
		}
		got := uint64(0)
		_, err := c.doRaw(ctx, "GET", "/v1/audit/entries", url.Values{"from": {strconv.FormatUint(from, 10)}, "limit": {strconv.FormatUint(page, 10)}}, nil, func(r io.Reader) error {
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				if err := fn(from+got, append([]byte(nil), sc.Bytes()...)); err != nil {
					return err
				}
				got++
			}
			return sc.Err()
		})
		if err != nil {
			return err
		}
		n += got
		from += got
		if got < page || (limit > 0 && n >= limit) {
			return nil
		}
	}
}

// ConsistencyProof proves the ledger of size from is a prefix of the ledger of size to.
func (c *Client) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	var out ProofResponse
	err := c.do(ctx, "GET", "/v1/audit/proof/consistency", url.Values{"from": {strconv.FormatUint(from, 10)}, "to": {strconv.FormatUint(to, 10)}}, nil, &out)
	return out.Proof, err
}

// InclusionProof proves entry index is in the ledger of the given size.
func (c *Client) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	var out ProofResponse
	err := c.do(ctx, "GET", "/v1/audit/proof/inclusion", url.Values{"index": {strconv.FormatUint(index, 10)}, "size": {strconv.FormatUint(size, 10)}}, nil, &out)
	return out.Proof, err
}

// CreateToken issues an API token.
func (c *Client) CreateToken(ctx context.Context, b CreateTokenBody) (TokenResponse, error) {
	var out TokenResponse
	err := c.do(ctx, "POST", "/v1/tokens", nil, b, &out)
	return out, err
}

// RevokeToken revokes an API token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/tokens/"+url.PathEscape(id)+"/revoke", nil, struct{}{}, nil)
}

// Suggest asks for the least privileged role for an intent or a resource and actions.
func (c *Client) Suggest(ctx context.Context, b SuggestBody) (suggest.Advice, error) {
	var out suggest.Advice
	err := c.do(ctx, "POST", "/v1/suggest", nil, b, &out)
	return out, err
}

// Search ranks catalogue resources for a query.
func (c *Client) Search(ctx context.Context, query string, limit int) ([]ResourceInfo, error) {
	var out struct {
		Resources []ResourceInfo `json:"resources"`
	}
	err := c.do(ctx, "GET", "/v1/resources", url.Values{"q": {query}, "limit": {strconv.Itoa(limit)}}, nil, &out)
	return out.Resources, err
}

// Tokens lists API tokens: the caller's, a subject's, or everyone's (all).
func (c *Client) Tokens(ctx context.Context, subject string, all bool) ([]identity.Token, error) {
	q := url.Values{}
	if subject != "" {
		q.Set("subject", subject)
	}
	if all {
		q.Set("all", "true")
	}
	var out []identity.Token
	err := c.do(ctx, "GET", "/v1/tokens", q, nil, &out)
	return out, err
}
