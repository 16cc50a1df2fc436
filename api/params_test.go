package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// Issue 12, item 11: query parameters are refused when they are not what the OpenAPI document
// says, never read as something else. ?all=1 was read as false (the caller's own list, 200), and
// GET /v1/resources without q ignored any limit.
func TestQueryParametersRefused(t *testing.T) {
	r := newRig(t, true)
	erin := r.session("erin").AccessToken
	for _, tc := range []struct {
		path   string
		status int
		says   string
	}{
		{"/v1/grants?all=1", 400, `query parameter "all" must be true or false, not "1"`},
		{"/v1/grants?all=yes", 400, `"all" must be true or false`},
		{"/v1/grants?all=", 400, `"all" must be true or false`},
		{"/v1/grants?all=true&all=false", 400, `"all" is given 2 times`},
		{"/v1/grants?all=true", 200, ""},
		{"/v1/grants?all=false", 200, ""},
		{"/v1/tokens?all=1", 400, `"all" must be true or false`},
		{"/v1/tokens?all=true", 200, ""},
		{"/v1/sessions?all=TRUE", 400, `"all" must be true or false`},
		{"/v1/resources?limit=0", 400, `"limit" must be a number from 1 to 500`},
		{"/v1/resources?limit=abc", 400, `"limit"`},
		{"/v1/resources?limit=501", 400, `"limit"`},
		{"/v1/resources?limit=10", 200, ""},
		{"/v1/resources?q=frontier&limit=0", 400, `"limit"`},
	} {
		status, body := r.raw(http.MethodGet, tc.path, erin, "", nil)
		if status != tc.status || !strings.Contains(errMsg(body), tc.says) {
			t.Errorf("GET %s: %d %q; want %d saying %q", tc.path, status, errMsg(body), tc.status, tc.says)
		}
	}
}
