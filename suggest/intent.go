package suggest

import (
	"fmt"
	"slices"
	"strings"

	"rampart.dev/rampart/policy"
)

// Need is one thing a request asks for: actions on the resource(s) some words describe.
type Need struct {
	// Actions wanted, first choice first: later ones are tried only when no role grants the
	// first on the resource found ("run the pipeline" → trigger, "run a shell" → exec). Empty
	// when the need's verb was not understood (its word is in Intent.Unknown).
	Actions []string `json:"actions"`
	// Joint are actions wanted together ("read and write"): all must be granted.
	Joint []string `json:"joint,omitempty"`
	// Words are the normalised content words that describe the resource (English stems and
	// Chinese words; misspellings corrected, Chinese glossary nouns folded to English).
	Words []string `json:"words"`
	// Resources are the catalogue resources the words name whole: a resource's full name, the
	// last segment of its name ("frontier-7") or one of its aliases.
	Resources []string `json:"resources,omitempty"`
}

// Intent is what a sentence asks for, read deterministically (reader.go; docs/suggest-reading.md).
type Intent struct {
	Text string `json:"text"`
	Lang string `json:"lang"` // "en", "zh" or "mixed"
	// Needs: one per distinct thing asked for. At least one when the reading succeeded.
	Needs []Need `json:"needs"`
	// Excluded are actions the sentence says it does not want ("not write", "no shell", "不要删除").
	Excluded []string `json:"excluded,omitempty"`
	// Unknown are content words that match nothing: no verb of the lexicon, no word of the
	// catalogue, no stop word, no misspelling of either; as written.
	Unknown []string `json:"unknown,omitempty"`
	// Emergency is true when the sentence says it is an emergency, incident or outage (and does
	// not deny it: "not an emergency").
	Emergency bool `json:"emergency,omitempty"`
	// Actions and Words: the first need's, kept for callers of the old shape.
	Actions []string `json:"actions"`
	Words   []string `json:"words"`
	// joint and prefs are the first need's joint and preferred actions, for Suggest.
	joint []string
	prefs []string
}

// Read reads a sentence against the engine's catalogue: its needs, excluded actions, unknown
// words and whether it is an emergency. It fails only for unusable input: too long, or no word
// that could describe a resource.
func (e *Engine) Read(text string) (Intent, error) {
	return e.read(e.search.reader(e.actions, e.pol), text)
}

// ParseIntent reads a sentence without a catalogue: every content word counts as known, so
// Unknown stays empty and no misspelling is corrected. Engine.Read is the full reading.
func ParseIntent(text string) (Intent, error) {
	return (*Engine)(nil).read(newReader(defaultSegmenter(), nil, nil), text)
}

func (e *Engine) read(r *reader, text string) (Intent, error) {
	if len(text) > maxQueryLen {
		return Intent{Text: text}, fmt.Errorf("intent is %d bytes; the limit is %d", len(text), maxQueryLen)
	}
	in := r.read(text)
	if len(in.Needs) == 0 {
		return in, fmt.Errorf("%q names no resource to look for; say what you need access to (a model, dataset, namespace, secret, pipeline or host)", text)
	}
	first := in.Needs[0]
	in.Actions, in.Words = first.Actions, first.Words
	in.prefs, in.joint = first.Actions, first.Joint
	if len(in.joint) == 0 && len(first.Actions) > 0 {
		in.joint = first.Actions[:1]
	}
	if len(in.prefs) == 0 {
		in.prefs, in.joint = []string{"read"}, []string{"read"}
	}
	return in, nil
}

// headNouns are words that say what kind of thing a phrase is about; a coordinated phrase
// without one borrows the last phrase's ("the base and the instruct checkpoints").
var headNouns = setOf(`weight checkpoint model dataset data bucket namespace secret key pipeline api
	host cluster database db log credential token repo repository image endpoint server service
	queue topic table index corpus suite set metric dashboard 检查点 权重 模型 数据集 数据 日志 密钥
	流水线 命名空间 集群 数据库 桶 存储桶 队列 镜像 接口 看板 语料`)

// needs turns the clauses into needs (rule 6 of reader.go).
func (r *reader) needs(st *readState) {
	in := st.in
	var pending []verbUse
	var context []string // words of context clauses, for the next need
	pendingUnknown, pendingPronoun := false, false
	type built struct {
		Need
		inherited, noVerb bool
	}
	var out []built
	for _, c := range st.clauses {
		if len(c.verbs) == 0 && (c.excluded || c.emergency || c.state) {
			context = append(context, c.words...)
			continue
		}
		if len(c.words) == 0 {
			pending = append(pending, c.verbs...)
			pendingUnknown = pendingUnknown || c.unknownVerb
			pendingPronoun = pendingPronoun || c.pronoun
			if len(c.verbs) > 0 && len(context) > 0 {
				// "rather than a shell in eval-staging, just deploy": the context is the object.
				c = &clause{verbs: c.verbs, words: context, unknownVerb: c.unknownVerb}
				context, pending = nil, pending[:len(pending)-len(c.verbs)]
			} else {
				continue
			}
		}
		if len(c.verbs) == 0 && len(pending) == 0 && c.afterComma && c == st.clauses[len(st.clauses)-1] && len(out) > 0 {
			// "view pods in serve-prod, the production namespace": an apposition.
			last := &out[len(out)-1]
			last.Words = dedupe(append(last.Words, c.words...))
			continue
		}
		vs := append(pending, c.verbs...)
		unknownVerb := pendingUnknown || c.unknownVerb
		pending, pendingUnknown, pendingPronoun = nil, false, false
		b := built{Need: Need{Words: dedupe(append(context, c.words...)), Resources: c.resources}}
		context = nil
		switch {
		case len(vs) > 0:
			b.Actions, b.Joint = r.actions(vs, in.Excluded)
		case unknownVerb:
			// The verb was not understood: no actions, never "read".
		case len(out) > 0 && len(out[len(out)-1].Actions) > 0:
			prev := out[len(out)-1]
			b.Actions, b.Joint, b.inherited = prev.Actions, prev.Joint, true
		default:
			b.noVerb = true
		}
		// A need named only by kind ("and save the new checkpoints") is about the previous
		// need's thing.
		if len(out) > 0 && !b.inherited && onlyHeads(b.Words) {
			var own []string
			for _, w := range out[len(out)-1].Words {
				if !headNouns[w] {
					own = append(own, w)
				}
			}
			b.Words = dedupe(append(own, b.Words...))
		}
		out = append(out, b)
	}
	if len(pending) > 0 && len(out) > 0 {
		last := &out[len(out)-1]
		switch {
		case last.noVerb:
			last.Actions, last.Joint = r.actions(pending, in.Excluded)
			last.noVerb = false
		case len(last.Actions) > 0 && pendingPronoun:
			// "read the weights and write them": wanted together on the same thing.
			acts, joint := r.actions(pending, in.Excluded)
			if len(last.Joint) == 0 {
				last.Joint = last.Actions[:1]
			}
			last.Joint = dedupe(append(slices.Clone(last.Joint), joint...))
			if len(joint) == 0 && len(acts) > 0 {
				last.Joint = dedupe(append(last.Joint, acts[0]))
			}
			last.Actions = dedupe(append(slices.Clone(last.Actions), acts...))
		}
	}
	if len(out) == 0 && len(context) > 0 && len(pending) > 0 {
		b := built{Need: Need{Words: dedupe(context)}}
		b.Actions, b.Joint = r.actions(pending, in.Excluded)
		out = append(out, b)
	}
	// A trailing head noun is shared back to coordinated phrases without one.
	for i := len(out) - 1; i > 0; i-- {
		if !out[i].inherited {
			continue
		}
		var heads []string
		for _, w := range out[i].Words {
			if headNouns[w] {
				heads = append(heads, w)
			}
		}
		for j := i - 1; j >= 0 && len(heads) > 0; j-- {
			has := false
			for _, w := range out[j].Words {
				has = has || headNouns[w]
			}
			if !has {
				out[j].Words = dedupe(append(out[j].Words, heads...))
			}
			if !out[j].inherited {
				break
			}
		}
	}
	// A need named only by generic words ("排查一个慢请求" after "查看线上日志") says how, not what,
	// when another need names something.
	if len(out) > 1 {
		var kept []built
		for _, b := range out {
			generic := len(b.Words) > 0
			for _, w := range b.Words {
				generic = generic && genericNouns[w] && !st.unkWords[w]
			}
			if !generic {
				kept = append(kept, b)
			}
		}
		if len(kept) > 0 {
			out = kept
		}
	}
	wanted := map[string]bool{}
	for i := range out {
		b := &out[i]
		if b.noVerb {
			b.Actions = []string{"read"}
		}
		if r.vocab != nil {
			b.Resources = append(b.Resources, r.vocab.named(b.Words)...)
		}
		b.Resources = dedupe(b.Resources)
		for _, w := range b.Words {
			if st.unkWords[w] {
				b.Resources = nil // the need is not resolved: a word of it is unknown
				break
			}
		}
		if len(b.Actions) > 0 {
			wanted[b.Actions[0]] = true
		}
		for _, a := range b.Joint {
			wanted[a] = true
		}
		in.Needs = append(in.Needs, b.Need)
	}
	// A verb wanted by a need is not excluded by a synonym's negation ("look at the classifier,
	// no training": training reads too, but reading is what is asked).
	in.Excluded = slices.DeleteFunc(in.Excluded, func(a string) bool { return wanted[a] })
	if len(in.Excluded) == 0 {
		in.Excluded = nil
	}
}

// onlyHeads reports whether every word is a head noun (and there is one).
func onlyHeads(words []string) bool {
	for _, w := range words {
		if !headNouns[w] {
			return false
		}
	}
	return len(words) > 0
}

// actions turns a need's verbs into its preferred actions (every choice of every verb, in
// order, excluded ones left out unless nothing else remains) and its joint actions (each verb's
// first choice, when there are several). Restrictive verbs, when there are any, are the only ones.
func (r *reader) actions(vs []verbUse, excluded []string) (acts, joint []string) {
	restricted := false
	for _, v := range vs {
		restricted = restricted || v.restrictive
	}
	strong := false
	for _, v := range vs {
		strong = strong || !v.weak
	}
	var firsts, weak []string
	for _, v := range vs {
		if restricted && !v.restrictive {
			continue
		}
		if v.weak && strong {
			weak = append(weak, v.acts...)
			continue
		}
		firsts = append(firsts, v.acts[0])
		acts = append(acts, v.acts...)
	}
	acts = append(acts, weak...)
	acts, firsts = dedupe(acts), dedupe(firsts)
	var kept []string
	for _, a := range acts {
		if !slices.Contains(excluded, a) {
			kept = append(kept, a)
		}
	}
	if len(kept) > 0 {
		acts = kept
	}
	if len(firsts) > 1 {
		joint = firsts
	}
	return acts, joint
}

func dedupe(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// reader returns the index's reader for a policy's actions (built once per engine).
func (ix *searchIndex) reader(actions []string, pol *policy.Policy) *reader {
	ix.readerOnce.Do(func() {
		ix.rd = newReader(ix.seg, ix, actions)
		for _, r := range pol.Roles() {
			ix.rd.roles[strings.ToLower(r.Name)] = true
		}
	})
	return ix.rd
}
