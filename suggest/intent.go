package suggest

import (
	"fmt"
	"slices"
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
	return e.read(e.search.reader(e.actions), text)
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
	queue topic table index corpus suite set metric dashboard`)

// needs turns the clauses into needs (rule 6 of reader.go).
func (r *reader) needs(st *readState) {
	in := st.in
	var pending []verbUse
	pendingUnknown := false
	type built struct {
		Need
		inherited, noVerb bool
	}
	var out []built
	for _, c := range st.clauses {
		if len(c.words) == 0 {
			pending = append(pending, c.verbs...)
			pendingUnknown = pendingUnknown || c.unknownVerb
			continue
		}
		vs := append(pending, c.verbs...)
		unknownVerb := pendingUnknown || c.unknownVerb
		pending, pendingUnknown = nil, false
		b := built{Need: Need{Words: dedupe(c.words), Resources: c.resources}}
		if r.vocab != nil {
			b.Resources = append(b.Resources, r.vocab.named(b.Words)...)
		}
		b.Resources = dedupe(b.Resources)
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
		out = append(out, b)
	}
	if len(pending) > 0 && len(out) > 0 {
		last := &out[len(out)-1]
		if last.noVerb {
			last.Actions, last.Joint = r.actions(pending, in.Excluded)
			last.noVerb = false
		} else if len(last.Actions) > 0 {
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
	for _, b := range out {
		if b.noVerb {
			b.Actions = []string{"read"}
			if len(in.Excluded) > 0 && slices.Contains(in.Excluded, "read") {
				b.Actions = nil
			}
		}
		in.Needs = append(in.Needs, b.Need)
	}
}

// actions turns a need's verbs into its preferred actions (every choice of every verb, in
// order, excluded ones left out unless nothing else remains) and its joint actions (each verb's
// first choice, when there are several). Restrictive verbs, when there are any, are the only ones.
func (r *reader) actions(vs []verbUse, excluded []string) (acts, joint []string) {
	restricted := false
	for _, v := range vs {
		restricted = restricted || v.restrictive
	}
	var firsts []string
	for _, v := range vs {
		if restricted && !v.restrictive {
			continue
		}
		firsts = append(firsts, v.acts[0])
		acts = append(acts, v.acts...)
	}
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
func (ix *searchIndex) reader(actions []string) *reader {
	ix.readerOnce.Do(func() { ix.rd = newReader(ix.seg, ix, actions) })
	return ix.rd
}
