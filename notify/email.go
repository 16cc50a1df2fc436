package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"time"

	"rampart.dev/rampart/access"
)

// Email sends a notification to each recipient's address over SMTP. STARTTLS is required unless
// the server is on a loopback address (a local relay), and AUTH PLAIN is used when a username
// is set; net/smtp refuses to send the password over a connection without TLS to a remote host.
type Email struct {
	Label string
	// Addr is host:port of the mail server.
	Addr     string
	From     string
	Username string
	Password string
	// Domain makes a person's address: <subject>@<domain>.
	Domain  string
	BaseURL string
	// TLS is the STARTTLS configuration (nil: verify the server's certificate for its host
	// name against the system roots).
	TLS *tls.Config
	Now func() time.Time
}

// Name implements Sink.
func (e *Email) Name() string { return "email " + e.Label }

// Address returns the mail address of a subject, or an error if it cannot be one.
func (e *Email) Address(subject string) (string, error) {
	a := subject
	if !strings.Contains(a, "@") {
		a = subject + "@" + e.Domain
	}
	if strings.ContainsAny(a, "\r\n<>,; \t\"") || strings.Count(a, "@") != 1 {
		return "", fmt.Errorf("%q is not a mail address", a)
	}
	return a, nil
}

// headerSafe removes line breaks so that text from a request cannot add a mail header.
func headerSafe(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// Send implements Sink: one message to all the notification's recipients.
func (e *Email) Send(ctx context.Context, n access.Notification) error {
	if len(n.Recipients) == 0 {
		return nil
	}
	var to []string
	for _, r := range n.Recipients {
		a, err := e.Address(r)
		if err != nil {
			return err
		}
		to = append(to, a)
	}
	host, _, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return fmt.Errorf("smtp %q: %w", e.Addr, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := e.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("STARTTLS with %s: %w", e.Addr, err)
		}
	} else if !isLoopback(host) {
		return errors.New("mail server " + e.Addr + " does not offer STARTTLS; Rampart sends mail in the clear only to a loopback relay")
	}
	if e.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.Username, e.Password, host)); err != nil {
			return fmt.Errorf("AUTH as %s: %w", e.Username, err)
		}
	}
	if err := c.Mail(e.From); err != nil {
		return err
	}
	for _, a := range to {
		if err := c.Rcpt(a); err != nil {
			return fmt.Errorf("RCPT %s: %w", a, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@rampart>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		e.From, strings.Join(to, ", "), headerSafe(Title(n)), now().UTC().Format(time.RFC1123Z), n.ID)
	body := n.Message + "\n\nOpen it in Rampart: " + Link(e.BaseURL, n) + "\n"
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))
	if _, err := w.Write([]byte(b.String())); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
