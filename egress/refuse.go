package egress

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// proxyError is a refusal: its HTTP status, why (for people), and what to do about it.
type proxyError struct {
	status int
	msg    string
	// next is the next step for the person refused: the command that requests access, or
	// whom to ask. Empty when there is none.
	next string
}

func (pe *proxyError) Error() string {
	if pe.next == "" {
		return pe.msg
	}
	return pe.msg + ". " + pe.next
}

// maxPhrase bounds the reason phrase of a refusal's status line.
const maxPhrase = 1000

// Refusal headers: the short reason and the next step, for clients that hide the body (every
// client does for a refused CONNECT) but show headers (curl -v, GIT_CURL_VERBOSE=1).
const (
	HeaderDenied = "X-Rampart-Egress"
	HeaderReason = "X-Rampart-Egress-Reason"
	HeaderNext   = "X-Rampart-Egress-Next"
)

func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	g.refuseErr(w, r, &proxyError{status: status, msg: msg})
}

// refuseErr answers a refusal so that people can read it whatever their client shows: the
// reason and the next step are in the status line's reason phrase (Python's and Go's clients
// put it in their exception: "Tunnel connection failed: 403 Rampart egress: denied …"), in
// headers, and in the body (which curl and git hide for a refused CONNECT). The connection is
// closed after it: a refused request's unread body must not be taken for the next request.
func (g *Gateway) refuseErr(w http.ResponseWriter, r *http.Request, pe *proxyError) {
	body := "rampart egress: " + pe.Error() + "\n"
	h := http.Header{}
	if pe.status == http.StatusProxyAuthRequired {
		// Both schemes the gateway accepts. Clients that wait for a challenge before sending
		// credentials (git's default http.proxyAuthMethod, anyauth) pick Basic from it.
		h["Proxy-Authenticate"] = []string{`Basic realm="rampart-egress", charset="UTF-8"`, `Bearer realm="rampart-egress"`}
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set(HeaderDenied, "denied")
	h.Set(HeaderReason, headerText(pe.msg, 2000))
	if pe.next != "" {
		h.Set(HeaderNext, headerText(pe.next, 2000))
	}
	if hj, ok := w.(http.Hijacker); ok && r != nil && r.ProtoMajor == 1 {
		if conn, brw, err := hj.Hijack(); err == nil {
			h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
			h.Set("Content-Length", strconv.Itoa(len(body)))
			h.Set("Connection", "close")
			brw.WriteString("HTTP/1.1 " + strconv.Itoa(pe.status) + " " + phrase(pe) + "\r\n")
			_ = h.Write(brw)
			brw.WriteString("\r\n")
			if r.Method != http.MethodHead {
				brw.WriteString(body)
			}
			_ = brw.Flush()
			lingerClose(conn, brw.Reader)
			return
		}
	}
	for k, vs := range h {
		w.Header()[k] = vs
	}
	w.WriteHeader(pe.status)
	_, _ = w.Write([]byte(body))
}

// phrase is the reason phrase of a refusal: "Rampart egress: <why>. <next step>", in the
// characters a status line allows.
func phrase(pe *proxyError) string {
	return headerText("Rampart egress: "+pe.Error(), maxPhrase)
}

// headerText makes s fit a header value or a reason phrase: printable ASCII (anything else
// becomes '?', so no client mangles it and nothing can end the line), at most n bytes.
func headerText(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '…':
			b.WriteString("...")
		case r == '"' || r == '\'' || (r >= ' ' && r < 0x7f):
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
	}
	out := b.String()
	if len(out) > n {
		out = out[:n-3] + "..."
	}
	return out
}

// lingerClose closes a refused connection without losing the answer: a client still sending
// (a request body, an early TLS hello after CONNECT) would otherwise get a reset that can
// discard the refusal before it is read. The gateway stops writing, reads what the client still
// sends for a little while (until it closes, or 256 KiB, or a second), then closes.
func lingerClose(conn net.Conn, br *bufio.Reader) {
	defer conn.Close()
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	for read := 0; read < 256<<10; {
		n, err := br.Read(buf)
		read += n
		if err != nil {
			return
		}
	}
}
