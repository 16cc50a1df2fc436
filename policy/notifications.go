package policy

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Notification sink types.
const (
	SinkWebhook = "webhook"
	SinkSlack   = "slack"
	SinkTeams   = "teams"
	SinkEmail   = "email"
)

// Notification events a route can select (access.Notify*).
var notificationEvents = []string{"review", "decided", "break_glass", "expiring", "lapsing", "account", "alert"}

// Defaults of the reminders.
const (
	// DefaultRemindBefore is how long before a grant expires its holder is reminded.
	DefaultRemindBefore = time.Hour
	// DefaultRequestRemindFraction is the part of a pending request's lifetime (request_ttl)
	// left when its approvers are reminded, unless request_remind_before is set.
	DefaultRequestRemindFraction = 4
	// DefaultSlackAPI is the Slack Web API method a Slack sink with a channel posts to.
	DefaultSlackAPI = "https://slack.com/api/chat.postMessage"
)

// Notifications configures who is told about requests and where (docs/notifications.md). The
// policy holds no secret: each sink names the environment variable or file its secret is read
// from by the server, so the policy repository can be public to everyone who may read it.
type Notifications struct {
	// BaseURL is the server's public URL; notifications link to <base_url>/requests/<id>, a page
	// that shows the request and acts on nothing by GET.
	BaseURL string `yaml:"base_url"`
	// BreakGlassGroup is paged at once when someone takes break-glass access (default: the
	// admin_group).
	BreakGlassGroup string `yaml:"break_glass_group"`
	// RemindBefore is how long before a grant expires its holder is reminded, with a link to
	// renew it (default DefaultRemindBefore). A renewed grant is reminded again before its new
	// end.
	RemindBefore Duration `yaml:"remind_before"`
	// RequestRemindBefore is how long before a pending request lapses the approvers who can
	// still approve it are reminded (default: a quarter of the request's lifetime).
	RequestRemindBefore Duration `yaml:"request_remind_before"`
	// Sinks are where notifications go.
	Sinks []NotificationSink `yaml:"sinks"`
}

// NotificationSink is one destination of notifications and the rule for what it receives.
type NotificationSink struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// URL is the generic webhook's endpoint. Slack and Teams incoming-webhook URLs carry their
	// own credential, so for them the URL is the secret and is never written here. A Slack sink
	// with a Channel posts with a bot token (the secret) to the chat.postMessage endpoint, URL
	// (default DefaultSlackAPI).
	URL string `yaml:"url"`
	// Channel makes a Slack sink post with chat.postMessage to this channel (an id such as
	// C0123456789, or #name) instead of to an incoming webhook.
	Channel string `yaml:"channel"`
	// SecretEnv or SecretFile names where the server reads the sink's secret: the webhook's
	// HMAC key, the Slack or Teams webhook URL, the Slack bot token, the SMTP password. A relative file is resolved
	// against the server's data directory.
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
	// SMTP is host:port of the mail server (email); STARTTLS is required unless the host is a
	// loopback address.
	SMTP     string `yaml:"smtp"`
	From     string `yaml:"from"`
	Username string `yaml:"username"`
	// Domain makes a person's address: <subject>@<domain> (a subject that is already an address
	// is used as it is).
	Domain string `yaml:"domain"`
	// Events, Resources, Sensitivity and ApprovalPolicies route: the sink receives a
	// notification only if every list given matches it (an empty list matches everything).
	// Resources are patterns matched against what the request's role reaches; Sensitivity
	// against those resources' tiers.
	Events           []string      `yaml:"events"`
	Resources        []string      `yaml:"resources"`
	Sensitivity      []Sensitivity `yaml:"sensitivity"`
	ApprovalPolicies []string      `yaml:"approval_policies"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Notifications returns the notification settings.
func (p *Policy) Notifications() Notifications {
	n := p.settings.Notifications
	if n.BreakGlassGroup == "" {
		n.BreakGlassGroup = p.settings.AdminGroup
	}
	if n.RemindBefore == 0 {
		n.RemindBefore = Duration(DefaultRemindBefore)
	}
	return n
}

// RequestRemindLead returns how long before a pending request created at created and lapsing at
// expires its approvers are reminded.
func (n Notifications) RequestRemindLead(created, expires time.Time) time.Duration {
	if n.RequestRemindBefore > 0 {
		return n.RequestRemindBefore.Std()
	}
	return expires.Sub(created) / DefaultRequestRemindFraction
}

func (p *Policy) validateNotifications(s *Settings) {
	n := &s.Notifications
	if n.BaseURL != "" {
		if u, err := url.Parse(n.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			s.src.errorf("notifications.base_url", "%q is not an http(s) URL such as https://rampart.example.org", n.BaseURL)
		}
	}
	if n.BreakGlassGroup != "" {
		p.groupRef(s.src, "notifications.break_glass_group", n.BreakGlassGroup)
	}
	if n.RemindBefore.Std() > 30*24*time.Hour {
		s.src.errorf("notifications.remind_before", "%s is more than 30 days; a reminder is meant for the last hours of a grant (default 1h)", n.RemindBefore.Std())
	}
	if n.RequestRemindBefore.Std() > 30*24*time.Hour {
		s.src.errorf("notifications.request_remind_before", "%s is more than 30 days; leave it out for a quarter of each request's lifetime", n.RequestRemindBefore.Std())
	}
	names := map[string]bool{}
	for i, k := range n.Sinks {
		f := func(field string) string { return fmt.Sprintf("notifications.sinks[%d].%s", i, field) }
		if k.Name == "" || names[k.Name] {
			s.src.errorf(f("name"), "each sink needs a unique name (got %q)", k.Name)
		}
		if k.Name == "(detection)" {
			s.src.errorf(f("name"), "%q is the name Rampart gives the detection webhook (detection.webhook); choose another", k.Name)
		}
		names[k.Name] = true
		switch k.Type {
		case SinkWebhook:
			if u, err := url.Parse(k.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
				s.src.errorf(f("url"), "a webhook sink needs an http(s) url without credentials in it (got %q)", k.URL)
			}
		case SinkSlack, SinkTeams:
			if k.Type == SinkSlack && k.Channel != "" {
				if strings.ContainsAny(k.Channel, " \t\r\n") {
					s.src.errorf(f("channel"), "%q is not a Slack channel: give its id (C0123456789) or #name", k.Channel)
				}
				if u, err := url.Parse(k.URL); k.URL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil) {
					s.src.errorf(f("url"), "a slack sink with a channel posts to chat.postMessage: url is that endpoint (default %s), an http(s) URL without credentials (got %q)", DefaultSlackAPI, k.URL)
				}
				break
			}
			if k.Channel != "" {
				s.src.errorf(f("channel"), "only a slack sink has a channel")
			}
			if k.URL != "" {
				s.src.errorf(f("url"), "a %s incoming-webhook URL is a credential: put it in the environment variable or file named by secret_env or secret_file, not in the policy (a slack sink with a channel posts with a bot token instead, and its url is the API endpoint)", k.Type)
			}
		case SinkEmail:
			if k.SMTP == "" || !strings.Contains(k.SMTP, ":") {
				s.src.errorf(f("smtp"), "an email sink needs smtp: host:port of the mail server (got %q)", k.SMTP)
			}
			if !strings.Contains(k.From, "@") {
				s.src.errorf(f("from"), "an email sink needs from: the sender's address (got %q)", k.From)
			}
			if k.Domain == "" {
				s.src.errorf(f("domain"), "an email sink needs domain: people's addresses are <subject>@<domain>")
			}
		default:
			if k.Channel != "" {
				s.src.errorf(f("channel"), "only a slack sink has a channel")
			}
			s.src.errorf(f("type"), "type must be webhook, slack, teams or email, not %q", k.Type)
		}
		switch {
		case k.SecretEnv != "" && k.SecretFile != "":
			s.src.errorf(f("secret_env"), "give secret_env or secret_file, not both")
		case k.SecretEnv != "" && !envName.MatchString(k.SecretEnv):
			s.src.errorf(f("secret_env"), "%q is not an environment variable name", k.SecretEnv)
		case strings.ContainsRune(k.SecretFile, 0):
			s.src.errorf(f("secret_file"), "secret_file contains a NUL byte")
		case k.SecretEnv == "" && k.SecretFile == "" && k.Type != SinkEmail:
			s.src.errorf(f("secret_env"), "a %s sink needs secret_env or secret_file: where the server reads its secret", k.Type)
		}
		for j, e := range k.Events {
			if !slices.Contains(notificationEvents, e) {
				s.src.errorf(fmt.Sprintf("notifications.sinks[%d].events[%d]", i, j), "event must be one of %s, not %q", strings.Join(notificationEvents, ", "), e)
			}
		}
		for j, r := range k.Resources {
			if err := ValidatePattern(r); err != nil {
				s.src.errorf(fmt.Sprintf("notifications.sinks[%d].resources[%d]", i, j), "%v", err)
			}
		}
		for j, a := range k.ApprovalPolicies {
			if p.approvals[a] == nil {
				s.src.errorf(fmt.Sprintf("notifications.sinks[%d].approval_policies[%d]", i, j), "no approval policy %q", a)
			}
		}
	}
}

// Routes reports whether sink k receives a notification of kind event about a request for role
// under approval policy ap.
func (p *Policy) Routes(k NotificationSink, event, role, ap string) bool {
	if len(k.Events) > 0 && !slices.Contains(k.Events, event) {
		return false
	}
	if len(k.ApprovalPolicies) > 0 && !slices.Contains(k.ApprovalPolicies, ap) {
		return false
	}
	if len(k.Resources) == 0 && len(k.Sensitivity) == 0 {
		return true
	}
	r := p.roles[role]
	if r == nil {
		return false
	}
	res := p.roleResources(r)
	if len(k.Resources) > 0 && !slices.ContainsFunc(res, func(x *Resource) bool {
		return slices.ContainsFunc(k.Resources, func(pat string) bool { return MatchPattern(pat, x.Name) })
	}) {
		return false
	}
	if len(k.Sensitivity) > 0 && !slices.ContainsFunc(res, func(x *Resource) bool { return slices.Contains(k.Sensitivity, x.Sensitivity) }) {
		return false
	}
	return true
}
