// Package detect evaluates detection rules (policy kind DetectionRule) over the ledger: one
// ordered stream of entries, each parsed into an Event (ParseEntry), fed to an Engine that
// returns the rules' firings. Evidence is always ledger sequence numbers, so anyone can prove
// what an alert rests on with inclusion proofs (invariant 5).
//
// The Engine is deterministic: it reads time only from events (never the wall clock), iterates
// rules in name order and keys in a fixed order, and its state (windows, sequences, baselines,
// deduplication) serialises to the same bytes for the same history (Snapshot, Restore). A
// replay of the ledger from a snapshot therefore gives the same firings, which is what lets the
// server's runner resume after a crash without losing or repeating an alert.
//
// Hostile input cannot break evaluation (invariant 7): ParseEntry caps every string, list and
// map of an entry; conditions run under a CEL cost limit; state is bounded (Options.MaxKeys per
// rule, the oldest key evicted, window items per key capped); detection's own entries
// (detect.*, alert.*) are never fed to rules, so an alert cannot trigger itself.
package detect

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"rampart.dev/rampart/policy"
)

// DefaultMaxKeys is Options.MaxKeys when unset.
const DefaultMaxKeys = 100_000

// MaxEvidence bounds the sequence numbers a Firing carries (Count says how many matched).
const MaxEvidence = 100

// maxWindowItems bounds the events one key keeps in a sum or distinct window; beyond it the two
// oldest are merged (the older's value then stays in the window as long as the newer's: the
// rule may fire a little longer, never less).
const maxWindowItems = 4096

// Options tune an Engine.
type Options struct {
	// MaxKeys is how many keys (group_by values) each rule keeps state for; the least recently
	// seen is evicted beyond it. Default DefaultMaxKeys.
	MaxKeys int
}

// Firing is one rule firing for one key.
type Firing struct {
	Rule        string   `json:"rule"`
	Description string   `json:"description,omitempty"`
	Severity    string   `json:"severity"`
	Mitre       []string `json:"mitre,omitempty"`
	// Key is the group_by values, escaped and joined (see Key); empty when the rule has no
	// group_by.
	Key string `json:"key"`
	// Subject is who response acts on: the key's actor (or user) when the rule groups by it,
	// else the event's actor.
	Subject string `json:"subject"`
	// Evidence are the ledger sequence numbers of matching events, at most MaxEvidence (the
	// latest); Count is how many matched.
	Evidence []int64   `json:"evidence"`
	Count    int       `json:"count"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	// Learning marks a baseline firing within the rule's learning period for the key: it is
	// reported, never acted on.
	Learning bool     `json:"learning,omitempty"`
	Mode     string   `json:"mode"`
	Actions  []string `json:"actions,omitempty"`
}

// Stats are counters an Engine keeps, for metrics.
type Stats struct {
	// Evictions counts keys evicted because a rule held MaxKeys keys.
	Evictions uint64
	// EvalErrors counts condition evaluations that failed (cost limit, a missing details key);
	// such an evaluation does not match.
	EvalErrors uint64
	// Events counts events processed (detection's own not included).
	Events uint64
}

// Engine evaluates a set of rules. It is not safe for concurrent use.
type Engine struct {
	rules   []*ruleState
	byCode  map[string][]*ruleState // code → rules that can match it, in name order
	unnamed []*ruleState            // rules pinned to no code
	maxKeys int
	act     policy.EventActivation
	cur     Event
	stats   Stats
	dropped []string
}

type ruleState struct {
	r      *policy.DetectionRule
	keys   map[string]*keyState
	oldest *keyState // least recently seen
	newest *keyState
	// now is the rule's clock: the latest event time it has seen. An event stamped earlier (a
	// replica's clock behind another's) counts at now, so windows only move forward.
	now time.Time
	// groupSubject is the group_by field that names the subject ("actor", "user" or "").
	groupSubject string
	// start is the time of the first event the rule matched: a baseline learns from then.
	start time.Time
}

// keyState is what a rule remembers about one key.
type keyState struct {
	key        string
	prev, next *keyState
	lastFire   time.Time
	fired      bool

	win      []winItem      // threshold: the window's events, oldest first
	sum      int64          // threshold sum: over win
	distinct map[string]int // threshold distinct: value → items in win holding it

	partial []partial // sequence: per step but the last, the latest-starting chain reaching it

	base *baseline
}

type winItem struct {
	t    time.Time
	seq  int64
	val  int64
	vals []string
}

type partial struct {
	ok    bool
	start time.Time
	seqs  []int64
}

type baseline struct {
	first       time.Time
	firstBucket int64
	bucket      int64
	cur         float64
	curEvents   int
	past        float64
	seqs        []int64
	curFirst    time.Time
}

// NewEngine prepares rules for evaluation. Disabled rules are left out.
func NewEngine(rules []*policy.DetectionRule, opt Options) (*Engine, error) {
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = DefaultMaxKeys
	}
	e := &Engine{byCode: map[string][]*ruleState{}, maxKeys: opt.MaxKeys}
	seen := map[string]bool{}
	for _, r := range rules {
		if r == nil {
			return nil, fmt.Errorf("detect: nil rule")
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("detect: rule %q is given twice", r.Name)
		}
		seen[r.Name] = true
		if !r.Enabled {
			continue
		}
		rs := &ruleState{r: r, keys: map[string]*keyState{}}
		last := r.GroupBy
		if r.Sequence != nil {
			last = r.GroupByOf(len(r.Sequence.Steps) - 1)
		}
		for _, g := range last {
			if g == "actor" || (g == "user" && rs.groupSubject == "") {
				rs.groupSubject = g
			}
		}
		e.rules = append(e.rules, rs)
	}
	// Rules stay in name order in every list so firings come out in a fixed order.
	for _, rs := range e.rules {
		if rs.r.Codes() == nil {
			e.unnamed = append(e.unnamed, rs)
		}
	}
	for _, rs := range e.rules {
		for _, c := range rs.r.Codes() {
			if e.byCode[c] == nil {
				e.byCode[c] = []*ruleState{}
			}
		}
	}
	for c := range e.byCode {
		var list []*ruleState
		for _, rs := range e.rules {
			codes := rs.r.Codes()
			if codes == nil || contains(codes, c) {
				list = append(list, rs)
			}
		}
		e.byCode[c] = list
	}
	return e, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats { return e.stats }

// Own reports whether code is one of detection's own entries, which are never fed to rules.
func Own(code string) bool {
	return strings.HasPrefix(code, "detect.") || strings.HasPrefix(code, "alert.")
}

// Process evaluates every rule against ev and returns the firings, in rule name order. It uses
// ev.Time only, never the wall clock.
func (e *Engine) Process(ev Event) []Firing {
	if Own(ev.Code) {
		return nil
	}
	e.stats.Events++
	list, ok := e.byCode[ev.Code]
	if !ok {
		list = e.unnamed
	}
	if len(list) == 0 {
		return nil
	}
	// The engine's own copy: conditions see it through the reused activation, and ev does not
	// escape to the heap on every call.
	e.cur = ev
	capEvent(&e.cur)
	e.act.Reset(&e.cur)
	var out []Firing
	for _, rs := range list {
		if f, ok := e.eval(rs, &e.cur); ok {
			out = append(out, f)
		}
	}
	e.act.Reset(nil)
	e.cur = Event{}
	return out
}

// capEvent holds an event built by a caller (not by ParseEntry) to ParseEntry's caps on
// strings and lists, which the static cost estimate of conditions relies on. Details are
// trusted to be ParseEntry's (or as small).
func capEvent(ev *Event) {
	if ev.Count <= 0 {
		ev.Count = 1
	}
	for _, s := range []*string{&ev.Code, &ev.Actor, &ev.User, &ev.Message, &ev.SrcIP, &ev.DstHost, &ev.DstIP} {
		if len(*s) > MaxFieldBytes {
			*s = capString(*s)
		}
	}
	for _, l := range []*[]string{&ev.Resources, &ev.Privileges} {
		over := len(*l) > MaxListItems
		for _, s := range *l {
			over = over || len(s) > MaxFieldBytes
		}
		if over {
			*l = capList(append([]string(nil), (*l)[:min(len(*l), MaxListItems)]...))
		}
	}
}

func (e *Engine) eval(rs *ruleState, ev *Event) (Firing, bool) {
	r := rs.r
	if r.Sequence != nil {
		return e.evalSequence(rs, ev)
	}
	ok, err := r.Match(&e.act)
	if err != nil {
		e.stats.EvalErrors++
	}
	if !ok {
		return Firing{}, false
	}
	t := rs.clock(ev.Time)
	if rs.start.IsZero() {
		rs.start = t
	}
	ks := e.key(rs, Key(r.GroupBy, ev))
	switch {
	case r.Threshold != nil:
		return e.evalThreshold(rs, ks, ev, t)
	case r.Baseline != nil:
		return e.evalBaseline(rs, ks, ev, t)
	}
	if !rs.fire(ks, t) {
		return Firing{}, false
	}
	f := rs.firing(ks, ev)
	f.Evidence, f.Count, f.First, f.Last = []int64{ev.Seq}, 1, t, t
	return f, true
}

// clock advances the rule's clock and returns the time the event counts at.
func (rs *ruleState) clock(t time.Time) time.Time {
	if t.After(rs.now) {
		rs.now = t
	}
	return rs.now
}

// fire applies deduplication: it reports whether the key may fire at t, and records it.
func (rs *ruleState) fire(ks *keyState, t time.Time) bool {
	if ks.fired && t.Before(ks.lastFire.Add(rs.r.Dedup.Std())) {
		return false
	}
	ks.fired, ks.lastFire = true, t
	return true
}

func (rs *ruleState) firing(ks *keyState, ev *Event) Firing {
	r := rs.r
	f := Firing{Rule: r.Name, Description: r.Description, Severity: r.Severity, Mitre: r.Mitre, Key: ks.key,
		Mode: r.Response.Mode, Actions: r.Response.Actions, Subject: ev.Actor}
	if rs.groupSubject == "user" {
		f.Subject = ev.User
	}
	return f
}

func (e *Engine) evalThreshold(rs *ruleState, ks *keyState, ev *Event, t time.Time) (Firing, bool) {
	th := rs.r.Threshold
	cutoff := t.Add(-th.Window.Std())
	drop := 0
	for drop < len(ks.win) && !ks.win[drop].t.After(cutoff) {
		it := ks.win[drop]
		ks.sum -= it.val
		ks.forget(it.vals)
		drop++
	}
	// Reslicing (not copying) keeps this O(1): append moves the live items to a new array
	// when the old one's capacity runs out.
	ks.win = ks.win[drop:]
	it := winItem{t: t, seq: ev.Seq}
	switch {
	case th.Sum != "":
		it.val = numberField(th.Sum, ev)
		ks.sum += it.val
	case th.Distinct != "":
		it.vals = stringsField(th.Distinct, ev)
		if ks.distinct == nil {
			ks.distinct = map[string]int{}
		}
		for _, v := range it.vals {
			ks.distinct[v]++
		}
	}
	ks.win = append(ks.win, it)
	e.capWindow(rs, ks)
	var hit bool
	switch {
	case th.Sum != "":
		hit = ks.sum > th.Over
	case th.Distinct != "":
		hit = len(ks.distinct) >= th.Count
	default:
		hit = len(ks.win) >= th.Count
	}
	if !hit || !rs.fire(ks, t) {
		return Firing{}, false
	}
	f := rs.firing(ks, ev)
	from := max(0, len(ks.win)-MaxEvidence)
	f.Evidence = make([]int64, 0, len(ks.win)-from)
	for _, w := range ks.win[from:] {
		f.Evidence = append(f.Evidence, w.seq)
	}
	f.Count, f.First, f.Last = len(ks.win), ks.win[0].t, t
	return f, true
}

// capWindow bounds a key's window. A count window keeps its latest max(count, MaxEvidence)
// events, which decides the count exactly; sum and distinct windows merge their two oldest
// items past maxWindowItems.
func (e *Engine) capWindow(rs *ruleState, ks *keyState) {
	th := rs.r.Threshold
	if th.Sum == "" && th.Distinct == "" {
		if limit := max(th.Count, MaxEvidence); len(ks.win) > limit {
			ks.win = ks.win[len(ks.win)-limit:]
		}
		return
	}
	for len(ks.win) > maxWindowItems {
		a, b := ks.win[0], &ks.win[1]
		b.val += a.val
		for _, v := range a.vals {
			if !contains(b.vals, v) {
				b.vals = append(b.vals, v)
				ks.distinct[v]++
			}
		}
		ks.forget(a.vals)
		ks.win = ks.win[1:]
	}
}

func (ks *keyState) forget(vals []string) {
	for _, v := range vals {
		if n := ks.distinct[v] - 1; n > 0 {
			ks.distinct[v] = n
		} else {
			delete(ks.distinct, v)
		}
	}
}

func (e *Engine) evalSequence(rs *ruleState, ev *Event) (Firing, bool) {
	r := rs.r
	if r.Condition != "" {
		ok, err := r.Match(&e.act)
		if err != nil {
			e.stats.EvalErrors++
		}
		if !ok {
			return Firing{}, false
		}
	}
	steps := len(r.Sequence.Steps)
	var matched []bool
	for i := 0; i < steps; i++ {
		ok, err := r.MatchStep(i, &e.act)
		if err != nil {
			e.stats.EvalErrors++
		}
		if ok {
			if matched == nil {
				matched = make([]bool, steps)
			}
			matched[i] = true
		}
	}
	if matched == nil {
		return Firing{}, false
	}
	t := rs.clock(ev.Time)
	within := r.Sequence.Within.Std()
	var fired *partial
	var firedKey *keyState
	// From the last step down, so one event never advances two steps at once. Each step's
	// key is made of its own fields (step_group_by) or the rule's.
	for i := steps - 1; i >= 1; i-- {
		if !matched[i] {
			continue
		}
		ks := rs.keys[Key(r.GroupByOf(i), ev)]
		if ks == nil || ks.partial == nil {
			continue // no earlier step for this key
		}
		prev := ks.partial[i-1]
		if !prev.ok || t.Sub(prev.start) > within {
			continue
		}
		chain := partial{ok: true, start: prev.start, seqs: append(append([]int64(nil), prev.seqs...), ev.Seq)}
		if i == steps-1 {
			fired, firedKey = &chain, ks
			continue
		}
		if cur := ks.partial[i]; !cur.ok || !chain.start.Before(cur.start) {
			ks.partial[i] = chain
		}
	}
	if matched[0] {
		ks := e.key(rs, Key(r.GroupByOf(0), ev))
		if ks.partial == nil {
			ks.partial = make([]partial, steps-1)
		}
		ks.partial[0] = partial{ok: true, start: t, seqs: []int64{ev.Seq}}
	}
	if fired != nil {
		e.key(rs, firedKey.key) // most recently seen
	}
	ks := firedKey
	if fired == nil || !rs.fire(ks, t) {
		return Firing{}, false
	}
	f := rs.firing(ks, ev)
	f.Evidence, f.Count, f.First, f.Last = fired.seqs, len(fired.seqs), fired.start, t
	return f, true
}

func (e *Engine) evalBaseline(rs *ruleState, ks *keyState, ev *Event, t time.Time) (Firing, bool) {
	bl := rs.r.Baseline
	size := bl.Bucket.Std().Nanoseconds()
	b := floorDiv(t.UnixNano(), size)
	st := ks.base
	if st == nil {
		st = &baseline{first: t, firstBucket: b, bucket: b, curFirst: t}
		ks.base = st
	}
	if b != st.bucket {
		st.past += st.cur
		st.bucket, st.cur, st.curEvents, st.seqs, st.curFirst = b, 0, 0, st.seqs[:0], t
	}
	if bl.Stat == policy.BaselineSum {
		st.cur += float64(numberField(bl.Field, ev))
	} else {
		st.cur++
	}
	st.curEvents++
	if len(st.seqs) == MaxEvidence {
		st.seqs = append(st.seqs[:0], st.seqs[1:]...)
	}
	st.seqs = append(st.seqs, ev.Seq)
	mean := 0.0
	if n := st.bucket - st.firstBucket; n > 0 {
		mean = st.past / float64(n)
	}
	learning := t.Sub(rs.start) < bl.Learning.Std()
	// While the rule learns, a key with no past is being learnt, not compared: nothing to
	// report. After, a key never seen has a mean of zero (first seen).
	if st.cur < bl.Min || st.cur <= bl.Factor*mean || (learning && st.bucket == st.firstBucket) || !rs.fire(ks, t) {
		return Firing{}, false
	}
	f := rs.firing(ks, ev)
	f.Evidence = append([]int64(nil), st.seqs...)
	f.Count, f.First, f.Last = st.curEvents, st.curFirst, t
	f.Learning = learning
	return f, true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// key returns the state of key, created (and the oldest key evicted) if new, and marks it the
// most recently seen.
func (e *Engine) key(rs *ruleState, key string) *keyState {
	ks := rs.keys[key]
	if ks == nil {
		if len(rs.keys) >= e.maxKeys {
			old := rs.oldest
			rs.unlink(old)
			delete(rs.keys, old.key)
			e.stats.Evictions++
		}
		ks = &keyState{key: key}
		rs.keys[key] = ks
	} else if rs.newest == ks {
		return ks
	} else {
		rs.unlink(ks)
	}
	rs.pushNewest(ks)
	return ks
}

func (rs *ruleState) unlink(ks *keyState) {
	if ks.prev != nil {
		ks.prev.next = ks.next
	} else {
		rs.oldest = ks.next
	}
	if ks.next != nil {
		ks.next.prev = ks.prev
	} else {
		rs.newest = ks.prev
	}
	ks.prev, ks.next = nil, nil
}

func (rs *ruleState) pushNewest(ks *keyState) {
	ks.prev = rs.newest
	if rs.newest != nil {
		rs.newest.next = ks
	} else {
		rs.oldest = ks
	}
	rs.newest = ks
}

// Key returns the key of ev under group_by: each field's value, with '\' and '|' escaped by a
// backslash, joined by '|'. A list field's values are joined by ','; a missing details key is
// empty.
func Key(groupBy []string, ev *Event) string {
	switch len(groupBy) {
	case 0:
		return ""
	case 1:
		return escapeKey(fieldString(groupBy[0], ev))
	}
	var b strings.Builder
	for i, g := range groupBy {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(escapeKey(fieldString(g, ev)))
	}
	return b.String()
}

func escapeKey(s string) string {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		plain = s[i] != '\\' && s[i] != '|'
	}
	if plain {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`).Replace(s)
}

// fieldString is a field's value as text, for keys.
func fieldString(name string, ev *Event) string {
	switch name {
	case "code":
		return ev.Code
	case "actor":
		return ev.Actor
	case "user":
		return ev.User
	case "message":
		return ev.Message
	case "src_ip":
		return ev.SrcIP
	case "dst_host":
		return ev.DstHost
	case "dst_ip":
		return ev.DstIP
	case "resources", "privileges":
		return strings.Join(stringsField(name, ev), ",")
	case "failed":
		return strconv.FormatBool(ev.Failed)
	}
	if d, ok := strings.CutPrefix(name, "details."); ok {
		return detailString(ev.Details[d])
	}
	return strconv.FormatInt(numberField(name, ev), 10)
}

func detailString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// stringsField is a field's values, for distinct: a list field's items, else its one value.
func stringsField(name string, ev *Event) []string {
	switch name {
	case "resources":
		return ev.Resources
	case "privileges":
		return ev.Privileges
	}
	if d, ok := strings.CutPrefix(name, "details."); ok {
		if l, ok := ev.Details[d].([]any); ok {
			out := make([]string, 0, len(l))
			for _, v := range l {
				out = append(out, detailString(v))
			}
			return out
		}
	}
	return []string{fieldString(name, ev)}
}

// numberField is a number field's value, for sum (0 when it is not a number).
func numberField(name string, ev *Event) int64 {
	switch name {
	case "seq":
		return ev.Seq
	case "class_uid":
		return int64(ev.ClassUID)
	case "activity_id":
		return int64(ev.ActivityID)
	case "severity_id":
		return int64(ev.SeverityID)
	case "dst_port":
		return int64(ev.DstPort)
	case "bytes_out":
		return ev.BytesOut
	case "bytes_in":
		return ev.BytesIn
	case "count":
		return ev.Count
	}
	if d, ok := strings.CutPrefix(name, "details."); ok {
		if f, ok := ev.Details[d].(float64); ok {
			return int64(f)
		}
	}
	return 0
}
