package detect

import (
	"encoding/json"
	"fmt"
	"time"
)

// snapshotVersion is the version of the snapshot format Snapshot writes and Restore reads.
const snapshotVersion = 1

type snapshotJSON struct {
	Version int            `json:"version"`
	Rules   []ruleSnapshot `json:"rules"`
}

type ruleSnapshot struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Now    int64  `json:"now"`
	Start  int64  `json:"start,omitempty"`
	// Keys are in the order they were last seen, oldest first (the eviction order).
	Keys []keySnapshot `json:"keys"`
}

type keySnapshot struct {
	Key      string            `json:"key"`
	Fired    bool              `json:"fired,omitempty"`
	LastFire int64             `json:"last_fire,omitempty"`
	Win      []winSnapshot     `json:"win,omitempty"`
	Partial  []partialSnapshot `json:"partial,omitempty"`
	Base     *baseSnapshot     `json:"base,omitempty"`
}

type winSnapshot struct {
	T    int64    `json:"t"`
	Seq  int64    `json:"seq"`
	Val  int64    `json:"val,omitempty"`
	Vals []string `json:"vals,omitempty"`
}

type partialSnapshot struct {
	OK    bool    `json:"ok,omitempty"`
	Start int64   `json:"start,omitempty"`
	Seqs  []int64 `json:"seqs,omitempty"`
}

type baseSnapshot struct {
	First       int64   `json:"first"`
	FirstBucket int64   `json:"first_bucket"`
	Bucket      int64   `json:"bucket"`
	Cur         float64 `json:"cur"`
	CurEvents   int     `json:"cur_events"`
	Past        float64 `json:"past"`
	Seqs        []int64 `json:"seqs,omitempty"`
	CurFirst    int64   `json:"cur_first"`
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Snapshot returns all the engine's state (windows, sequences, baselines, deduplication) as
// versioned JSON. The same history gives the same bytes.
func (e *Engine) Snapshot() ([]byte, error) {
	s := snapshotJSON{Version: snapshotVersion, Rules: make([]ruleSnapshot, 0, len(e.rules))}
	for _, rs := range e.rules {
		r := ruleSnapshot{Name: rs.r.Name, Digest: rs.r.Digest, Now: nanos(rs.now), Start: nanos(rs.start), Keys: make([]keySnapshot, 0, len(rs.keys))}
		for ks := rs.oldest; ks != nil; ks = ks.next {
			k := keySnapshot{Key: ks.key, Fired: ks.fired, LastFire: nanos(ks.lastFire)}
			for _, w := range ks.win {
				k.Win = append(k.Win, winSnapshot{T: nanos(w.t), Seq: w.seq, Val: w.val, Vals: w.vals})
			}
			for _, p := range ks.partial {
				k.Partial = append(k.Partial, partialSnapshot{OK: p.ok, Start: nanos(p.start), Seqs: p.seqs})
			}
			if b := ks.base; b != nil {
				k.Base = &baseSnapshot{First: nanos(b.first), FirstBucket: b.firstBucket, Bucket: b.bucket, Cur: b.cur,
					CurEvents: b.curEvents, Past: b.past, Seqs: b.seqs, CurFirst: nanos(b.curFirst)}
			}
			r.Keys = append(r.Keys, k)
		}
		s.Rules = append(s.Rules, r)
	}
	return json.Marshal(s)
}

// Restore replaces the engine's state with a snapshot's. State saved for a rule whose name is
// not among the engine's rules, or whose shape digest differs (its condition, grouping, window
// or kind changed), is left out: that rule starts afresh (Dropped names them). A snapshot of
// another format is an error, and the engine's state is then unchanged.
func (e *Engine) Restore(b []byte) error {
	var s snapshotJSON
	var dropped []string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("detect: the snapshot is not valid: %w", err)
	}
	if s.Version != snapshotVersion {
		return fmt.Errorf("detect: the snapshot is version %d; this Rampart reads version %d (replay the ledger instead)", s.Version, snapshotVersion)
	}
	byName := map[string]*ruleState{}
	for _, rs := range e.rules {
		byName[rs.r.Name] = rs
	}
	fresh := map[*ruleState]*ruleState{}
	for _, r := range s.Rules {
		rs := byName[r.Name]
		if rs == nil || rs.r.Digest != r.Digest {
			dropped = append(dropped, r.Name)
			continue
		}
		if fresh[rs] != nil {
			return fmt.Errorf("detect: the snapshot holds rule %q twice", r.Name)
		}
		n := &ruleState{r: rs.r, groupSubject: rs.groupSubject, keys: map[string]*keyState{}, now: fromNanos(r.Now), start: fromNanos(r.Start)}
		steps := 0
		if rs.r.Sequence != nil {
			steps = len(rs.r.Sequence.Steps) - 1
		}
		for _, k := range r.Keys {
			if n.keys[k.Key] != nil {
				return fmt.Errorf("detect: the snapshot holds key %q of rule %q twice", k.Key, r.Name)
			}
			ks := &keyState{key: k.Key, fired: k.Fired, lastFire: fromNanos(k.LastFire)}
			for _, w := range k.Win {
				ks.win = append(ks.win, winItem{t: fromNanos(w.T), seq: w.Seq, val: w.Val, vals: w.Vals})
				ks.sum += w.Val
				for _, v := range w.Vals {
					if ks.distinct == nil {
						ks.distinct = map[string]int{}
					}
					ks.distinct[v]++
				}
			}
			if len(k.Partial) > 0 {
				if len(k.Partial) != steps {
					return fmt.Errorf("detect: the snapshot's sequence state of rule %q has %d steps, not %d", r.Name, len(k.Partial), steps)
				}
				for _, p := range k.Partial {
					ks.partial = append(ks.partial, partial{ok: p.OK, start: fromNanos(p.Start), seqs: p.Seqs})
				}
			}
			if b := k.Base; b != nil {
				ks.base = &baseline{first: fromNanos(b.First), firstBucket: b.FirstBucket, bucket: b.Bucket, cur: b.Cur,
					curEvents: b.CurEvents, past: b.Past, seqs: b.Seqs, curFirst: fromNanos(b.CurFirst)}
			}
			n.keys[k.Key] = ks
			n.pushNewest(ks)
		}
		fresh[rs] = n
	}
	for _, rs := range e.rules {
		if n := fresh[rs]; n != nil {
			rs.keys, rs.oldest, rs.newest, rs.now, rs.start = n.keys, n.oldest, n.newest, n.now, n.start
		} else {
			rs.keys, rs.oldest, rs.newest, rs.now, rs.start = map[string]*keyState{}, nil, nil, time.Time{}, time.Time{}
		}
	}
	e.dropped = dropped
	return nil
}

// Dropped returns the rules whose saved state the last Restore left out (renamed, removed or
// reshaped rules).
func (e *Engine) Dropped() []string { return e.dropped }
