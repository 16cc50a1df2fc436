package api

import "context"

// CIExchange exchanges a CI job's ID token for a pipeline token (POST /v1/ci/exchange). The client
// needs no token of its own.
func (c *Client) CIExchange(ctx context.Context, idToken string) (CIExchangeResponse, error) {
	var out CIExchangeResponse
	err := c.do(ctx, "POST", "/v1/ci/exchange", nil, CIExchangeBody{IDToken: idToken}, &out)
	return out, err
}

// TriggerPipeline starts a run of a pipeline at ref through its CI system's dispatch API (POST
// /v1/pipelines/trigger); the caller needs an active trigger grant on pipelines/<pipeline>.
func (c *Client) TriggerPipeline(ctx context.Context, pipeline, ref string) error {
	return c.do(ctx, "POST", "/v1/pipelines/trigger", nil, TriggerBody{Pipeline: pipeline, Ref: ref}, nil)
}
