package policy_test

import (
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
)

func TestNotificationSettings(t *testing.T) {
	set := func(n string) string {
		return strings.Replace(settingsDoc, "spec: {admin_group: a}\n", "spec:\n  admin_group: a\n  notifications: "+n+"\n", 1) + groupDoc("a", "x")
	}
	p := mustParse(t, set("{base_url: https://rampart.example.org, sinks: [{name: hook, type: webhook, url: https://hooks.example.org/r, secret_env: HOOK_KEY, events: [review]}]}"))
	n := p.Notifications()
	if n.BreakGlassGroup != "a" || len(n.Sinks) != 1 || n.Sinks[0].SecretEnv != "HOOK_KEY" {
		t.Fatalf("parsed %+v", n)
	}
	if !p.Routes(n.Sinks[0], "review", "any", "any") || p.Routes(n.Sinks[0], "decided", "any", "any") {
		t.Fatal("events route wrongly")
	}
	if n.RemindBefore.Std() != policy.DefaultRemindBefore || n.RequestRemindLead(time.Time{}, time.Time{}.Add(24*time.Hour)) != 6*time.Hour {
		t.Fatalf("reminder defaults: %v, %v", n.RemindBefore.Std(), n.RequestRemindLead(time.Time{}, time.Time{}.Add(24*time.Hour)))
	}
	p = mustParse(t, set("{remind_before: 2h, request_remind_before: 30m, sinks: [{name: bot, type: slack, channel: C0123, secret_env: BOT, events: [expiring, lapsing]}]}"))
	if n := p.Notifications(); n.RemindBefore.Std() != 2*time.Hour || n.RequestRemindLead(time.Time{}, time.Time{}.Add(24*time.Hour)) != 30*time.Minute || n.Sinks[0].Channel != "C0123" {
		t.Fatalf("parsed %+v", n)
	}
	for _, tc := range []struct{ n, want string }{
		{"{base_url: ftp://x}", "p.yaml:6:"},
		{"{base_url: ftp://x}", "spec.notifications.base_url: \"ftp://x\" is not an http(s) URL"},
		{"{sinks: [{name: s, type: slack, url: https://hooks.example.org/T0/B0/secret, secret_env: S}]}", "spec.notifications.sinks[0].url: a slack incoming-webhook URL is a credential"},
		{"{sinks: [{name: s, type: webhook, url: https://u:p@h.example.org/}]}", "without credentials"},
		{"{sinks: [{name: s, type: webhook, url: https://h.example.org/}]}", "spec.notifications.sinks[0].secret_env: a webhook sink needs secret_env or secret_file"},
		{"{sinks: [{name: s, type: webhook, url: https://h.example.org/, secret_env: 'A B'}]}", "is not an environment variable name"},
		{"{sinks: [{name: s, type: webhook, url: https://h.example.org/, secret_env: A, secret_file: /f}]}", "not both"},
		{"{sinks: [{name: s, type: pager, secret_env: A}]}", "type must be webhook, slack, teams or email"},
		{"{sinks: [{name: s, type: email, smtp: mail, from: x}]}", "sinks[0].smtp: an email sink needs smtp"},
		{"{sinks: [{name: s, type: teams, secret_env: A, events: [lunch]}]}", "sinks[0].events[0]: event must be one of"},
		{"{sinks: [{name: s, type: teams, secret_env: A, approval_policies: [nope]}]}", "no approval policy \"nope\""},
		{"{sinks: [{name: s, type: teams, secret_env: A}, {name: s, type: slack, secret_env: B}]}", "sinks[1].name: each sink needs a unique name"},
		{"{sinks: [{name: s, type: teams, secret: hunter2}]}", `unknown field "secret"`},
		{"{break_glass_group: nobody}", "nobody"},
		{"{remind_before: -1h}", "negative"},
		{"{remind_before: 800h}", "notifications.remind_before: 800h0m0s is more than 30 days"},
		{"{request_remind_before: 1000h}", "notifications.request_remind_before"},
		{"{sinks: [{name: s, type: teams, secret_env: A, channel: C1}]}", "sinks[0].channel: only a slack sink has a channel"},
		{"{sinks: [{name: s, type: slack, secret_env: A, channel: 'my channel'}]}", "is not a Slack channel"},
		{"{sinks: [{name: s, type: slack, secret_env: A, channel: C1, url: 'ftp://x'}]}", "posts to chat.postMessage"},
		{"{sinks: [{name: s, type: slack, channel: C1}]}", "sinks[0].secret_env: a slack sink needs secret_env"},
		{"{sinks: [{name: s, type: slack, secret_env: A, events: [expiring, lapsing, soon]}]}", "sinks[0].events[2]: event must be one of"},
	} {
		_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(set(tc.n))}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("notifications %s: %v, want %q", tc.n, err, tc.want)
		}
	}
}

func TestNotificationRoutes(t *testing.T) {
	p, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	weights, dataset := "weights-reader-frontier-7", "dataset-reader-eval-suite-v3"
	for _, tc := range []struct {
		sink     policy.NotificationSink
		role, ap string
		want     bool
	}{
		{policy.NotificationSink{}, weights, "critical-weights", true},
		{policy.NotificationSink{Sensitivity: []policy.Sensitivity{policy.Critical}}, weights, "critical-weights", true},
		{policy.NotificationSink{Sensitivity: []policy.Sensitivity{policy.Critical}}, dataset, "datasets", false},
		{policy.NotificationSink{Resources: []string{"weights/*"}}, weights, "critical-weights", true},
		{policy.NotificationSink{Resources: []string{"weights/*"}}, dataset, "datasets", false},
		{policy.NotificationSink{ApprovalPolicies: []string{"critical-weights"}}, dataset, "datasets", false},
		{policy.NotificationSink{ApprovalPolicies: []string{"critical-weights"}}, weights, "critical-weights", true},
		{policy.NotificationSink{Resources: []string{"weights/*"}}, "no-such-role", "x", false},
	} {
		if got := p.Routes(tc.sink, "review", tc.role, tc.ap); got != tc.want {
			t.Errorf("Routes(%+v, %s, %s) = %v, want %v", tc.sink, tc.role, tc.ap, got, tc.want)
		}
	}
}
