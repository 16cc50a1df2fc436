package suggest

import (
	"slices"
	"sort"
)

// The reader: how a sentence becomes an Intent. docs/suggest-reading.md says the same in words;
// keep them together.
//
//  1. The sentence is scanned into Latin words (names keep their inner - . _ / :), Chinese words
//     (segment.go) and clause punctuation.
//  2. Clauses end at punctuation (, ; . ! ? ， ； 。 、), at conjunctions (and, also, plus, then,
//     以及, 和, 并且, 还要, 同时, …) and at "but", "但", "而是", ….
//  3. A negator (not, no, don't, never, without, rather than, instead of, no need to, 不, 不要,
//     不用, 无需, 不需要, 别, …) opens a negative scope, a restrictor (only, just, nothing but, 只,
//     仅, 只要, 只需, …) a restrictive one. A scope runs to the end of its clause, or to the next
//     negator or restrictor; "or"/"nor"/"或" do not end it ("not write or delete"). Verbs in a
//     negative scope are Excluded; nouns in a negative scope that has no verb are dropped ("the
//     weights, not the datasets"). When a need has verbs from a restrictive scope, those are its
//     only actions.
//  4. A lexicon word is a verb only by position: at a clause's start after optional subject and
//     modal words ("I need to", "can we", "please", "我想", "帮我"), after "to", a negator, a
//     restrictor or a conjunction, directly after another verb (base forms only: "read write"), or
//     anywhere right before "access"/"permission"/"权限". It is a noun after a determiner or
//     possessive ("the release", "our evals"), as an -s form ("evals", "runs"), and when it is one
//     of the noun-also words (eval, run, release, build, deploy, …) right before a compound head
//     ("eval results", "release pipeline", "deploy key"). Chinese verbs are verbs wherever they
//     stand, except after 的 and noun-also ones before a compound head (发布流水线).
//  5. Every other word is a stop word (never searched, never unknown), a duration ("2 hours",
//     "8h", "3天"), an emergency word, or a content word. A content word is kept when the
//     catalogue knows it; a name-like word (with a digit or inner - . _ / :) only when its parts
//     appear together, in order, in some resource's name or alias ("orion-13b"; "frontier-9" is
//     unknown when only frontier-7 and frontier-8 exist); otherwise a misspelling within the typo
//     budget (Damerau distance 1 for 4–7 letters, 2 from 8) is corrected to the closest catalogue
//     word; a Chinese noun of the glossary is folded to its English words; the rest is Unknown.
//     A word in verb position that is no lexicon verb is first tried as a misspelt verb
//     ("depoly"), then as a catalogue word; if neither, it is Unknown and its need gets no
//     actions (it is never read as "read").
//  6. Needs: clauses with verbs but no words lend their verbs to the next clause that has words
//     ("read and write the weights": both, jointly) or, at the end, to the last need ("read the
//     weights and write them"). A clause with words and no verbs inherits the previous need's
//     verbs ("read the base and the instruct checkpoints": two needs); a trailing head noun is
//     shared back ("base" gets "checkpoints"). The first need with no verb at all means read.

// verbUse is one verb of a clause.
type verbUse struct {
	acts        []string
	restrictive bool
}

// clause is the part of a sentence between two boundaries.
type clause struct {
	verbs       []verbUse
	words       []string
	resources   []string
	unknownVerb bool // a word in verb position matched nothing
}

// vocabulary is what the reader needs of a catalogue; nil reads without one (ParseIntent).
type vocabulary interface {
	known(term string) bool
	correct(w string) (string, bool)
	nameRun(words []string) ([]string, bool)
	named(words []string) []string
}

// reader reads sentences against one catalogue.
type reader struct {
	seg     *segmenter
	vocab   vocabulary
	custom  map[string]bool // the policy's own action names that the lexicon does not name
	lexKeys []string        // every verb the lexicon and the policy know, sorted, for typo look-ups
}

func newReader(seg *segmenter, vocab vocabulary, actions []string) *reader {
	r := &reader{seg: seg, vocab: vocab, custom: map[string]bool{}}
	builtin := map[string]bool{}
	for _, acts := range verbs {
		for _, a := range acts {
			builtin[a] = true
		}
	}
	for _, a := range actions {
		if !builtin[a] && a != "*" {
			r.custom[a] = true
		}
	}
	for w := range verbs {
		r.lexKeys = append(r.lexKeys, w)
	}
	for a := range r.custom {
		if _, ok := verbs[a]; !ok {
			r.lexKeys = append(r.lexKeys, a)
		}
	}
	sort.Strings(r.lexKeys)
	return r
}

// verbOf looks a Latin word up as a verb: its actions (a policy's own action first when the word
// names it), whether it is an -s form, and whether it is inflected (-ing, -ed).
func (r *reader) verbOf(w string) (acts []string, sForm, inflected, ok bool) {
	base, s, found := lemma(w)
	if !found {
		for a := range r.custom {
			if w == a || w == a+"s" || w == a+"ing" || w == a+"ed" || w == a+"d" {
				return []string{a}, w == a+"s", w != a && w != a+"s", true
			}
		}
		return nil, false, false, false
	}
	acts = verbs[base]
	if r.custom[base] {
		acts = append([]string{base}, acts...)
	}
	return acts, s, base != w && !s, true
}

// known reports whether the catalogue knows a term (always, without a catalogue).
func (r *reader) known(t string) bool { return r.vocab == nil || r.vocab.known(t) }

// typoVerb returns the verb a misspelt word in verb position stands for.
func (r *reader) typoVerb(w string) (string, bool) {
	budget := typoBudget(len([]rune(w)))
	if budget == 0 {
		return "", false
	}
	best, bestD := "", budget+1
	for _, k := range r.lexKeys {
		if d := osa(w, k, budget); d < bestD && sameStart(w, k) {
			best, bestD = k, d
		}
	}
	return best, best != ""
}

// scope kinds.
const (
	scopeNone = iota
	scopeNegative
	scopeRestrictive
)

// readState is the reader's state while it walks one sentence.
type readState struct {
	r        *reader
	toks     []rawToken
	clauses  []*clause
	cur      *clause
	scope    int
	scopeVrb bool     // the current negative scope has a verb
	held     []string // nouns of the current negative scope, kept only if it has a verb
	expect   bool     // the next word stands in verb position
	prevVerb bool     // the previous word was a verb
	prevDet  bool     // the previous word was a determiner (or 的)
	in       *Intent
	unknown  map[string]bool
	hasLatin bool // a Latin function word or verb: the sentence is (partly) English
	// purpose: the rest of the clause is an adjunct of purpose; soft: unknown words are dropped.
	purpose, soft bool
	// lightPrev: the last word that was not a determiner was a light verb (lightVerbs);
	// lastVerbLight: the clause's last verb is one.
	lightPrev, lastVerbLight bool
	hasHan                   bool
}

func (st *readState) endScope() {
	if st.scope == scopeNegative && st.scopeVrb {
		st.cur.words = append(st.cur.words, st.held...)
	}
	st.scope, st.scopeVrb, st.held = scopeNone, false, nil
}

func (st *readState) endClause() {
	st.endScope()
	st.clauses = append(st.clauses, st.cur)
	st.cur = &clause{}
	st.expect, st.prevVerb, st.prevDet, st.lightPrev = true, false, false, false
	st.purpose, st.soft = false, false
}

func (st *readState) openScope(kind int) {
	st.endScope()
	st.scope = kind
	st.expect, st.prevVerb, st.prevDet = true, false, false
}

// verb records a verb read at its position.
func (st *readState) verb(acts []string) {
	if st.scope == scopeNegative {
		st.scopeVrb = true
		if !slices.Contains(st.in.Excluded, acts[0]) {
			st.in.Excluded = append(st.in.Excluded, acts[0])
		}
	} else {
		st.cur.verbs = append(st.cur.verbs, verbUse{acts: acts, restrictive: st.scope == scopeRestrictive})
	}
	st.expect, st.prevVerb, st.prevDet = false, true, false
}

// word records a content word (already normalised).
func (st *readState) word(w string) {
	if st.scope == scopeNegative {
		st.held = append(st.held, w)
	} else {
		st.cur.words = append(st.cur.words, w)
	}
	st.expect, st.prevVerb, st.prevDet = false, false, false
}

func (st *readState) unknownWord(raw, w string) {
	if st.soft {
		st.expect, st.prevVerb, st.prevDet = false, false, false
		return
	}
	if !st.unknown[raw] && st.scope != scopeNegative {
		st.unknown[raw] = true
		st.in.Unknown = append(st.in.Unknown, raw)
	}
	st.word(w)
}

// toVerb reports whether token i is a verb's base form (after "to").
func (st *readState) toVerb(i int) bool {
	if i >= len(st.toks) || st.toks[i].kind != tokWord {
		return false
	}
	w := st.toks[i].text
	if st.r.vocab != nil && st.r.vocab.known(stem(w)) {
		return false // a catalogue word: "to eval staging"
	}
	if _, ok := verbs[w]; ok {
		return true
	}
	return st.r.custom[w]
}

// next returns the text of token i+1 if it is a word.
func (st *readState) next(i int) string {
	if i+1 < len(st.toks) && st.toks[i+1].kind != tokPunct {
		return st.toks[i+1].text
	}
	return ""
}

// phrase reports how many tokens from i match one of the phrases.
func (st *readState) phrase(i int, phrases [][]string) int {
	for _, p := range phrases {
		if i+len(p) > len(st.toks) {
			continue
		}
		ok := true
		for k, w := range p {
			ok = ok && st.toks[i+k].text == w
		}
		if ok {
			return len(p)
		}
	}
	return 0
}

// read reads one sentence.
func (r *reader) read(text string) Intent {
	in := Intent{Text: text}
	st := &readState{r: r, toks: r.seg.scan(text), cur: &clause{}, expect: true, in: &in, unknown: map[string]bool{}}
	for i := 0; i < len(st.toks); i++ {
		t := st.toks[i]
		w := t.text
		if t.kind == tokPunct {
			st.endClause()
			continue
		}
		if t.kind == tokHan {
			st.hasHan = true
		}
		if n := st.phrase(i, negatorPhrases); n > 0 {
			st.openScope(scopeNegative)
			i += n - 1
			continue
		}
		if n := st.phrase(i, restrictorPhrases); n > 0 {
			st.openScope(scopeRestrictive)
			i += n - 1
			continue
		}
		if n := st.phrase(i, [][]string{{"break", "glass"}, {"on", "fire"}}); n > 0 {
			in.Emergency = in.Emergency || st.scope != scopeNegative
			i += n - 1
			continue
		}
		switch {
		case negators[w]:
			st.openScope(scopeNegative)
			continue
		case restrictors[w]:
			st.openScope(scopeRestrictive)
			continue
		case scopeEnders[w]:
			st.endClause()
			continue
		case conjunctions[w]:
			if w == "or" || w == "nor" || w == "或" || w == "或者" {
				if st.scope != scopeNone {
					st.expect, st.prevVerb = true, false
					continue
				}
			}
			st.endClause()
			continue
		case emergencyWords[w]:
			if st.scope != scopeNegative {
				in.Emergency = true
			}
			st.expect, st.prevVerb, st.prevDet = false, false, false
			continue
		}
		if st.purpose {
			continue
		}
		if purposeMarkers[w] || (w == "to" && (len(st.cur.verbs) > 0 || len(st.cur.words) > 0) && st.toVerb(i+1)) {
			st.purpose = true
			continue
		}
		if w == "for" || (softPrepositions[w] && softFollowers[st.next(i)]) {
			st.soft = true
		}
		nVerbs := len(st.cur.verbs)
		base, _, _ := lemma(w)
		light := lightVerbs[w] || lightVerbs[base]
		if t.kind == tokHan {
			st.han(i, w)
		} else {
			st.latin(i, w)
		}
		switch {
		case light:
			st.lightPrev, st.lastVerbLight = true, len(st.cur.verbs) > nVerbs
		case !determiners[w] && !modifiers[w] && w != "的":
			st.lightPrev = false
		}
	}
	st.endClause()
	r.needs(st)
	switch {
	case st.hasHan && st.hasLatin:
		in.Lang = "mixed"
	case st.hasHan:
		in.Lang = "zh"
	default:
		in.Lang = "en"
	}
	return in
}
