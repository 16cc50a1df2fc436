package notify

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/policy"
)

// Router picks the sinks of the policy in force that a notification is routed to, reading each
// sink's secret from the server's environment or a file (never from the policy).
type Router struct {
	// Policy returns the policy in force.
	Policy func() *policy.Policy
	// DataDir resolves a relative secret_file.
	DataDir string
	// Getenv reads the environment (os.Getenv if nil).
	Getenv func(string) string
	Client *http.Client

	mu    sync.Mutex
	pol   *policy.Policy
	sinks map[string]Sink
	errs  map[string]error
}

// Sinks returns the sinks n goes to. A sink whose secret cannot be read is an error (the
// notification is retried, then recorded as failed), not a silent skip. An alert also goes to
// the policy's detection webhook (settings detection.webhook) when one is set, and is addressed
// to the members of the admin group (alerts name no request, so no approver is concerned).
func (r *Router) Sinks(n access.Notification) ([]Sink, error) {
	pol := r.Policy()
	r.mu.Lock()
	defer r.mu.Unlock()
	if pol != r.pol {
		r.pol, r.sinks, r.errs = pol, map[string]Sink{}, map[string]error{}
		for _, k := range pol.Notifications().Sinks {
			s, err := r.build(pol.Notifications().BaseURL, k)
			r.sinks[k.Name], r.errs[k.Name] = s, err
		}
		if k, ok := detectionSink(pol); ok {
			s, err := r.build(pol.Notifications().BaseURL, k)
			r.sinks[detectionSinkName], r.errs[detectionSinkName] = s, err
		}
	}
	var out []Sink
	for _, k := range pol.Notifications().Sinks {
		if !pol.Routes(k, n.Kind, n.Role, n.Policy) {
			continue
		}
		if err := r.errs[k.Name]; err != nil {
			return nil, err
		}
		out = append(out, r.sinks[k.Name])
	}
	if n.Kind != access.NotifyAlert {
		return out, nil
	}
	if _, ok := detectionSink(pol); ok {
		if err := r.errs[detectionSinkName]; err != nil {
			return nil, err
		}
		out = append(out, r.sinks[detectionSinkName])
	}
	admins := append([]string(nil), pol.Members(pol.Settings().AdminGroup)...)
	for i, s := range out {
		out[i] = addressed{Sink: s, to: admins}
	}
	return out, nil
}

// detectionSinkName is the detection webhook's name among the sinks: a name the policy's sinks
// cannot take (they are validated names, with no space or parenthesis).
const detectionSinkName = "(detection)"

// detectionSink is the policy's detection webhook as a webhook sink, if it sets one.
func detectionSink(pol *policy.Policy) (policy.NotificationSink, bool) {
	w := pol.Detection().Webhook
	if w == nil || w.URL == "" {
		return policy.NotificationSink{}, false
	}
	return policy.NotificationSink{Name: detectionSinkName, Type: policy.SinkWebhook, URL: w.URL, SecretFile: w.SecretFile}, true
}

// addressed is a sink that sends a notification to given recipients (an alert's, resolved when
// it is delivered).
type addressed struct {
	Sink
	to []string
}

// Send implements Sink.
func (a addressed) Send(ctx context.Context, n access.Notification) error {
	n.Recipients = a.to
	return a.Sink.Send(ctx, n)
}

// Check builds every sink of pol (and its detection webhook), reporting the first whose secret
// is missing (for startup).
func (r *Router) Check(pol *policy.Policy) error {
	for _, k := range pol.Notifications().Sinks {
		if _, err := r.build(pol.Notifications().BaseURL, k); err != nil {
			return err
		}
	}
	if k, ok := detectionSink(pol); ok {
		if _, err := r.build(pol.Notifications().BaseURL, k); err != nil {
			return fmt.Errorf("detection.webhook: %w", err)
		}
	}
	return nil
}

func (r *Router) secret(k policy.NotificationSink) (string, error) {
	switch {
	case k.SecretEnv != "":
		get := r.Getenv
		if get == nil {
			get = os.Getenv
		}
		v := get(k.SecretEnv)
		if v == "" {
			return "", fmt.Errorf("notification sink %s: environment variable %s (its secret_env) is empty or unset; set it in the server's environment", k.Name, k.SecretEnv)
		}
		return v, nil
	case k.SecretFile != "":
		path := k.SecretFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(r.DataDir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("notification sink %s: read its secret_file: %w", k.Name, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("notification sink %s: secret_file %s is empty", k.Name, path)
		}
		return v, nil
	}
	return "", nil
}

func (r *Router) build(base string, k policy.NotificationSink) (Sink, error) {
	sec, err := r.secret(k)
	if err != nil {
		return nil, err
	}
	switch k.Type {
	case policy.SinkWebhook:
		return &Webhook{Label: k.Name, URL: k.URL, Secret: []byte(sec), BaseURL: base, Client: r.Client}, nil
	case policy.SinkSlack, policy.SinkTeams:
		if k.Type == policy.SinkSlack && k.Channel != "" {
			api := k.URL
			if api == "" {
				api = policy.DefaultSlackAPI
			}
			return &Chat{Kind: k.Type, Label: k.Name, URL: api, Channel: k.Channel, Token: sec, BaseURL: base, Client: r.Client}, nil
		}
		return &Chat{Kind: k.Type, Label: k.Name, URL: sec, BaseURL: base, Client: r.Client}, nil
	case policy.SinkEmail:
		return &Email{Label: k.Name, Addr: k.SMTP, From: k.From, Username: k.Username, Password: sec, Domain: k.Domain, BaseURL: base}, nil
	}
	return nil, fmt.Errorf("notification sink %s: unknown type %q", k.Name, k.Type)
}
