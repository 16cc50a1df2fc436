package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"rampart.dev/rampart/access"
)

// SignatureHeader carries a webhook body's signature: "t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<t>.<body>" under the shared secret>".
const SignatureHeader = "X-Rampart-Signature"

// Payload is the JSON body of a generic webhook.
type Payload struct {
	access.Notification
	// URL is the server's page of the request (of the grant, for a grant about to expire); it
	// shows it and acts on nothing by GET.
	URL string `json:"url"`
}

// Webhook posts a signed JSON Payload to a URL.
type Webhook struct {
	// Label is the sink's name in the policy (its Name; the URL when empty).
	Label string
	URL   string
	// Secret signs every body (HMAC-SHA256). It comes from the server's environment or a file,
	// never from the policy.
	Secret []byte
	// BaseURL is the server's public URL, for links to its pages.
	BaseURL string
	Client  *http.Client
	Now     func() time.Time
}

// Name implements Sink.
func (w *Webhook) Name() string {
	if w.Label != "" {
		return "webhook " + w.Label
	}
	return "webhook " + w.URL
}

// Send implements Sink: any 2xx answer is delivery.
func (w *Webhook) Send(ctx context.Context, n access.Notification) error {
	body, err := json.Marshal(Payload{Notification: n, URL: Link(w.BaseURL, n)})
	if err != nil {
		return err
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	hdr := http.Header{}
	hdr.Set(SignatureHeader, Sign(w.Secret, now(), body))
	hdr.Set("X-Rampart-Notification", n.ID)
	return post(ctx, w.Client, w.URL, body, hdr)
}

// Link is the server's page a notification points to: the grant's page (where its holder renews
// it) for a grant about to expire, the console's home page for a notice about an account, the
// request's page for everything else.
func Link(base string, n access.Notification) string {
	if n.Kind == access.NotifyExpiring && n.GrantID != "" {
		return GrantURL(base, n.GrantID)
	}
	if n.RequestID == "" {
		return strings.TrimRight(base, "/") + "/" // about an account: the console's home page
	}
	return RequestURL(base, n.RequestID)
}

// GrantURL is the server's stable page of a grant (<base>/grants/<id>).
func GrantURL(base, id string) string {
	return strings.TrimRight(base, "/") + "/grants/" + id
}

// RequestURL is the server's stable page of a request (<base>/requests/<id>).
func RequestURL(base, id string) string {
	return strings.TrimRight(base, "/") + "/requests/" + id
}

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// Verification errors.
var (
	ErrBadSignature = errors.New("signature does not match the body")
	ErrStale        = errors.New("signature timestamp is outside the replay window")
	ErrMalformed    = errors.New("malformed " + SignatureHeader + " header")
)

// Verify checks a SignatureHeader value against body, as a receiver should: the MAC in constant
// time, and the timestamp within window of now (so a captured request cannot be replayed later).
// Unknown fields are ignored and any v1 that matches is accepted, so the secret can be rotated.
func Verify(secret []byte, header string, body []byte, now time.Time, window time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			if ts != "" {
				return ErrMalformed
			}
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return ErrMalformed
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return ErrStale
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrBadSignature
}
