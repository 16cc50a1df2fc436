package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"rampart.dev/rampart/access"
)

// Title is a notification's one-line headline.
func Title(n access.Notification) string {
	switch n.Kind {
	case access.NotifyReview:
		return fmt.Sprintf("Review requested: %s asks for %s for %s", n.Requester, n.Role, n.Subject)
	case access.NotifyDecided:
		return fmt.Sprintf("Your request %s for %s was %s", n.RequestID, n.Role, n.Outcome)
	case access.NotifyBreakGlass:
		return fmt.Sprintf("BREAK-GLASS: %s took %s without approval", n.Requester, n.Role)
	case access.NotifyExpiring:
		return fmt.Sprintf("Your grant %s of %s ends soon: renew it if you still need it", n.GrantID, n.Role)
	case access.NotifyAccount:
		return fmt.Sprintf("Security notice for %s: check this change to your Rampart account (%s)", n.Subject, n.Event)
	case access.NotifyAlert:
		if a := n.Alert; a != nil {
			return fmt.Sprintf("ALERT (%s): detection rule %s fired for %s", a.Severity, a.Rule, a.Key)
		}
		return "ALERT: a detection rule fired"
	case access.NotifyLapsing:
		return fmt.Sprintf("Review still needed: %s's request for %s lapses soon", n.Requester, n.Role)
	}
	return n.Event + " " + n.RequestID
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to, so that text a
// requester wrote (the reason) cannot forge a link or a mention.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// SlackMessage is the Block Kit message posted for n: text and a button that only opens the
// server's page of the request (no action is taken by following it).
func SlackMessage(n access.Notification, link string) map[string]any {
	text := "*" + slackEscape(Title(n)) + "*\n" + slackEscape(n.Message)
	if len(n.Recipients) > 0 {
		text += "\nFor: " + slackEscape(strings.Join(n.Recipients, ", "))
	}
	return map[string]any{
		"text": Title(n),
		"blocks": []any{
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": text}},
			map[string]any{"type": "actions", "elements": []any{
				map[string]any{"type": "button", "text": map[string]any{"type": "plain_text", "text": "Open in Rampart"}, "url": link},
			}},
		},
	}
}

// TeamsMessage is the incoming-webhook message carrying an Adaptive Card for n, whose only
// action opens the server's page of the request.
func TeamsMessage(n access.Notification, link string) map[string]any {
	var facts []any
	for _, f := range [][2]string{{"Request", n.RequestID}, {"Grant", n.GrantID}, {"Role", n.Role}, {"Requester", n.Requester}, {"For", strings.Join(n.Recipients, ", ")}} {
		if f[1] != "" && (f[0] != "Grant" || n.Kind == access.NotifyExpiring) {
			facts = append(facts, map[string]any{"title": f[0], "value": f[1]})
		}
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body": []any{
			map[string]any{"type": "TextBlock", "text": Title(n), "weight": "Bolder", "wrap": true},
			// The message carries what the requester wrote (the reason): a TextBlock would render
			// its Markdown, so "[Approve](https://…)" would become a link in an approver's card. A
			// TextRun is plain text.
			map[string]any{"type": "RichTextBlock", "inlines": []any{map[string]any{"type": "TextRun", "text": n.Message}}},
			map[string]any{"type": "FactSet", "facts": facts},
		},
		"actions": []any{map[string]any{"type": "Action.OpenUrl", "title": "Open in Rampart", "url": link}},
	}
	return map[string]any{"type": "message", "attachments": []any{
		map[string]any{"contentType": "application/vnd.microsoft.card.adaptive", "content": card},
	}}
}

// Chat posts to a Slack or Microsoft Teams incoming webhook, whose URL is the credential, or,
// for Slack with a Channel, to the chat.postMessage method at URL with a bot Token. The
// credential comes from the server's environment or a file.
type Chat struct {
	// Kind is "slack" or "teams".
	Kind  string
	Label string
	URL   string
	// Channel, for Slack, posts with chat.postMessage to this channel, authorised by Token.
	Channel string
	Token   string
	BaseURL string
	Client  *http.Client
}

// Name implements Sink (without the URL, which is a secret).
func (c *Chat) Name() string { return c.Kind + " " + c.Label }

// Send implements Sink.
func (c *Chat) Send(ctx context.Context, n access.Notification) error {
	link := Link(c.BaseURL, n)
	msg := SlackMessage(n, link)
	if c.Kind == "teams" {
		msg = TeamsMessage(n, link)
	}
	if c.Kind == "slack" && c.Channel != "" {
		msg["channel"] = c.Channel
		msg["unfurl_links"] = false
		body, err := json.Marshal(msg)
		if err != nil {
			return err
		}
		hdr := http.Header{}
		hdr.Set("Authorization", "Bearer "+c.Token)
		hdr.Set("Content-Type", "application/json; charset=utf-8") // the Web API warns without a charset
		var answer []byte
		if err := postRead(ctx, c.Client, c.URL, body, hdr, &answer); err != nil {
			return err
		}
		return SlackAPIResult(answer)
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return post(ctx, c.Client, c.URL, body, nil)
}

// SlackAPIResult reads the body of a Slack Web API answer. Slack answers 200 to a call that
// failed, with {"ok":false,"error":"channel_not_found"}: that is an error here (the delivery is
// retried, then recorded as failed), as is an answer that is not such an object.
func SlackAPIResult(body []byte) error {
	var r struct {
		OK    *bool  `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.OK == nil {
		return fmt.Errorf("slack answered something that is not a Web API result (%s)", truncate(fmt.Sprintf("%q", body), 200))
	}
	if !*r.OK {
		return fmt.Errorf("slack refused the message: %s", truncate(fmt.Sprintf("%q", r.Error), 200))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func post(ctx context.Context, c *http.Client, url string, body []byte, hdr http.Header) error {
	return postRead(ctx, c, url, body, hdr, nil)
}

// postRead posts body and, if answer is not nil, keeps the first 64 KiB of a 2xx answer there.
func postRead(ctx context.Context, c *http.Client, url string, body []byte, hdr http.Header, answer *[]byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	if answer != nil {
		if err != nil {
			return fmt.Errorf("read the receiver's answer: %w", err)
		}
		*answer = b
	}
	return nil
}
