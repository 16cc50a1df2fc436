package detect_test

import (
	"fmt"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
)

// The built-in pack (internal/demo/policy/detection.yaml) against events shaped as the server
// writes them: each entry is encoded by audit.Encode with the class, fields and details of the
// code that writes it, then read back by ParseEntry, as the runner reads the ledger.

// entry is one ledger entry to be: an audit.Event at an offset from the start of a case.
type entry struct {
	at time.Duration
	ev audit.Event
}

var packStart = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) // a Tuesday, 10:00 UTC

func weightsRead(actor, model string, version int, more map[string]any) audit.Event {
	d := map[string]any{"version": version, "bytes": 1 << 20, "complete": true, "grant_id": "grt_aaaaaaaaaaaaaaaa"}
	for k, v := range more {
		d[k] = v
	}
	return audit.Event{Code: "weights.read", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: audit.SeverityLow, Actor: actor, Resources: []string{"weights/" + model}, Message: actor + " read weights/" + model, Details: d}
}

func egressTransfer(actor, host string, bytesOut int) audit.Event {
	return audit.Event{Code: "egress.transfer", Class: audit.ClassNetworkActivity, Activity: 6, ActivityName: "Traffic", Actor: actor,
		Message: actor + " → " + host, Details: map[string]any{"tunnel_id": "tun_1", "grant_id": "grt_bbbbbbbbbbbbbbbb"},
		Extra: map[string]any{"dst_endpoint": map[string]any{"hostname": host, "ip": "203.0.113.7", "port": 443},
			"traffic": map[string]any{"bytes_out": bytesOut, "bytes_in": 100}}}
}

func refused(code, actor string) audit.Event {
	return audit.Event{Code: code, Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read", Severity: audit.SeverityMedium,
		Actor: actor, Resources: []string{"weights/frontier-7"}, Failed: true, Message: actor + " refused", Details: map[string]any{"reason": "no grant"}}
}

func requestEvent(code, actor, requester string, more map[string]any) audit.Event {
	d := map[string]any{"request_id": "req_x", "requester": requester, "beneficiary": requester, "role": "weights-reader-frontier-7", "state": "pending"}
	for k, v := range more {
		d[k] = v
	}
	return audit.Event{Code: code, Class: audit.ClassAPIActivity, Activity: audit.ActivityUpdate, ActivityName: "Update", Actor: actor, User: requester,
		Privileges: []string{"weights-reader-frontier-7"}, Message: code, Details: d}
}

func systemEvent(code string, class int, failed bool, details map[string]any) audit.Event {
	return audit.Event{Code: code, Class: class, Activity: audit.ActivityUpdate, ActivityName: "Update", Severity: audit.SeverityHigh,
		Actor: audit.SystemActor, Failed: failed, Message: code, Details: details}
}

func kubeExec(actor string) audit.Event {
	return audit.Event{Code: "kube.exec", Class: audit.ClassAPIActivity, Activity: audit.ActivityOther, ActivityName: "Other", Severity: audit.SeverityMedium,
		Actor: actor, Resources: []string{"weights/frontier-7"}, Message: "exec",
		Details: map[string]any{"subject": "alice", "subresource": "exec", "grant_ids": []string{"grt_c"}, "namespace": "research", "name": "serve"}}
}

func stepUpRefused(actor string, count int) audit.Event {
	e := audit.Event{Code: "signin.refused", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon", Severity: audit.SeverityMedium,
		Actor: actor, User: actor, Failed: true, Message: "wrong code", Details: map[string]any{"method": "totp-step-up", "ip": "198.51.100.4"}}
	if count > 1 {
		e.Extra = map[string]any{"count": count, "start_time": 1, "end_time": 2}
	}
	return e
}

// run replays entries through one rule of the pack and returns its firings.
func runPack(t *testing.T, rule string, entries []entry) []detect.Firing {
	t.Helper()
	p, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	var r *policy.DetectionRule
	for _, x := range p.DetectionRules {
		if x.Name == rule {
			r = x
		}
	}
	if r == nil {
		t.Fatalf("the pack has no rule %s", rule)
	}
	e, err := detect.NewEngine([]*policy.DetectionRule{r}, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []detect.Firing
	for i, en := range entries {
		en.ev.Time = packStart.Add(en.at)
		b, err := audit.Encode(int64(i), en.ev)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := detect.ParseEntry(-1, b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Process(ev)...)
	}
	return out
}

func repeat(n int, every time.Duration, from time.Duration, f func(i int) audit.Event) []entry {
	var out []entry
	for i := 0; i < n; i++ {
		out = append(out, entry{from + time.Duration(i)*every, f(i)})
	}
	return out
}

func TestBuiltinPack(t *testing.T) {
	hour := time.Hour
	// A week and a day of alice's usual reading: two reads an hour, working hours only.
	usual := func(who string) []entry {
		var out []entry
		for h := 0; h < 8*24; h++ {
			if h%24 < 8 {
				out = append(out, repeat(2, time.Minute, time.Duration(h)*hour, func(int) audit.Event { return weightsRead(who, "frontier-7", 1, nil) })...)
			}
		}
		return out
	}
	bulk := func(n int) []entry {
		return repeat(n, time.Minute, 8*24*hour+2*hour, func(int) audit.Event { return weightsRead("alice", "frontier-7", 1, nil) })
	}
	approve := func(approver, requester, risk string) audit.Event {
		more := map[string]any{"decision": "approve"}
		if risk != "" {
			more["session_risk"] = risk
		}
		return requestEvent("request.approve", approver, requester, more)
	}
	read := func(who, network string) audit.Event {
		return weightsRead(who, "frontier-7", 1, map[string]any{"client_ip": "x", "network": network})
	}
	for _, tc := range []struct {
		rule        string
		fire, quiet []entry
		learning    bool
	}{
		{rule: "bulk-weight-reads", fire: append(usual("alice"), bulk(12)...), quiet: append(usual("alice"), bulk(5)...)},
		// In the first week: reported, marked learning (never acted on); a first hour is learnt.
		{rule: "bulk-weight-reads", fire: append(usual("alice")[:32], repeat(12, time.Minute, 3*24*hour, func(int) audit.Event { return weightsRead("alice", "frontier-7", 1, nil) })...),
			quiet: bulk(12), learning: true},
		{rule: "weights-read-under-break-glass",
			fire:  []entry{{0, weightsRead("erin", "frontier-7", 1, map[string]any{"break_glass": true})}},
			quiet: []entry{{0, weightsRead("erin", "frontier-7", 1, nil)}, {hour, weightsRead("erin", "frontier-7", 1, map[string]any{"break_glass": false})}}},
		{rule: "many-checkpoints-of-one-model",
			fire:  repeat(3, 2*time.Minute, 0, func(i int) audit.Event { return weightsRead("alice", "frontier-7", i+1, nil) }),
			quiet: append(repeat(3, 10*time.Minute, 0, func(i int) audit.Event { return weightsRead("alice", "frontier-7", 1+i%2, nil) }), entry{20 * time.Minute, weightsRead("alice", "other", 3, nil)})},
		{rule: "egress-after-weights-read",
			fire:  []entry{{0, weightsRead("svc:trainer", "frontier-7", 1, nil)}, {hour, egressTransfer("svc:trainer", "bucket.example.net", 300<<20)}},
			quiet: []entry{{0, weightsRead("svc:trainer", "frontier-7", 1, nil)}, {3 * hour, egressTransfer("svc:trainer", "bucket.example.net", 300<<20)}, {3 * hour, egressTransfer("bob", "x.example", 300<<20)}}},
		{rule: "egress-volume",
			fire:  repeat(5, 10*time.Minute, 0, func(int) audit.Event { return egressTransfer("bob", "mirror.example.org", 1<<30) }),
			quiet: repeat(5, 20*time.Minute, 0, func(int) audit.Event { return egressTransfer("bob", "mirror.example.org", 1<<30) })},
		{rule: "egress-new-destination",
			fire: append(repeat(8, 24*hour, 0, func(int) audit.Event { return egressTransfer("bob", "pypi.org", 1000) }),
				entry{8*24*hour + hour, egressTransfer("bob", "paste.example.net", 1000)}),
			quiet: repeat(9, 24*hour, 0, func(int) audit.Event { return egressTransfer("bob", "pypi.org", 1000) })},
		{rule: "probing-then-request",
			fire:  []entry{{0, refused("weights.denied", "mallory")}, {10 * time.Minute, requestEvent("request.create", "mallory", "mallory", nil)}},
			quiet: []entry{{0, refused("weights.denied", "mallory")}, {2 * hour, requestEvent("request.create", "mallory", "mallory", nil)}, {2 * hour, requestEvent("request.create", "alice", "alice", nil)}}},
		{rule: "mutual-approvals",
			fire:  []entry{{0, approve("bob", "carol", "")}, {24 * hour, approve("carol", "bob", "")}, {48 * hour, approve("bob", "carol", "")}, {72 * hour, approve("carol", "bob", "")}},
			quiet: []entry{{0, approve("bob", "carol", "")}, {24 * hour, approve("bob", "carol", "")}, {48 * hour, approve("carol", "bob", "")}, {72 * hour, approve("dave", "bob", "")}}},
		{rule: "approval-from-risky-session",
			fire:  []entry{{0, approve("dave", "alice", "medium")}},
			quiet: []entry{{0, approve("dave", "alice", "low")}, {0, approve("bob", "alice", "")}}},
		{rule: "workload-from-new-network",
			fire: append(repeat(8, 24*hour, 0, func(int) audit.Event { return read("k8s:prod/research/trainer", "10.8.0.0/24") }),
				entry{8*24*hour + hour, read("k8s:prod/research/trainer", "198.51.100.0/24")}),
			quiet: append(repeat(9, 24*hour, 0, func(int) audit.Event { return read("k8s:prod/research/trainer", "10.8.0.0/24") }),
				entry{9 * 24 * hour, read("alice", "198.51.100.0/24")})},
		{rule: "policy-or-change-refused",
			fire:  []entry{{0, systemEvent("policy.refused", audit.ClassEntityManagement, true, map[string]any{"commit": "abc", "reason": "not approved"})}},
			quiet: []entry{{0, systemEvent("policy.load", audit.ClassEntityManagement, false, nil)}}},
		{rule: "ledger-start-refused",
			fire:  []entry{{0, systemEvent("ledger.start_refused", audit.ClassEntityManagement, true, map[string]any{"refused_starts": 2, "reasons": []string{"tamper alarm"}})}},
			quiet: []entry{{0, systemEvent("policy.load", audit.ClassEntityManagement, false, nil)}}},
		{rule: "disabled-user-activity",
			fire: []entry{{0, audit.Event{Code: "user.disable", Class: audit.ClassAuthentication, Activity: audit.ActivityUpdate, Actor: "erin", User: "alice", Message: "disabled"}},
				{hour, egressTransfer("alice", "example.org", 10)}},
			quiet: []entry{{0, audit.Event{Code: "user.disable", Class: audit.ClassAuthentication, Activity: audit.ActivityUpdate, Actor: "erin", User: "alice", Message: "disabled"}},
				{hour, egressTransfer("bob", "example.org", 10)}, {hour, refused("weights.denied", "alice")}, {48 * hour, weightsRead("alice", "frontier-7", 1, nil)}}},
		{rule: "critical-access-outside-hours",
			fire:  []entry{{12 * hour, weightsRead("alice", "frontier-7", 1, nil)}}, // 22:00
			quiet: []entry{{0, weightsRead("alice", "frontier-7", 1, nil)}, {9 * hour, kubeExec("alice")}, {12 * hour, refused("weights.denied", "alice")}}},
		{rule: "exec-into-protected-pod",
			fire:  []entry{{0, kubeExec("oidc:alice")}},
			quiet: []entry{{0, refused("kube.admission.denied", "oidc:alice")}}},
		{rule: "repeated-step-up-failures",
			fire:  []entry{{0, stepUpRefused("alice", 1)}, {5 * time.Minute, stepUpRefused("alice", 4)}},
			quiet: []entry{{0, stepUpRefused("alice", 1)}, {time.Minute, stepUpRefused("alice", 1)}, {20 * time.Minute, stepUpRefused("alice", 1)}}},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			got := runPack(t, tc.rule, tc.fire)
			if len(got) == 0 {
				t.Fatalf("%s did not fire", tc.rule)
			}
			last := got[len(got)-1]
			if last.Learning != tc.learning || len(last.Evidence) == 0 || last.Rule != tc.rule {
				t.Errorf("%s fired %+v, want learning=%v", tc.rule, last, tc.learning)
			}
			if tc.quiet != nil {
				if got := runPack(t, tc.rule, tc.quiet); len(got) != 0 {
					t.Errorf("%s fired on what it must not: %s", tc.rule, fmt.Sprint(got))
				}
			}
		})
	}
}
