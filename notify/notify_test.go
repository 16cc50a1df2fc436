package notify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/notify"
	"rampart.dev/rampart/policy"
)

var at = time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)

func review() access.Notification {
	return access.Notification{ID: "ntf_1", Seq: 7, Event: "request.create", Kind: access.NotifyReview, Recipients: []string{"bob", "dave"},
		RequestID: "req_abc", Role: "weights-reader-frontier-7", Policy: "critical-weights", Requester: "alice", Subject: "alice",
		Message: "alice requested weights-reader-frontier-7: <https://evil.example|click> & go", CreatedAt: at}
}

// The generic webhook: a receiver checks the signature with Verify, and an independent HMAC
// (Python's hmac module) computes the same value over the same "<t>.<body>".
func TestWebhookSignedAndVerifiable(t *testing.T) {
	secret := []byte("s3cret-key")
	var mu sync.Mutex
	var gotSig string
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		gotSig, gotBody = r.Header.Get(notify.SignatureHeader), b
		mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		if err := notify.Verify(secret, gotSig, b, at.Add(10*time.Second), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
	}))
	defer srv.Close()
	wh := &notify.Webhook{URL: srv.URL, Secret: secret, BaseURL: "https://rampart.example.org/", Now: func() time.Time { return at }}
	if err := wh.Send(context.Background(), review()); err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(gotBody, &p); err != nil {
		t.Fatal(err)
	}
	if p["url"] != "https://rampart.example.org/requests/req_abc" || p["id"] != "ntf_1" || p["kind"] != "review" || p["request_id"] != "req_abc" {
		t.Fatalf("payload %s", gotBody)
	}
	ts, hexmac, _ := strings.Cut(strings.TrimPrefix(gotSig, "t="), ",v1=")
	py := exec.Command("python3", "-c", `import hmac,hashlib,sys; k=sys.argv[1].encode(); m=(sys.argv[2]+".").encode()+sys.stdin.buffer.read(); print(hmac.new(k,m,hashlib.sha256).hexdigest())`, string(secret), ts)
	py.Stdin = strings.NewReader(string(gotBody))
	out, err := py.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	if strings.TrimSpace(string(out)) != hexmac {
		t.Fatalf("python3 computes %s over the body, the header says %s", out, gotSig)
	}
	// A receiver that refuses: the send fails (and is retried by the worker).
	wh.Secret = []byte("other")
	if err := wh.Send(context.Background(), review()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("send to a receiver that refuses the signature: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"id":"ntf_1"}`)
	good := notify.Sign(secret, at, body)
	if err := notify.Verify(secret, good, body, at, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Rotation: any v1 that matches is accepted.
	if err := notify.Verify(secret, good+",v1="+strings.Repeat("00", 32), body, at, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"tampered body", good, []byte(`{"id":"ntf_2"}`), at, notify.ErrBadSignature},
		{"other secret", notify.Sign([]byte("x"), at, body), body, at, notify.ErrBadSignature},
		{"replayed later", good, body, at.Add(6 * time.Minute), notify.ErrStale},
		{"from the future", good, body, at.Add(-6 * time.Minute), notify.ErrStale},
		{"no mac", "t=1", body, at, notify.ErrMalformed},
		{"two timestamps", good + ",t=5", body, at, notify.ErrMalformed},
		{"short mac", "t=1,v1=abcd", body, at, notify.ErrMalformed},
		{"empty", "", body, at, notify.ErrMalformed},
	} {
		if err := notify.Verify(secret, tc.header, tc.body, tc.now, 5*time.Minute); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(notify.Sign([]byte("k"), at, []byte("b")), []byte("b"))
	f.Add("t=1,v1=zz,,=", []byte{})
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := notify.Verify([]byte("k"), header, body, at, time.Hour)
		if err == nil && header != notify.Sign([]byte("k"), at, body) {
			// Accepted: it must carry a correct MAC for a timestamp in the window.
			if notify.Verify([]byte("other"), header, body, at, time.Hour) == nil {
				t.Fatalf("header %q verifies under two secrets", header)
			}
		}
	})
}

// fakeChatReceiver stands in for the HTTP edge of Slack or Teams (a SaaS): it only records the
// JSON posted to it.
func fakeChatReceiver(t *testing.T) (*httptest.Server, func() map[string]any) {
	var mu sync.Mutex
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[string]any { mu.Lock(); defer mu.Unlock(); return got }
}

func TestSlackBlockKitLinksOnly(t *testing.T) {
	srv, got := fakeChatReceiver(t)
	c := &notify.Chat{Kind: "slack", Label: "sec", URL: srv.URL, BaseURL: "https://rampart.example.org"}
	if err := c.Send(context.Background(), review()); err != nil {
		t.Fatal(err)
	}
	m := got()
	b, _ := json.Marshal(m)
	blocks, _ := m["blocks"].([]any)
	if len(blocks) != 2 || m["text"] == "" {
		t.Fatalf("message %s", b)
	}
	section := blocks[0].(map[string]any)["text"].(map[string]any)["text"].(string)
	if strings.Contains(section, "<https://evil") || !strings.Contains(section, "&lt;https://evil.example|click&gt; &amp; go") {
		t.Fatalf("requester's text not escaped: %q", section)
	}
	button := blocks[1].(map[string]any)["elements"].([]any)[0].(map[string]any)
	if button["url"] != "https://rampart.example.org/requests/req_abc" || button["action_id"] != nil || button["value"] != nil {
		t.Fatalf("button %v: it must only open the request's page", button)
	}
	if strings.Contains(string(b), "approve?") || strings.Contains(string(b), "/approve") {
		t.Fatalf("message carries an approve link: %s", b)
	}
}

func TestTeamsAdaptiveCardLinksOnly(t *testing.T) {
	srv, got := fakeChatReceiver(t)
	c := &notify.Chat{Kind: "teams", Label: "sec", URL: srv.URL, BaseURL: "https://rampart.example.org"}
	if err := c.Send(context.Background(), review()); err != nil {
		t.Fatal(err)
	}
	m := got()
	att := m["attachments"].([]any)[0].(map[string]any)
	card := att["content"].(map[string]any)
	acts := card["actions"].([]any)
	if m["type"] != "message" || att["contentType"] != "application/vnd.microsoft.card.adaptive" || card["type"] != "AdaptiveCard" || len(acts) != 1 {
		t.Fatalf("card %v", m)
	}
	if a := acts[0].(map[string]any); a["type"] != "Action.OpenUrl" || a["url"] != "https://rampart.example.org/requests/req_abc" {
		t.Fatalf("action %v: only Action.OpenUrl to the request's page", a)
	}
	// What the requester wrote is never in a Markdown-rendering element: a link in the reason
	// must not become a link in an approver's card.
	n := review()
	n.Message = "alice requested weights-reader-frontier-7: [Approve now](https://evil.example/approve)"
	card = notify.TeamsMessage(n, "https://rampart.example.org/requests/req_abc")["attachments"].([]any)[0].(map[string]any)["content"].(map[string]any)
	plain := false
	for _, el := range card["body"].([]any) {
		b, _ := json.Marshal(el)
		e := el.(map[string]any)
		switch {
		case e["type"] == "RichTextBlock" && strings.Contains(string(b), `"type":"TextRun"`) && strings.Contains(string(b), "evil.example"):
			plain = true
		case strings.Contains(string(b), "evil.example"):
			t.Fatalf("the requester's text is in a %v, which renders Markdown links: %s", e["type"], b)
		}
	}
	if !plain {
		t.Fatalf("the message is not in the card as plain text: %v", card["body"])
	}
}

// smtpServer is a real SMTP server (github.com/emersion/go-smtp) on loopback offering STARTTLS
// with a certificate the test trusts, and AUTH PLAIN only after STARTTLS.
type smtpServer struct {
	mu   sync.Mutex
	msgs []smtpMsg
}

type smtpMsg struct {
	user, from string
	to         []string
	tls        bool
	data       string
}

type smtpSession struct {
	srv *smtpServer
	c   *smtp.Conn
	m   smtpMsg
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "rampart" || pass != "mail-pass" {
			return errors.New("bad credentials")
		}
		s.m.user = user
		return nil
	}), nil
}
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.m.user == "" {
		return errors.New("authenticate first")
	}
	s.m.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.to = append(s.m.to, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, s.m.tls = s.c.TLSConnectionState()
	s.m.data = string(b)
	s.srv.mu.Lock()
	s.srv.msgs = append(s.srv.msgs, s.m)
	s.srv.mu.Unlock()
	return nil
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }

func startSMTP(t *testing.T) (*smtpServer, string, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.test"}, NotBefore: at.Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ms := &smtpServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &smtpSession{srv: ms, c: c}, nil }))
	srv.Domain = "mail.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return ms, l.Addr().String(), pool
}

func TestEmailOverSTARTTLSWithAuth(t *testing.T) {
	ms, addr, pool := startSMTP(t)
	e := &notify.Email{Label: "mail", Addr: addr, From: "rampart@example.org", Username: "rampart", Password: "mail-pass", Domain: "example.org",
		BaseURL: "https://rampart.example.org", TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, Now: func() time.Time { return at }}
	n := review()
	n.Role = "weights\r\nBcc: eve@evil.example"
	if err := e.Send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if len(ms.msgs) != 1 {
		t.Fatalf("%d messages", len(ms.msgs))
	}
	m := ms.msgs[0]
	if !m.tls || m.user != "rampart" || m.from != "rampart@example.org" || strings.Join(m.to, ",") != "bob@example.org,dave@example.org" {
		t.Fatalf("message %+v", m)
	}
	if !strings.Contains(m.data, "https://rampart.example.org/requests/req_abc") || !strings.Contains(m.data, "Subject: Review requested: alice asks for weights  Bcc: eve@evil.example") {
		t.Fatalf("message body:\n%s", m.data)
	}
	if strings.Contains(m.data, "\r\nBcc:") {
		t.Fatalf("a request's text added a header:\n%s", m.data)
	}
	// A wrong password is an error (retried), not a silent drop.
	e.Password = "wrong"
	if err := e.Send(context.Background(), review()); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Fatalf("wrong password: %v", err)
	}
	// A certificate the client does not trust stops the send before AUTH.
	e.Password, e.TLS = "mail-pass", &tls.Config{ServerName: "127.0.0.1"}
	if err := e.Send(context.Background(), review()); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("untrusted certificate: %v", err)
	}
}

// The Router reads secrets from the environment, never the policy, and routes by policy.
func TestRouterSecretsAndRoutes(t *testing.T) {
	srv, got := fakeChatReceiver(t)
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if strings.Contains(string(f.Data), "kind: Settings") {
			files[i].Data = []byte(strings.Replace(string(f.Data), "admin_group: admins", "admin_group: admins\n  notifications:\n    base_url: https://rampart.example.org\n    sinks:\n    - {name: sec, type: slack, secret_env: SLACK_URL, sensitivity: [critical]}", 1))
		}
	}
	pol, err := policy.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	r := &notify.Router{Policy: func() *policy.Policy { return pol }, Getenv: func(k string) string { return env[k] }}
	if _, err := r.Sinks(review()); err == nil || !strings.Contains(err.Error(), "SLACK_URL") {
		t.Fatalf("missing secret: %v", err)
	}
	env["SLACK_URL"] = srv.URL
	r = &notify.Router{Policy: func() *policy.Policy { return pol }, Getenv: func(k string) string { return env[k] }}
	sinks, err := r.Sinks(review())
	if err != nil || len(sinks) != 1 {
		t.Fatalf("critical request: %v, %v", sinks, err)
	}
	if err := sinks[0].Send(context.Background(), review()); err != nil || got() == nil {
		t.Fatal(err)
	}
	n := review()
	n.Role = "dataset-reader-eval-suite-v3"
	if sinks, err := r.Sinks(n); err != nil || len(sinks) != 0 {
		t.Fatalf("a sensitive (not critical) request went to %v, %v", sinks, err)
	}
}

// Issue 15: a grant's reminder mailed to its holder (a real SMTP server, STARTTLS and AUTH) links
// to the grant's page, where they renew it; an account notice links to the console's home.
func TestReminderEmailLinksToGrant(t *testing.T) {
	ms, addr, pool := startSMTP(t)
	e := &notify.Email{Label: "mail", Addr: addr, From: "rampart@example.org", Username: "rampart", Password: "mail-pass", Domain: "example.org",
		BaseURL: "https://rampart.example.org/", TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, Now: func() time.Time { return at }}
	remind := access.Notification{ID: access.ReminderID("grt_9", at.Add(time.Hour)), Event: access.EventGrantExpiring, Kind: access.NotifyExpiring,
		Recipients: []string{"alice"}, RequestID: "req_abc", GrantID: "grt_9", Role: "weights-reader-frontier-7", Subject: "alice",
		Message: "alice's grant grt_9 of weights-reader-frontier-7 ends at 2026-12-07T17:00:00Z (in 1h0m0s); renew it if it is still needed", CreatedAt: at}
	account := access.Notification{ID: "ntf_2", Event: "mfa.reset", Kind: access.NotifyAccount, Recipients: []string{"frank"}, Subject: "frank",
		Message: "your second factor was reset; if you did not ask for it, tell your security team now: erin reset the second factor of frank", CreatedAt: at}
	for _, n := range []access.Notification{remind, account} {
		if err := e.Send(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if len(ms.msgs) != 2 || strings.Join(ms.msgs[0].to, ",") != "alice@example.org" || strings.Join(ms.msgs[1].to, ",") != "frank@example.org" {
		t.Fatalf("messages %+v", ms.msgs)
	}
	if m := ms.msgs[0].data; !strings.Contains(m, "https://rampart.example.org/grants/grt_9") || !strings.Contains(m, "Subject: Your grant grt_9 of weights-reader-frontier-7 ends soon") {
		t.Fatalf("reminder:\n%s", m)
	}
	if m := ms.msgs[1].data; !strings.Contains(m, "Open it in Rampart: https://rampart.example.org/\r\n") || strings.Contains(m, "/requests/") {
		t.Fatalf("account notice:\n%s", m)
	}
}
