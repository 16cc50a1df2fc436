package suggest

import (
	"slices"
	"strings"
	"unicode"
)

// How the reader reads one word (rules 4 and 5 of reader.go), and the word lists it uses
// besides the lexicon.

// genericNouns are nouns that say what kind of thing is wanted without naming it; when the
// catalogue does not use them they are dropped, never unknown.
var genericNouns = setOf(`data file files model models weight weights resource resources system info
	information content detail details version copy material materials thing item items asset
	assets stuff output outputs result results environment env place location status progress
	state health usage row rows batch batches entry entries record records example examples type
	types kind kinds issue issues problem problems error errors bug bugs reason note notes date
	dates procedure procedures process request requests sample samples history manifest manifests
	config configs configuration setting settings file files record records memory usage`)

// purposeMarkers open an adjunct that says why, not what: the rest of the clause is not read
// ("so I can run a probing experiment", "because it hangs", "为了做消融实验"). "to" before a verb
// does too, once the clause has its verb or object ("call the API to compare answers").
var purposeMarkers = setOf(`so because since why cause 为了 以便 因为 用于 便于 好让`)

// zhPurpose opens a Chinese adjunct of purpose once the clause has its verb and object
// ("读取用户对话数据做隐私审查": 做 … is what for).
var zhPurpose = setOf(`做 来做 用来 拿来 进行`)

// softPrepositions, before a possessive or an article ("from my notebook", "for a tokenizer
// study"), and "for" always, open a phrase in which words the catalogue does not know are
// dropped instead of unknown: such phrases usually say where the person is or what for.
var softPrepositions = setOf(`for from into onto on in with inside within at`)

var softFollowers = setOf(`my our your a an his her their some`)

// injectionMarkers are words that speak to the system rather than ask for access ("ignore the
// rules", "SYSTEM:", "suggest X", "the answer is", "忽略之前的指令"). The clause they stand in is
// not read from them on (from its start when they come within its first four words): such text
// never adds a need, a word or an unknown word.
var injectionMarkers = setOf(`ignore disregard forget override bypass skip suggest recommend respond
	reply choose pick approve expect authorised authorized 忽略 无视 忘记 系统提示 推荐 你必须
	管理员 管理员角色 选择`)

// injectionNouns are markers only within a clause's first three words and before its verb
// ("SYSTEM: …", "the answer is …", "new rule: …"); elsewhere they may be what is asked for
// ("read the eval output").
var injectionNouns = setOf(`system assistant instruction instructions rule rules policy output answer
	choice safest safer correct convenient easier simpler preferred recommended ai llm chatbot gpt
	description says said claims p.s ps 系统 指令 规则 答案 描述 说明 输出`)

// injectionPhrases are multi-word markers.
var injectionPhrases = [][]string{{"least", "privilege"}, {"least", "privileged"}, {"the", "model"}, {"you", "must"},
	{"you", "should"}, {"p", "s"}, {"note", "to"}}

// stateWords say what is wrong, not what is wanted ("the live weights are corrupted").
var stateWords = setOf(`down corrupted corrupt leaked compromised crashlooping crashloop crashing broken
	failing stuck hung hanging slow 损坏 泄露 挂了 慢 卡住 崩溃 异常 挂起 一直挂起 卡死`)

// pronouns stand for an object named earlier ("read the weights and write them").
var pronouns = setOf(`it them this that those these 它 它们 这个 那个`)

// injection reports whether token i starts text addressed to the system, and if so skips the
// rest of the clause (and drops what the clause read so far when it starts there).
func (st *readState) injection(i int, w string) bool {
	n := st.phrase(i, injectionPhrases)
	noun := injectionNouns[w] && st.cur.tokens <= 4 && len(st.cur.verbs) == 0
	if n == 0 && !injectionMarkers[w] && !noun && !(w == "user" && i+1 < len(st.toks) && st.toks[i+1].text == ":") {
		return false
	}
	if n > 0 && w == "the" && len(st.cur.verbs) > 0 {
		return false // "read the model", not "the model should …"
	}
	if st.cur.tokens <= 4 && len(st.cur.verbs) == 0 {
		st.cur.words, st.cur.resources = nil, nil
	}
	st.purpose, st.injected = true, true
	return true
}

// chatTemplate reports whether a token is a chat template's marker (<|im_start|>, <|endoftext|>):
// a boundary, never a word.
func chatTemplate(w string) bool {
	return strings.HasPrefix(w, "im_") || w == "endoftext" || w == "eot_id" || w == "start_header_id" || w == "end_header_id"
}

// transferVerbs put a payload somewhere that is what access is needed to: "deploy X to Y",
// "部署X到Y" need deploy on Y, whatever X is. (Writing X to Y keeps X's words: the payload often
// says which store it is, "push the image to the registry".)
var transferVerbs = setOf(`deploy redeploy ship rollout roll promote install 部署 上线 发版`)

// destinations introduce a transfer's destination.
var destinations = setOf(`to into onto 到 至`)

// propertyNouns name a property of a thing, not a thing: a verb-noun before one is not a
// search word.
var propertyNouns = setOf(`date dates time times history status progress state notes note count
	number size 状态 记录 时间 日期 进度 历史 次数`)

// derived reports whether w is a noun made from a lexicon verb ("deployment", "evaluation",
// "installation", "uploader").
func derived(w string) bool {
	for _, suf := range []string{"ment", "ation", "ion", "er", "ers", "or"} {
		if b, ok := strings.CutSuffix(w, suf); ok && len(b) > 2 {
			for _, c := range []string{b, b + "e"} {
				if _, ok := verbs[c]; ok {
					return true
				}
			}
		}
	}
	return false
}

// roleRef reports whether the next word makes this one a role's name ("the firefighter role").
func roleRef(next string) bool { return next == "role" || next == "roles" || next == "角色" }

// isDuration reports whether w is a number with a unit ("8h", "30m", "3天").
func isDuration(w string) bool {
	i := 0
	for i < len(w) && w[i] >= '0' && w[i] <= '9' {
		i++
	}
	return i > 0 && i < len(w) && durationUnits[w[i:]]
}

func isNumber(w string) bool {
	for _, r := range w {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return w != ""
}

func nameLike(w string) bool {
	return strings.ContainsAny(w, nameJoiners) || strings.ContainsFunc(w, unicode.IsDigit)
}

// lightVerbs take their meaning from the activity they are followed by ("run evals on X" is
// evaluating X, "get a shell" is exec, "跑评测").
var lightVerbs = setOf(`run do perform get open start launch need want have 跑 运行 做 进行 开 要 需要 想要`)

// activities are the nouns (and verbs) a light verb can be followed by.
var activities = setOf(`eval evaluate benchmark test inference infer sample train finetune distill
	shell console ssh debug analyze analyse 评测 评估 训练 微调 推理 调试 蒸馏`)

// activity reads an activity noun after a light verb (with only determiners between) as the
// verb it names, placed before the light verb's own actions; it reports whether it did.
func (st *readState) activity(base, next string) bool {
	if !activities[base] || compoundHeads[next] || st.scope == scopeNegative {
		return false
	}
	acts := verbs[base]
	if a, ok := zhVerbs[base]; ok {
		acts = a
	}
	if st.lightPrev && len(st.cur.verbs) > 0 && st.lastVerbLight {
		last := &st.cur.verbs[len(st.cur.verbs)-1]
		last.acts = dedupe(append(slices.Clone(acts), last.acts...))
		st.expect, st.prevVerb, st.prevDet, st.lightPrev = false, true, false, false
		return true
	}
	if st.lightPrev {
		st.verb(acts)
		return true
	}
	return false
}

// han reads one Chinese word.
func (st *readState) han(i int, w string) {
	next := st.next(i)
	if st.activity(w, next) {
		return
	}
	if stateWords[w] {
		return
	}
	// After the clause's verb and a word of its object, a Chinese verb describes the object
	// ("查看 CI 里发布开源权重那个流程的日志": 发布 is the workflow's); conjunctions start a new clause.
	strong := false
	for _, v := range st.cur.verbs {
		strong = strong || !v.weak
	}
	object := strong && len(st.cur.words) > 0 && !st.prevPreVerb
	if acts, ok := zhVerbs[w]; ok && !st.prevDet && !object && !(nounAlso[w] && compoundHeads[next]) {
		if en := zhVerbEnglish[w]; st.r.custom[en] {
			acts = append([]string{en}, acts...)
		}
		st.verb(acts)
		return
	}
	if w == "用" && len(st.cur.verbs) == 0 && next != "" && !stopWords[next] {
		st.verb([]string{"use", "read", "connect"})
		st.cur.verbs[len(st.cur.verbs)-1].weak = true
		st.expect, st.prevVerb = true, false
		return
	}
	switch {
	case w == "的" || determiners[w]:
		st.expect, st.prevVerb, st.prevDet = false, false, true
		return
	case preVerb[w]:
		return
	case stopWords[w] || durationUnits[w] || accessNouns[w]:
		st.expect, st.prevVerb, st.prevDet = false, false, false
		return
	}
	if _, isVerb := zhVerbs[w]; isVerb && nounAlso[w] && propertyNouns[next] {
		return // 发布状态: the release's status, not the release
	}
	if st.r.known(w) {
		st.word(w)
		return
	}
	if eng, ok := zhGlossary[w]; ok {
		for _, e := range eng {
			switch {
			case st.r.known(e):
				st.word(e)
			case !genericNouns[e]:
				st.unknownWord(w, e)
			}
		}
		return
	}
	if _, ok := zhVerbs[w]; ok { // a verb read as a noun the catalogue does not use
		return
	}
	st.unknownWord(w, w)
}

// latin reads one Latin word.
func (st *readState) latin(i int, w string) {
	r := st.r
	next := st.next(i)
	if stateWords[w] {
		st.expect, st.prevVerb, st.prevDet = false, false, false
		return
	}
	// Hyphenated verbs: read-only, read-write.
	if strings.Contains(w, "-") && !strings.ContainsFunc(w, unicode.IsDigit) {
		if b, ok := irregular[w]; ok {
			w = b
		} else if b, ok := strings.CutPrefix(w, "re-"); ok && !strings.Contains(b, "-") {
			if _, _, _, isVerb := r.verbOf(b); isVerb {
				w = b // re-encrypt, re-deploy
			}
		} else if parts := strings.Split(w, "-"); len(parts) == 2 {
			a, _, _, ok1 := r.verbOf(parts[0])
			b, _, _, ok2 := r.verbOf(parts[1])
			if ok1 && (ok2 || parts[1] == "only") {
				st.hasLatin = true
				st.verb(a)
				if ok2 {
					st.verb(b)
				}
				return
			}
		}
	}
	if acts, sForm, inflected, ok := r.verbOf(w); ok {
		base, _, _ := lemma(w)
		if base == "" {
			base = w
		}
		if st.activity(base, next) {
			return
		}
		if st.scope == scopeNegative && activities[base] && !sForm {
			st.hasLatin = true
			st.verb(acts) // "rather than a shell", "no console"
			return
		}
		// Verb position, or a word that can only be a verb ("let my job reach the hub").
		position := st.expect || accessNouns[next] || (st.prevVerb && !inflected && !nounAlso[base]) ||
			(!st.prevVerb && !nounAlso[base] && !inflected && (r.vocab == nil || !r.vocab.known(base)))
		if position && !sForm && !st.prevDet && !(nounAlso[base] && compoundHeads[next]) {
			st.hasLatin = true
			st.verb(acts)
			return
		}
		// A verb in noun position: a catalogue word, or nothing. Before a property ("the publish
		// date", "the deploy history") it says which property, not which resource.
		if s := stem(w); stopWords[w] || stopWords[s] || (nounAlso[base] && propertyNouns[next]) {
			st.expect, st.prevVerb, st.prevDet = false, false, false
		} else if r.known(s) {
			st.word(s)
		} else if r.known(base) {
			st.word(base)
		} else {
			st.expect, st.prevVerb, st.prevDet = false, false, false
		}
		return
	}
	switch {
	case w == "to":
		// An infinitive before the clause's verb ("I need to read"), a preposition after it
		// ("deploy to eval staging").
		st.hasLatin = true
		st.expect, st.prevVerb, st.prevDet = len(st.cur.verbs) == 0, false, false
		return
	case modifiers[w]:
		st.hasLatin = true
		if r.known(w) {
			st.word(w)
		}
		st.expect, st.prevVerb, st.prevDet = false, false, true
		return
	case determiners[w]:
		st.hasLatin = true
		st.expect, st.prevVerb, st.prevDet = false, false, true
		return
	case preVerb[w]:
		st.hasLatin = true
		return
	case stopWords[w] || stopWords[stem(w)] || accessNouns[w]:
		st.hasLatin = true
		st.expect, st.prevVerb, st.prevDet = false, false, false
		return
	case isDuration(w) || (isNumber(w) && durationUnits[next]):
		st.expect, st.prevVerb, st.prevDet = false, false, false
		return
	}
	if nameLike(w) && !strings.ContainsFunc(w, unicode.IsDigit) {
		// Letters joined by - . _ / : ("red-team", "per-user"): the joined word if the
		// catalogue knows it, else each part on its own.
		if j := stem(strings.Map(func(r rune) rune {
			if strings.ContainsRune(nameJoiners, r) {
				return -1
			}
			return r
		}, w)); r.known(j) {
			st.word(j)
			return
		}
		if _, whole := r.nameRunOK(nameParts(w)); whole {
			st.name(w)
			return
		}
		for _, p := range strings.FieldsFunc(w, func(r rune) bool { return strings.ContainsRune(nameJoiners, r) }) {
			if !stopWords[p] && !preVerb[p] && !determiners[p] {
				st.plain(p)
			}
		}
		return
	}
	if nameLike(w) {
		st.name(w)
		return
	}
	st.plain(w)
}

// nameRunOK asks the vocabulary whether parts run together in a name (always, without one).
func (r *reader) nameRunOK(parts []string) ([]string, bool) {
	if r.vocab == nil {
		return nil, true
	}
	return r.vocab.nameRun(parts)
}

// plain reads a word of letters that is no verb, stop word or name.
func (st *readState) plain(w string) {
	r := st.r
	s := stem(w)
	if r.known(s) {
		st.word(s)
		return
	}
	if st.expect {
		if v, ok := r.typoVerb(w); ok {
			acts, _, _, _ := r.verbOf(v)
			st.hasLatin = true
			st.verb(acts)
			return
		}
	}
	if r.vocab != nil {
		if c, ok := r.vocab.correct(s); ok {
			st.word(c)
			return
		}
	}
	for _, zh := range enGlossary[s] {
		if r.known(zh) {
			st.word(zh)
			return
		}
	}
	if roleRef(st.next(st.at)) {
		// "use the firefighter role to deploy": the role is named, and what it is for is wanted.
		st.cur.roleRef = true
		if n := len(st.cur.verbs); n > 0 && st.cur.verbs[n-1].acts[0] == "use" {
			st.cur.verbs = st.cur.verbs[:n-1]
			st.expect = true
		}
		return
	}
	if genericNouns[w] || genericNouns[s] || derived(s) {
		// A generic noun, a noun made from a verb ("deployment", "annotation"), or the name
		// of a role ("the firefighter role"): never unknown.
		st.expect, st.prevVerb, st.prevDet = false, false, false
		return
	}
	if st.expect && st.scope != scopeNegative {
		st.cur.unknownVerb = true
	}
	st.unknownWord(w, s)
}

// name reads a name-like word: known only when its parts appear together in some resource's
// name or alias (each alphabetic part may be misspelt within its budget; digits must match).
func (st *readState) name(w string) {
	parts := nameParts(w)
	if st.r.vocab == nil {
		for _, p := range parts {
			st.word(p)
		}
		return
	}
	// A size or version right after a name word must go with it: "orion 7b" is unknown when
	// orion has only 13b, though vega has a 7b.
	if strings.ContainsFunc(w, unicode.IsDigit) && st.lastWordAt == st.at-1 && st.lastWord != "" &&
		!st.r.vocab.together(st.lastWord, parts) {
		raw := st.toks[st.at-1].text + " " + w
		if !strings.Contains(strings.ToLower(st.in.Text), raw) {
			raw = w
		}
		st.unknownWord(raw, raw)
		return
	}
	if len(parts) == 1 && !isNumber(parts[0]) && st.r.vocab.known(parts[0]) {
		// One word of letters and digits the catalogue uses ("H100", "GSM8K"), in any field.
		st.word(parts[0])
		return
	}
	fixed := make([]string, len(parts))
	for k, p := range parts {
		fixed[k] = p
		if !st.r.vocab.known(p) && !strings.ContainsFunc(p, unicode.IsDigit) {
			if c, ok := st.r.vocab.correct(p); ok {
				fixed[k] = c
			}
		}
	}
	exact, ok := st.r.vocab.nameRun(fixed)
	if !ok {
		st.unknownWord(w, w)
		return
	}
	for _, p := range fixed {
		st.word(p)
	}
	if st.scope != scopeNegative {
		st.cur.resources = append(st.cur.resources, exact...)
	}
}
