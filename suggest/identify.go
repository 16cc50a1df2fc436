package suggest

import (
	"strings"
	"unicode"

	"rampart.dev/rampart/policy"
)

// This file holds what the answerer knows about words: which identify a resource, which are
// generic, which are written like names, sizes, kinds, quantifiers and role names.

// genericWords never identify a resource by themselves: a match on them alone (or on a number,
// or on a team that owns the resource) is not a match. The catalogue adds the words of every
// resource kind and of every name's first path segment ("weights/", "datasets/").
var genericWords = []string{
	"model", "models", "weight", "checkpoint", "ckpt", "data", "dataset", "set", "file", "files",
	"key", "secret", "token", "credential", "api", "service", "server", "cluster", "namespace",
	"pipeline", "bucket", "database", "db", "host", "endpoint", "repo", "repository", "resource",
	"prod", "production", "thing", "stuff", "system", "storage", "store",
	"模型", "权重", "数据", "数据集", "检查点", "密钥", "令牌", "凭据", "接口", "服务", "集群",
	"命名空间", "流水线", "存储桶", "数据库", "资源", "文件", "生产",
	// Words about roles and instructions, which a request (or a description written to steer a
	// model) uses to ask for a role by name: they never identify a resource.
	"role", "rule", "permission", "privilege", "policy", "admin", "administrator", "instruction",
	"prompt", "assistant", "user", "answer", "choice", "everything", "anything", "ignore",
	"disregard", "forget", "override", "bypass", "skip", "pretend", "respond", "reply", "output",
	"choose", "pick", "select", "recommend", "suggest", "approve", "grant", "give",
	"角色", "权限", "规则", "指令", "管理员", "忽略",
}

// answerVocab is what the answerer knows about the catalogue's words beyond the search index.
type answerVocab struct {
	generic map[string]bool
	// kinds are the words of the catalogue's resource kinds and first name segments.
	kinds map[string]bool
	// kindOf maps a resource to its own kind words.
	kindOf map[string]map[string]bool
	// ownerOnly maps a resource to the words that appear only in its owners' names: a hit on
	// them says who owns it, not what it is.
	ownerOnly map[string]map[string]bool
}

func newAnswerVocab(pol *policy.Policy) *answerVocab {
	v := &answerVocab{generic: map[string]bool{}, kinds: map[string]bool{}, kindOf: map[string]map[string]bool{}, ownerOnly: map[string]map[string]bool{}}
	for _, w := range genericWords {
		for _, t := range tokenize(w) {
			v.generic[t] = true
		}
		v.generic[w] = true
	}
	for _, r := range pol.Resources() {
		// A kind's head noun is generic ("annotation-queue": queue), not its modifiers, which
		// identify resources of other kinds ("the annotation database").
		own := map[string]bool{}
		if kt := tokenize(r.Kind); len(kt) > 0 {
			v.generic[kt[len(kt)-1]], v.kinds[kt[len(kt)-1]] = true, true
			own[kt[len(kt)-1]] = true
		}
		if seg, _, ok := strings.Cut(r.Name, "/"); ok {
			for _, t := range tokenize(seg) {
				v.generic[t], v.kinds[t] = true, true
				own[t] = true
			}
		}
		v.kindOf[r.Name] = own
		own = map[string]bool{}
		for _, o := range r.Owners {
			for _, t := range tokenize(o) {
				own[t] = true
			}
		}
		if len(own) == 0 {
			continue
		}
		text := r.Name + " " + r.Kind + " " + r.Description + " " + strings.Join(r.Tags, " ")
		for _, t := range tokenize(text) {
			delete(own, t)
		}
		if len(own) > 0 {
			v.ownerOnly[r.Name] = own
		}
	}
	return v
}

// ofKind reports whether r is of one of the kinds (its kind's head noun or its name's first
// segment, or a synonym the reader folds to: "checkpoint" for "ckpt/", "weight").
func (v *answerVocab) ofKind(r *policy.Resource, kinds map[string]bool) bool {
	for k := range kinds {
		if v.kindOf[r.Name][k] || v.kindOf[r.Name][stem(k)] {
			return true
		}
	}
	return false
}

// identifies reports whether a hit matched at least one word that says which resource it is:
// not a number, not a generic word, not a word only its owners' names use.
func (v *answerVocab) identifies(h Hit) bool {
	for _, t := range h.Matched {
		if allDigits(t) || v.generic[t] || v.ownerOnly[h.Resource.Name][t] {
			continue
		}
		return true
	}
	return false
}

// fitsKind reports whether a hit is of a kind the need names, when it names one: "the lyra 70b
// dpo checkpoint" is a checkpoint, so the lyra 70b dashboard, which matches every other word, is
// not what was asked for. A need that names no kind fits every hit; a hit fits when one of the
// need's kind words is its own kind or any word it matched (a tag "checkpoint" on weights).
func (v *answerVocab) fitsKind(words []string, h Hit) bool {
	named := false
	for _, w := range words {
		if !v.kinds[w] {
			continue
		}
		named = true
		if v.kindOf[h.Resource.Name][w] || hasString(h.Matched, w) {
			return true
		}
	}
	return !named
}

// namesVariant reports whether an unknown word written just before a kind of resource names
// which one ("the lyra 70b dpo checkpoint": a DPO checkpoint, which does not exist), rather than
// describing its state ("a crashing namespace", "the failed pipeline"): answering from the other
// words would give a sibling of what was asked.
func (v *answerVocab) namesVariant(word, next string) bool {
	if !v.kinds[next] || strings.HasSuffix(word, "ing") || strings.HasSuffix(word, "ed") {
		return false
	}
	for _, r := range word {
		if r > unicode.MaxASCII || (!unicode.IsLetter(r) && !unicode.IsDigit(r)) {
			return false // a Chinese word left over by the segmenter is read by its own rules
		}
	}
	return true
}

func allDigits(s string) bool {
	for _, r := range s {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return s != ""
}

// writtenAsName reports whether an unknown word is written like a name in text: part of a token
// that mixes letters and digits ("zephyr-9", "gpt4o", "atlas-3") other than a duration ("8h",
// "30min"), part of a dotted host name ("api.example.com"), or capitalised inside the sentence
// ("the Zephyr weights"; not a word in capitals only, which is as often shouting). Such a word names the thing asked for, so the need is not
// answered from its other words.
func writtenAsName(word, text string) bool {
	first := true
	for _, tok := range strings.FieldsFunc(text, func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(`,;:!?()[]{}"'`, r)
	}) {
		isFirst := first
		first = strings.HasSuffix(tok, ".")
		tok = strings.TrimRight(tok, ".")
		if !hasString(tokenize(tok), word) {
			continue
		}
		letters, digits, upper, lower := false, false, false, false
		for i, r := range tok {
			letters = letters || unicode.IsLetter(r)
			digits = digits || unicode.IsDigit(r)
			upper = upper || (unicode.IsUpper(r) && (i > 0 || !isFirst))
			lower = lower || unicode.IsLower(r)
		}
		// Capitals mark a name when the word also has small letters ("Zephyr", "ZephyrNet");
		// a word in capitals only is as often shouting ("SYSTEM OVERRIDE", "EMERGENCY").
		upper = upper && lower
		switch {
		case letters && digits && !isDurationToken(tok):
			return true
		case hostLike(tok):
			return true
		case upper:
			return true
		}
	}
	return false
}

// hostLike reports whether tok is a dotted name such as "api.mistral.ai": at least two parts of
// two or more letters or digits ("P.S." is not).
func hostLike(tok string) bool {
	parts := strings.Split(strings.ToLower(tok), ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if len(p) < 2 {
			return false
		}
	}
	return true
}

// isDurationToken reports whether tok reads as an amount of time ("8h", "30min", "2days").
func isDurationToken(tok string) bool {
	i := strings.IndexFunc(tok, func(r rune) bool { return !unicode.IsDigit(r) })
	if i <= 0 {
		return false
	}
	switch strings.ToLower(tok[i:]) {
	case "s", "m", "h", "d", "w", "min", "mins", "hr", "hrs", "hour", "hours", "day", "days", "week", "weeks":
		return true
	}
	return false
}

// roleWordsIn returns the words of the roles the text names ("give me platform.admin"): such
// words are about a role, not a resource.
func (e *Engine) roleWordsIn(text string) map[string]bool {
	out := map[string]bool{}
	lower := strings.ToLower(text)
	for _, tok := range strings.FieldsFunc(lower, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("._-:/", r)
	}) {
		tok = strings.Trim(tok, ".:-")
		if _, ok := e.pol.Role(tok); !ok {
			continue
		}
		for _, w := range tokenize(tok) {
			out[w] = true
		}
		for _, w := range strings.FieldsFunc(tok, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			out[w], out[stem(w)] = true, true
		}
	}
	return out
}

// matchesSizes reports whether a hit matched every version or size the need names ("7b",
// "v4", "12": a word with a digit, not a duration) together with the name word written just
// before it ("orion 7b"): "the orion 7b checkpoint" is neither orion-13b nor vega-7b.
func matchesSizes(words []string, h Hit) bool {
	matched := map[string]bool{}
	for _, t := range h.Matched {
		matched[t] = true
	}
	for i, w := range words {
		if !strings.ContainsFunc(w, unicode.IsDigit) || isDurationToken(w) {
			continue
		}
		if !matched[w] && !matched[stem(w)] {
			return false
		}
		if i == 0 {
			continue
		}
		if p := words[i-1]; !strings.ContainsFunc(p, unicode.IsDigit) && !matched[p] && !matched[stem(p)] {
			return false
		}
	}
	return true
}

// quantifierWords ask for every resource of a kind ("every checkpoint", "所有命名空间").
var quantifierWords = map[string]bool{"all": true, "every": true, "each": true, "entire": true, "whole": true}

var quantifierHan = []string{"所有", "全部", "每个", "全体", "一切"}

// kindZh folds the Chinese words for kinds of resources to the English ones the catalogue's
// kinds use.
var kindZh = map[string]string{"命名空间": "namespace", "检查点": "checkpoint", "权重": "weight", "数据集": "dataset",
	"语料": "corpus", "语料库": "corpus", "密钥": "secret", "流水线": "pipeline", "工作流": "workflow", "存储桶": "bucket",
	"数据库": "database", "集群": "cluster", "看板": "dashboard", "日志": "logs"}

// quantified reports whether text asks for all of something.
func quantified(text string) bool {
	for _, h := range quantifierHan {
		if strings.Contains(text, h) {
			return true
		}
	}
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) }) {
		if quantifierWords[w] {
			return true
		}
	}
	return false
}

// onlyGeneric reports whether every word is generic (or a kind).
func (e *Engine) onlyGeneric(words []string) bool {
	for _, w := range words {
		if !e.vocab.generic[w] && !headNouns[w] && kindZh[w] == "" {
			return false
		}
	}
	return len(words) > 0
}

// resourceNounsZh are the Chinese words for kinds of resources.
var resourceNounsZh = map[string]bool{"模型": true, "权重": true, "数据": true, "数据集": true, "检查点": true, "密钥": true,
	"令牌": true, "接口": true, "集群": true, "命名空间": true, "流水线": true, "存储桶": true, "数据库": true, "语料": true, "日志": true}

// describesResource reports whether some word of a need is a word for a kind of resource
// ("weights", "checkpoint", "dataset", "cluster", 模型…): a need with one that matches nothing
// is a resource the catalogue does not have, not a fragment of the sentence.
func (e *Engine) describesResource(words []string) bool {
	for _, w := range words {
		if e.vocab.kinds[w] || headNouns[w] || resourceNounsZh[w] {
			return true
		}
	}
	return false
}
