package detect

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
	"unicode/utf8"

	"rampart.dev/rampart/policy"
)

// Event is one ledger entry as detection rules see it (the CEL variable `event`). Its shape is
// declared by package policy, which compiles the rules.
type Event = policy.DetectionEvent

// Caps on what ParseEntry keeps of an entry. A ledger entry is written by Rampart, but its
// strings carry what callers sent (names, messages, hosts): whatever they hold, evaluation stays
// bounded. Longer strings are cut (at a character boundary), longer lists and maps are cut,
// deeper details are dropped.
const (
	MaxEntryBytes    = 1 << 20
	MaxFieldBytes    = policy.DetectionMaxFieldBytes
	MaxListItems     = policy.DetectionMaxListItems
	MaxDetailsKeys   = policy.DetectionMaxMapKeys
	MaxDetailsDepth  = 4
	maxDetailsBudget = 4096 // values in all of details
)

type entryJSON struct {
	Time       int64  `json:"time"`
	TimeDT     string `json:"time_dt"`
	ClassUID   int    `json:"class_uid"`
	ActivityID int    `json:"activity_id"`
	SeverityID int    `json:"severity_id"`
	StatusID   int    `json:"status_id"`
	Message    string `json:"message"`
	Metadata   struct {
		EventCode string `json:"event_code"`
		Sequence  *int64 `json:"sequence"`
	} `json:"metadata"`
	Actor struct {
		User struct {
			Name string `json:"name"`
		} `json:"user"`
	} `json:"actor"`
	User struct {
		Name string `json:"name"`
	} `json:"user"`
	Resources []struct {
		Name string `json:"name"`
	} `json:"resources"`
	Privileges  []string `json:"privileges"`
	SrcEndpoint struct {
		IP string `json:"ip"`
	} `json:"src_endpoint"`
	DstEndpoint struct {
		Hostname string `json:"hostname"`
		IP       string `json:"ip"`
		Port     int    `json:"port"`
	} `json:"dst_endpoint"`
	Count   *int64 `json:"count"`
	Traffic struct {
		BytesOut int64 `json:"bytes_out"`
		BytesIn  int64 `json:"bytes_in"`
	} `json:"traffic"`
	Unmapped map[string]any `json:"unmapped"`
}

// ParseEntry decodes a ledger entry's canonical JSON into an Event. seq is the entry's sequence
// number; when it is negative, the entry's own metadata.sequence is used (an export line).
// Hostile values are capped (MaxFieldBytes, MaxListItems, MaxDetailsKeys, MaxDetailsDepth),
// never refused: detection must see an entry whatever it holds. Only an entry that is not a
// JSON object of the ledger's shape is an error.
func ParseEntry(seq int64, entry []byte) (Event, error) {
	if len(entry) > MaxEntryBytes {
		return Event{}, fmt.Errorf("ledger entry %d is %d bytes; the limit is %d", seq, len(entry), MaxEntryBytes)
	}
	var j entryJSON
	if err := json.Unmarshal(entry, &j); err != nil {
		return Event{}, fmt.Errorf("ledger entry %d is not a ledger entry's JSON: %w", seq, err)
	}
	if seq < 0 {
		if j.Metadata.Sequence == nil {
			return Event{}, fmt.Errorf("ledger entry has no metadata.sequence; pass entries as `rampart audit export` writes them")
		}
		seq = *j.Metadata.Sequence
	}
	if j.Metadata.EventCode == "" {
		return Event{}, fmt.Errorf("ledger entry %d has no metadata.event_code", seq)
	}
	ev := Event{
		Seq:        seq,
		Code:       capString(j.Metadata.EventCode),
		ClassUID:   j.ClassUID,
		ActivityID: j.ActivityID,
		SeverityID: j.SeverityID,
		Failed:     j.StatusID == 2,
		Actor:      capString(j.Actor.User.Name),
		User:       capString(j.User.Name),
		Message:    capString(j.Message),
		Privileges: capList(j.Privileges),
		SrcIP:      capString(j.SrcEndpoint.IP),
		DstHost:    capString(j.DstEndpoint.Hostname),
		DstIP:      capString(j.DstEndpoint.IP),
		DstPort:    j.DstEndpoint.Port,
		BytesOut:   j.Traffic.BytesOut,
		BytesIn:    j.Traffic.BytesIn,
		Count:      1,
	}
	if j.Count != nil && *j.Count > 0 {
		ev.Count = *j.Count
	}
	if t, err := time.Parse(time.RFC3339Nano, j.TimeDT); err == nil {
		ev.Time = t.UTC()
	} else {
		ev.Time = time.UnixMilli(j.Time).UTC()
	}
	for i, r := range j.Resources {
		if i == MaxListItems {
			break
		}
		ev.Resources = append(ev.Resources, capString(r.Name))
	}
	if len(j.Unmapped) > 0 {
		budget := maxDetailsBudget
		ev.Details, _ = capValue(j.Unmapped, 1, &budget).(map[string]any)
	}
	if ev.SrcIP == "" {
		for _, k := range []string{"client_ip", "ip", "src_ip"} {
			if s, ok := ev.Details[k].(string); ok && s != "" {
				ev.SrcIP = s
				break
			}
		}
	}
	return ev, nil
}

func capString(s string) string {
	if len(s) <= MaxFieldBytes {
		return s
	}
	n := MaxFieldBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func capList(l []string) []string {
	if len(l) > MaxListItems {
		l = l[:MaxListItems]
	}
	for i, s := range l {
		l[i] = capString(s)
	}
	return l
}

// capValue copies a decoded JSON value within the caps; what is beyond them is left out.
func capValue(v any, depth int, budget *int) any {
	if *budget <= 0 {
		return nil
	}
	*budget--
	switch x := v.(type) {
	case string:
		return capString(x)
	case map[string]any:
		if depth > MaxDetailsDepth {
			return nil
		}
		// Keys in order, so what the caps keep is the same on every replay.
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(map[string]any, min(len(x), MaxDetailsKeys))
		for _, k := range keys {
			val := x[k]
			if len(out) == MaxDetailsKeys {
				break
			}
			if c := capValue(val, depth+1, budget); c != nil {
				out[capString(k)] = c
			}
		}
		return out
	case []any:
		if depth > MaxDetailsDepth {
			return nil
		}
		out := make([]any, 0, min(len(x), MaxListItems))
		for i, val := range x {
			if i == MaxListItems {
				break
			}
			if c := capValue(val, depth+1, budget); c != nil {
				out = append(out, c)
			}
		}
		return out
	default: // float64, bool, nil
		return x
	}
}
