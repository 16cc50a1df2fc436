package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"rampart.dev/rampart/access"
)

// SignatureHeader carries a webhook body's signature: "t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<t>.<body>" under the shared secret>".
const SignatureHeader = "X-Rampart-Signature"

// KeyIDHeader names the key a webhook body is signed with (KeyID of the secret), so that a
// receiver holding several secrets (a rotation) knows which to verify with.
const KeyIDHeader = "X-Rampart-Key-Id"

// KeyID identifies a webhook secret without revealing it: the first 16 hex digits of
// SHA-256("rampart webhook key id" || 0x00 || secret).
func KeyID(secret []byte) string {
	h := sha256.New()
	h.Write([]byte("rampart webhook key id\x00"))
	h.Write(secret)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

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
	hdr.Set(KeyIDHeader, KeyID(w.Secret))
	hdr.Set("X-Rampart-Notification", n.ID)
	return post(ctx, w.Client, w.URL, body, hdr)
}

// Link is the server's page a notification points to: the grant's page (where its holder renews
// it) for a grant about to expire, the console's alerts for an alert, the console's home page
// for a notice about an account, the request's page for everything else.
func Link(base string, n access.Notification) string {
	if n.Kind == access.NotifyExpiring && n.GrantID != "" {
		return GrantURL(base, n.GrantID)
	}
	if n.Kind == access.NotifyAlert {
		return strings.TrimRight(base, "/") + "/alerts" // the console's open alerts
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

// DefaultReplayWindow is the replay window receivers should verify with: a signature more than
// this far from the receiver's clock is refused. Deliveries are retried with new signatures, so
// a short window loses nothing.
const DefaultReplayWindow = 5 * time.Minute

// MaxWebhookBody bounds the body VerifyRequest reads.
const MaxWebhookBody = 1 << 20

// ErrUnknownKey is a body signed with a key the receiver does not hold.
var ErrUnknownKey = errors.New("signed with a key id this receiver does not hold")

// VerifyRequest reads and verifies a webhook delivery as a receiver should: the body (at most
// MaxWebhookBody) must carry a valid signature, made within window of now, under the secret
// among secrets whose KeyID the request names (every secret is tried when it names none). It
// returns the body, to be trusted only when the error is nil; receivers should also deduplicate
// on the notification id (delivery is at least once).
func VerifyRequest(r *http.Request, secrets [][]byte, now time.Time, window time.Duration) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxWebhookBody {
		return nil, fmt.Errorf("body over %d bytes", MaxWebhookBody)
	}
	id := r.Header.Get(KeyIDHeader)
	tried := false
	last := ErrUnknownKey
	for _, s := range secrets {
		if id != "" && KeyID(s) != id {
			continue
		}
		tried = true
		if last = Verify(s, r.Header.Get(SignatureHeader), body, now, window); last == nil {
			return body, nil
		}
	}
	if !tried {
		return nil, ErrUnknownKey
	}
	return nil, last
}
