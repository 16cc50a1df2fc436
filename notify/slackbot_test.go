package notify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/notify"
	"rampart.dev/rampart/policy"
)

// fakeSlackWebAPI stands in for the HTTP edge of Slack's Web API (a SaaS) at chat.postMessage:
// it checks the bot token and the message's shape the way Slack documents them and answers as
// Slack does, 200 with {"ok":false,"error":…} for a call it refuses.
type fakeSlackWebAPI struct {
	token string
	mu    sync.Mutex
	posts []map[string]any
	// refuse makes every call answer {"ok":false,"error":refuse}.
	refuse string
}

func (f *fakeSlackWebAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	answer := func(v map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/api/chat.postMessage" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		answer(map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		answer(map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		answer(map[string]any{"ok": false, "error": "invalid_json"})
		return
	}
	if ch, _ := m["channel"].(string); ch == "" {
		answer(map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	if _, ok := m["blocks"].([]any); !ok {
		answer(map[string]any{"ok": false, "error": "no_text"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != "" {
		answer(map[string]any{"ok": false, "error": f.refuse})
		return
	}
	f.posts = append(f.posts, m)
	answer(map[string]any{"ok": true, "channel": m["channel"], "ts": "1733587200.000100"})
}

func slackBotPolicy(t *testing.T, sink string) *policy.Policy {
	t.Helper()
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if strings.Contains(string(f.Data), "kind: Settings") {
			files[i].Data = []byte(strings.Replace(string(f.Data), "admin_group: admins", "admin_group: admins\n  notifications:\n    base_url: https://rampart.example.org\n    sinks:\n    - "+sink, 1))
		}
	}
	pol, err := policy.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// Issue 15: a Slack sink with a channel posts with chat.postMessage and a bot token read from
// the environment, with the same Block Kit message as the incoming webhook; Slack's
// {"ok":false} (answered with 200) is a failed delivery, not a delivered one.
func TestSlackBotPostsWithToken(t *testing.T) {
	api := &fakeSlackWebAPI{token: "xoxb-test-token"}
	srv := httptest.NewServer(api)
	defer srv.Close()
	pol := slackBotPolicy(t, "{name: bot, type: slack, channel: C0123456789, url: "+srv.URL+"/api/chat.postMessage, secret_env: SLACK_BOT_TOKEN}")
	env := map[string]string{"SLACK_BOT_TOKEN": api.token}
	r := &notify.Router{Policy: func() *policy.Policy { return pol }, Getenv: func(k string) string { return env[k] }}
	sinks, err := r.Sinks(review())
	if err != nil || len(sinks) != 1 || sinks[0].Name() != "slack bot" {
		t.Fatalf("sinks %v, %v", sinks, err)
	}
	if err := sinks[0].Send(context.Background(), review()); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	if len(api.posts) != 1 || api.posts[0]["channel"] != "C0123456789" {
		t.Fatalf("posts %v", api.posts)
	}
	got, _ := json.Marshal(api.posts[0]["blocks"])
	want, _ := json.Marshal(notify.SlackMessage(review(), "https://rampart.example.org/requests/req_abc")["blocks"])
	api.mu.Unlock()
	if string(got) != string(want) {
		t.Fatalf("blocks %s, want those of the incoming webhook %s", got, want)
	}

	// A grant about to expire links to the grant's page, where its holder renews it.
	n := access.Notification{ID: "ntf_remind_grt_1_x", Event: access.EventGrantExpiring, Kind: access.NotifyExpiring, Recipients: []string{"alice"},
		RequestID: "req_abc", GrantID: "grt_1", Role: "weights-reader-frontier-7", Requester: "alice", Subject: "alice", Message: "ends soon"}
	if err := sinks[0].Send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	b, _ := json.Marshal(api.posts[1])
	api.mu.Unlock()
	if !strings.Contains(string(b), `"url":"https://rampart.example.org/grants/grt_1"`) {
		t.Fatalf("reminder %s does not link to the grant's page", b)
	}

	// Slack refuses with 200 {"ok":false}: the delivery failed, saying why.
	api.mu.Lock()
	api.refuse = "channel_not_found"
	api.mu.Unlock()
	if err := sinks[0].Send(context.Background(), review()); err == nil || !strings.Contains(err.Error(), "channel_not_found") {
		t.Fatalf("a refused post: %v, want an error naming channel_not_found", err)
	}
	// A wrong token is refused the same way.
	env["SLACK_BOT_TOKEN"] = "xoxb-wrong"
	r = &notify.Router{Policy: func() *policy.Policy { return pol }, Getenv: func(k string) string { return env[k] }}
	sinks, _ = r.Sinks(review())
	if err := sinks[0].Send(context.Background(), review()); err == nil || !strings.Contains(err.Error(), "invalid_auth") {
		t.Fatalf("a wrong token: %v", err)
	}
	// Without a url, it posts to Slack's own endpoint.
	pol = slackBotPolicy(t, "{name: bot, type: slack, channel: '#security', secret_env: SLACK_BOT_TOKEN}")
	r = &notify.Router{Policy: func() *policy.Policy { return pol }, Getenv: func(k string) string { return env[k] }}
	if sinks, err := r.Sinks(review()); err != nil || sinks[0].(*notify.Chat).URL != policy.DefaultSlackAPI {
		t.Fatalf("default endpoint: %v, %v", sinks, err)
	}
}

func TestSlackAPIResult(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"ok":true,"ts":"1.2"}`:                true,
		`{"ok":false,"error":"not_in_channel"}`: false,
		`{"error":"x"}`:                         false,
		`ok`:                                    false,
		``:                                      false,
		`{"ok":"true"}`:                         false,
		`{"ok":false,"error":"` + strings.Repeat("e", 1000) + `"}`: false,
	} {
		if err := notify.SlackAPIResult([]byte(body)); (err == nil) != ok {
			t.Errorf("SlackAPIResult(%.40q) = %v, want ok %v", body, err, ok)
		}
	}
}

// FuzzSlackAPIResult: Slack's answer is untrusted input; whatever it is, the result is ok only
// for {"ok":true}, and never panics.
func FuzzSlackAPIResult(f *testing.F) {
	f.Add([]byte(`{"ok":true}`))
	f.Add([]byte(`{"ok":false,"error":"ratelimited"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := notify.SlackAPIResult(b)
		var r struct {
			OK *bool `json:"ok"`
		}
		accepted := json.Unmarshal(b, &r) == nil && r.OK != nil && *r.OK
		if (err == nil) != accepted {
			t.Fatalf("SlackAPIResult(%q) = %v, but ok is %v", b, err, accepted)
		}
		if err != nil && len(err.Error()) > 600 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
	})
}
