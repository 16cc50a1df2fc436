package detect_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
)

func TestParseEntry(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 4, 5, 123456789, time.UTC)
	b, err := audit.Encode(42, audit.Event{Code: "egress.transfer", Class: audit.ClassNetworkActivity, Activity: 6, Time: at,
		Actor: "svc:trainer", User: "alice", Message: "tunnel closed", Resources: []string{"model/x"}, Privileges: []string{"r"},
		Details: map[string]any{"tunnel_id": "t1", "grant_id": "g1", "nested": map[string]any{"k": 1}},
		Extra: map[string]any{"src_endpoint": map[string]any{"ip": "10.0.0.1"},
			"dst_endpoint": map[string]any{"hostname": "example.org", "ip": "93.184.216.34", "port": 443},
			"traffic":      map[string]any{"bytes_out": 1 << 40, "bytes_in": 7}}, Failed: true})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := detect.ParseEntry(-1, b)
	if err != nil {
		t.Fatal(err)
	}
	want := detect.Event{Seq: 42, Time: at, Code: "egress.transfer", ClassUID: 4001, ActivityID: 6, SeverityID: 1, Failed: true,
		Actor: "svc:trainer", User: "alice", Message: "tunnel closed", Resources: []string{"model/x"}, Privileges: []string{"r"},
		SrcIP: "10.0.0.1", DstHost: "example.org", DstIP: "93.184.216.34", DstPort: 443, BytesOut: 1 << 40, BytesIn: 7, Count: 1,
		Details: map[string]any{"tunnel_id": "t1", "grant_id": "g1", "nested": map[string]any{"k": 1.0}}}
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("got  %+v\nwant %+v", ev, want)
	}
	if ev, _ := detect.ParseEntry(7, b); ev.Seq != 7 {
		t.Errorf("seq %d, want the one given", ev.Seq)
	}
	// A summary of aggregated refusals stands for its OCSF count.
	sum, _ := audit.Encode(9, audit.Event{Code: "signin.refused", Class: audit.ClassAuthentication, Activity: 1, Time: at, Actor: "alice", Failed: true,
		Extra: map[string]any{"count": 41, "start_time": 1, "end_time": 2}})
	if ev, _ := detect.ParseEntry(-1, sum); ev.Count != 41 {
		t.Errorf("count %d, want 41", ev.Count)
	}
	for _, bad := range []string{``, `[]`, `{"metadata": {}}`, `{"metadata": {"event_code": "x"}}`} {
		if _, err := detect.ParseEntry(-1, []byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// Hostile values are capped, never refused, and the caps keep the same part on every parse.
func TestParseEntryCaps(t *testing.T) {
	deep := map[string]any{}
	d := deep
	for i := 0; i < 50; i++ {
		n := map[string]any{}
		d["d"] = n
		d = n
	}
	wide := map[string]any{}
	for i := 0; i < 1000; i++ {
		wide[strings.Repeat("k", i%50)+string(rune('a'+i%26))+string(rune('a'+i/26%26))] = i
	}
	res := make([]map[string]any, 1000)
	for i := range res {
		res[i] = map[string]any{"name": "r"}
	}
	entry := map[string]any{"metadata": map[string]any{"event_code": "x", "sequence": 1}, "time": 0,
		"message": strings.Repeat("é", detect.MaxFieldBytes), "resources": res,
		"unmapped": map[string]any{"deep": deep, "wide": wide}}
	b, _ := json.Marshal(entry)
	ev, err := detect.ParseEntry(-1, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Message) > detect.MaxFieldBytes || !strings.HasPrefix(ev.Message, "é") || strings.ContainsRune(ev.Message, '\uFFFD') {
		t.Errorf("message of %d bytes", len(ev.Message))
	}
	if len(ev.Resources) != detect.MaxListItems {
		t.Errorf("%d resources", len(ev.Resources))
	}
	if n := len(ev.Details["wide"].(map[string]any)); n != detect.MaxDetailsKeys {
		t.Errorf("%d keys", n)
	}
	depth := 0
	for m, ok := ev.Details["deep"].(map[string]any); ok; m, ok = m["d"].(map[string]any) {
		depth++
	}
	if depth > detect.MaxDetailsDepth {
		t.Errorf("details %d deep", depth)
	}
	again, _ := detect.ParseEntry(-1, b)
	if !reflect.DeepEqual(ev, again) {
		t.Error("two parses of one entry differ")
	}
}

// FuzzParseEntry: any bytes give an event or an error, never a panic, and an event within the
// caps.
func FuzzParseEntry(f *testing.F) {
	b, _ := audit.Encode(1, audit.Event{Code: "weights.read", Class: audit.ClassDatastoreActivity, Activity: 2, Time: time.Unix(1, 0), Actor: "a",
		Details: map[string]any{"x": []any{1, "y", map[string]any{"z": true}}}})
	f.Add(b)
	f.Add([]byte(`{"metadata":{"event_code":"x","sequence":3},"unmapped":{"a":[[[[[[1]]]]]]},"time_dt":"bad"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := detect.ParseEntry(-1, data)
		if err != nil {
			return
		}
		for _, s := range append([]string{ev.Code, ev.Actor, ev.User, ev.Message, ev.SrcIP, ev.DstHost, ev.DstIP}, ev.Resources...) {
			if len(s) > detect.MaxFieldBytes {
				t.Fatalf("a field of %d bytes", len(s))
			}
		}
		if len(ev.Resources) > detect.MaxListItems || len(ev.Privileges) > detect.MaxListItems || len(ev.Details) > detect.MaxDetailsKeys {
			t.Fatal("a list over the cap")
		}
		e := fuzzEngine(t)
		e.Process(ev)
	})
}

func fuzzEngine(t *testing.T) *detect.Engine {
	return engine(t, "  severity: low\n  condition: 'event.details.exists(k, k.size() > 0) || \"x\" in event.resources'\n  group_by: [actor, details.x]\n  threshold: {distinct: details.x, count: 1, window: 1m}\n")
}
