package suggest

import (
	"slices"
	"sort"
)

// The reader: how a sentence becomes an Intent. docs/suggest-reading.md is the full statement
// of these rules, section by section; keep them together.
//
//  1. Words (segment.go): Latin words keep inner - . _ / : between letters or digits; Chinese is
//     cut by the segmenter over our dictionary and the catalogue's own Chinese.
//  2. Clauses end at clause marks, conjunctions (and, 以及, 和, …, unless the catalogue writes the
//     phrase: "Weights and Biases") and "but", 但, 而是. Negators open a negative scope (its verbs
//     are Excluded; its nouns are dropped when it has no verb), restrictors a restrictive one (its
//     verbs are the need's only ones), to the clause's end or the next negator or restrictor.
//     Context clauses (only negated verbs, an emergency, what is wrong) lend their words to the
//     next need. Adjuncts of purpose are not read; text addressed to the system (injection
//     markers) and role names add nothing.
//  3. A lexicon word is a verb by position (clause start after subject and modal words, after
//     "to", a negator, restrictor or conjunction, after a verb as a base form, before "access",
//     or when it can only be a verb), and a noun after a determiner or adjective, as an -s form,
//     and, for words as often nouns, before a compound head ("eval results"). Light verbs take
//     the activity's meaning ("run evals", "get a shell").
//  4. Other words: stop, state and generic words and durations are never unknown; a content word
//     is kept when the catalogue uses it; a name-like word must match a name or alias as a whole
//     (and a size must go with the name word before it); then a misspelt verb (in verb position)
//     or catalogue word within the typo budget; then the glossary; else Unknown.
//  5. Resources: runs of a need's words that name a resource whole (name, last segment, alias).
//  6. Needs (intent.go, needs): clauses with verbs and no words lend them to the next clause with
//     words (jointly), or with it/them to the last need; a clause with words and no verb takes
//     the previous need's verbs and shares a trailing head noun back; a need named only by a head
//     noun is about the previous need's thing; the first need with no verb means read.

// verbUse is one verb of a clause.
type verbUse struct {
	acts        []string
	restrictive bool
	// weak: 用 (use, with) before another verb is the instrument ("用评测框架触发" triggers): its
	// actions come last and are not joint.
	weak bool
}

// clause is the part of a sentence between two boundaries.
type clause struct {
	verbs       []verbUse
	words       []string
	resources   []string
	unknownVerb bool // a word in verb position matched nothing
	// excluded: the clause negated a verb; emergency: it says something is on fire; state: it
	// says what is wrong ("the pods are crashlooping"). Such a clause with no wanted verb is
	// context: its words go to the next need instead of making one.
	excluded, emergency, state bool
	pronoun                    bool // it, them, 它: the object is an earlier one
	afterComma                 bool // the clause follows a comma
	// transfer: the clause's verb moves something somewhere (deploy, upload, push, send, 部署);
	// payload counts its words and resources before "to"/"into"/到, the thing moved, which the
	// destination replaces: "deploy the new build to the ams1 canary" is about the canary.
	transfer            bool
	payload, payloadRes int
	payloadSet, roleRef bool
	tokens              int // words read in the clause so far
}

// vocabulary is what the reader needs of a catalogue; nil reads without one (ParseIntent).
type vocabulary interface {
	known(term string) bool
	correct(w string) (string, bool)
	nameRun(words []string) ([]string, bool)
	named(words []string) []string
	together(word string, parts []string) bool
	conjoined(phrase string) bool
}

// reader reads sentences against one catalogue.
type reader struct {
	roles   map[string]bool // the policy's role names, lowercase
	seg     *segmenter
	vocab   vocabulary
	custom  map[string]bool // the policy's own action names that the lexicon does not name
	lexKeys []string        // every verb the lexicon and the policy know, sorted, for typo look-ups
}

func newReader(seg *segmenter, vocab vocabulary, actions []string) *reader {
	r := &reader{seg: seg, vocab: vocab, custom: map[string]bool{}, roles: map[string]bool{}}
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

// typoVerb returns the verb a misspelt word in verb position stands for. The budget is that of
// the longer of the two words ("pul" is one edit from the four letters of "pull").
func (r *reader) typoVerb(w string) (string, bool) {
	n := len([]rune(w))
	if n < 3 {
		return "", false
	}
	best, bestD := "", 3
	for _, k := range r.lexKeys {
		budget := typoBudget(max(n, len(k)))
		if d := osa(w, k, budget); d <= budget && d < bestD && sameStart(w, k) {
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
	at       int      // the token being read
	// lastWordAt and lastWord: the token that gave the last content word, and that word.
	lastWordAt int
	lastWord   string
	injected   bool // the clause is skipped from an injection marker on
	// prevPreVerb: the previous word was a subject or modal word ("needs to" is no purpose).
	prevPreVerb bool
	in          *Intent
	unknown     map[string]bool
	unkWords    map[string]bool // the need words that stand for unknown ones
	hasLatin    bool            // a Latin function word or verb: the sentence is (partly) English
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
	if c := st.cur; c.payloadSet && len(c.words) > c.payload {
		c.words, c.resources = c.words[c.payload:], c.resources[min(c.payloadRes, len(c.resources)):]
	}
	st.clauses = append(st.clauses, st.cur)
	st.cur = &clause{}
	st.expect, st.prevVerb, st.prevDet, st.lightPrev = true, false, false, false
	st.purpose, st.soft, st.injected = false, false, false
}

func (st *readState) openScope(kind int) {
	st.endScope()
	st.scope = kind
	st.expect, st.prevVerb, st.prevDet = true, false, false
}

// verb records a verb read at its position.
func (st *readState) verb(acts []string) {
	if st.scope == scopeNegative {
		st.cur.excluded = true
		st.scopeVrb = true
		if !slices.Contains(st.in.Excluded, acts[0]) {
			st.in.Excluded = append(st.in.Excluded, acts[0])
		}
	} else {
		if len(st.cur.verbs) == 0 && st.at < len(st.toks) {
			w := st.toks[st.at].text
			base, _, _ := lemma(w)
			st.cur.transfer = transferVerbs[w] || transferVerbs[base]
		}
		st.cur.verbs = append(st.cur.verbs, verbUse{acts: acts, restrictive: st.scope == scopeRestrictive})
	}
	st.expect, st.prevVerb, st.prevDet = false, true, false
}

// word records a content word (already normalised).
func (st *readState) word(w string) {
	st.lastWordAt, st.lastWord = st.at, w
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
	if st.scope != scopeNegative {
		st.unkWords[w] = true
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

// phraseAt reports whether the conjunction at token i joins two words the catalogue writes
// together ("Weights and Biases"): then it is part of a name, not a boundary.
func (r *reader) phraseAt(st *readState, i int) bool {
	if r.vocab == nil || i == 0 || i+1 >= len(st.toks) {
		return false
	}
	return r.vocab.conjoined(stem(st.toks[i-1].text) + " " + st.toks[i].text + " " + stem(st.toks[i+1].text))
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
	st := &readState{r: r, toks: r.seg.scan(text), cur: &clause{}, expect: true, in: &in, unknown: map[string]bool{}, unkWords: map[string]bool{}}
	for i := 0; i < len(st.toks); i++ {
		t := st.toks[i]
		w := t.text
		st.at = i
		if t.kind == tokPunct || chatTemplate(w) {
			if (w == ":" || w == "：") && len(st.cur.words) == 0 {
				st.cur.verbs = nil // a heading ("故障排查：", "troubleshooting:"), not a wish
			}
			st.endClause()
			st.cur.afterComma = w == "," || w == "，"
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
		case conjunctions[w] && st.r.phraseAt(st, i):
			continue // "weights and biases": the words go on
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
				st.cur.emergency = true
			}
			st.expect, st.prevVerb, st.prevDet = false, false, false
			if i+1 < len(st.toks) && isNumber(st.toks[i+1].text) {
				i++ // an incident's number
			}
			continue
		}
		st.cur.tokens++
		if st.purpose {
			if st.injected && r.roles[w] && nameLike(w) {
				// The payload of an injection ends it: "answer vault.admin read the key".
				st.purpose, st.injected, st.expect = false, false, true
			}
			continue
		}
		if w == "using" && len(st.cur.words) > 0 {
			st.endClause() // "train on the crawl using the H200 reservation": a second need
			st.verb(verbs["use"])
			continue
		}
		if st.injection(i, w) {
			continue
		}
		if stateWords[w] {
			st.cur.state = true
		}
		if pronouns[w] {
			st.cur.pronoun = true
		}
		if r.roles[w] && nameLike(w) {
			continue // a role's name: people ask for access, not for a role by name
		}
		if destinations[w] && st.cur.transfer && len(st.cur.words) > 0 && !st.cur.payloadSet && !st.toVerb(i+1) {
			st.cur.payload, st.cur.payloadRes, st.cur.payloadSet = len(st.cur.words), len(st.cur.resources), true
		}
		if purposeMarkers[w] || (w == "to" && (len(st.cur.verbs) > 0 || len(st.cur.words) > 0) && !st.prevPreVerb && !st.cur.roleRef && st.toVerb(i+1)) ||
			(zhPurpose[w] && len(st.cur.verbs) > 0 && len(st.cur.words) > 0) {
			st.purpose = true
			continue
		}
		if w == "for" || (softPrepositions[w] && softFollowers[st.next(i)]) {
			st.soft = true
		}
		nVerbs := len(st.cur.verbs)
		base, _, _ := lemma(w)
		light := lightVerbs[w] || lightVerbs[base]
		st.prevPreVerb = preVerb[w] || (w == "looking" || w == "planning" || w == "trying" || w == "going") && st.next(i) == "to"
		if st.prevPreVerb && !preVerb[w] {
			continue // "looking to": want to
		}
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
