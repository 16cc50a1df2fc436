package egress

import (
	"fmt"
	"net/http"
)

// proxyError is a refusal with its HTTP status.
type proxyError struct {
	status int
	msg    string
}

func (g *Gateway) refuse(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusProxyAuthRequired {
		// Both schemes the gateway accepts. Clients that wait for a challenge before sending
		// credentials (git's default http.proxyAuthMethod, anyauth) pick Basic from it.
		w.Header()["Proxy-Authenticate"] = []string{`Basic realm="rampart-egress", charset="UTF-8"`, `Bearer realm="rampart-egress"`}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Rampart-Egress", "denied")
	w.WriteHeader(status)
	fmt.Fprintf(w, "rampart egress: %s\n", msg)
}

func (pe *proxyError) Error() string { return pe.msg }
