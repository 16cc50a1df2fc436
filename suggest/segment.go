package suggest

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/go-ego/gse"
)

// Chinese is segmented with github.com/go-ego/gse (pure Go, Apache-2.0) over a small dictionary
// of our own — the lexicon, stop words, glossary and a compact word list (lexicon.go), plus each
// catalogue's Chinese aliases — rather than gse's 8 MB default dictionary, which takes seconds
// to load. Requests and the catalogue are cut by the same segmenter, so a word of an alias in a
// request comes out whole and finds it. Segmentation is the DAG shortest path without the HMM:
// characters the dictionary does not know are joined into one word, so an unknown name stays
// one unknown word instead of vanishing into single characters.

// segmenter cuts Han text into words. It is read-only after construction and safe for
// concurrent use.
type segmenter struct {
	seg gse.Segmenter
}

// zhFreq is the frequency given to every dictionary word: all words are equally likely, so the
// segmentation with the fewest words (the longest known words) wins.
const zhFreq = 1000

var (
	baseDictOnce sync.Once
	baseDict     []string // every Chinese word the reader knows
	baseSeg      *segmenter
)

func baseWords() []string {
	baseDictOnce.Do(func() {
		seen := map[string]bool{}
		add := func(w string) {
			if hasHan(w) && !seen[w] {
				seen[w] = true
				baseDict = append(baseDict, w)
			}
		}
		for w := range zhVerbs {
			add(w)
		}
		for w := range zhGlossary {
			add(w)
		}
		for _, set := range []map[string]bool{stopWords, negators, restrictors, conjunctions, scopeEnders,
			emergencyWords, determiners, preVerb, durationUnits, nounAlso, compoundHeads, accessNouns,
			stateWords, injectionMarkers, injectionNouns, purposeMarkers, zhPurpose, pronouns, lightVerbs,
			activities, modifiers} {
			for w := range set {
				add(w)
			}
		}
		for _, w := range zhWords {
			add(w)
		}
		// Single characters that are units only after a number would cut unknown names apart
		// ("天鹰座"); a number's unit is read after the number without them.
		baseDict = slices.DeleteFunc(baseDict, func(w string) bool {
			return durationUnits[w] && utf8.RuneCountInString(w) == 1
		})
		for en, zh := range enGlossary {
			_ = en
			for _, w := range zh {
				add(w)
			}
		}
		baseSeg = newSegmenter(nil)
	})
	return baseDict
}

// newSegmenter builds a segmenter over the base dictionary and extra words (a catalogue's
// Chinese aliases and names).
func newSegmenter(extra []string) *segmenter {
	var b strings.Builder
	freq := " " + strconv.Itoa(zhFreq) + "\n"
	for _, w := range baseDict {
		b.WriteString(w)
		b.WriteString(freq)
	}
	for _, w := range extra {
		if hasHan(w) && !strings.ContainsAny(w, " \t\n") {
			b.WriteString(strings.ToLower(w))
			b.WriteString(freq)
		}
	}
	s := &segmenter{}
	s.seg.NotLoadHMM = true
	s.seg.SkipLog = true
	_ = s.seg.LoadDictStr(b.String()) // never fails for a string dictionary
	return s
}

// defaultSegmenter is the segmenter without catalogue words.
func defaultSegmenter() *segmenter {
	baseWords()
	return baseSeg
}

// cut segments one run of Han characters. Consecutive characters the dictionary does not know
// are joined into one word.
func (s *segmenter) cut(han string) []string {
	parts := s.seg.CutDAGNoHMM(han)
	out := make([]string, 0, len(parts))
	var unknown strings.Builder
	flush := func() {
		if unknown.Len() > 0 {
			out = append(out, unknown.String())
			unknown.Reset()
		}
	}
	for _, p := range parts {
		if utf8.RuneCountInString(p) == 1 {
			// Find reports a prefix of a longer word as found, with no frequency.
			if freq, _, ok := s.seg.Find(p); !ok || freq <= 0 {
				unknown.WriteString(p)
				continue
			}
		}
		flush()
		out = append(out, p)
	}
	flush()
	return out
}

func isHan(r rune) bool { return r >= 0x2E80 && unicode.Is(unicode.Han, r) }

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// scanASCII is scan for text of ASCII only (most names and descriptions), byte by byte.
func scanASCII(text string) []rawToken {
	var out []rawToken
	word := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	var b []byte
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case word(c):
			b = b[:0]
			j := i
			for j < len(text) {
				c := text[j]
				if word(c) {
					if c >= 'A' && c <= 'Z' {
						c += 'a' - 'A'
					}
					b = append(b, c)
					j++
					continue
				}
				if j+1 < len(text) && word(text[j+1]) && (c == '\'' || strings.IndexByte(nameJoiners, c) >= 0) {
					if c != '\'' {
						b = append(b, c)
					}
					j++
					continue
				}
				break
			}
			out = append(out, rawToken{string(b), tokWord})
			i = j
		case strings.IndexByte(boundaryPunct, c) >= 0:
			if len(out) == 0 || out[len(out)-1].kind != tokPunct {
				out = append(out, rawToken{string(c), tokPunct})
			}
			i++
		default:
			i++
		}
	}
	return out
}

func hasHan(s string) bool {
	for _, r := range s {
		if isHan(r) {
			return true
		}
	}
	return false
}

// tokKind is what a raw token is.
type tokKind uint8

const (
	tokWord  tokKind = iota // a Latin word or name: letters and digits, with inner - . _ / : kept
	tokHan                  // a Chinese word, as segmented
	tokPunct                // a clause boundary: , ; . ! ? and their full-width forms, 、
)

// rawToken is one token of a sentence, lowercased.
type rawToken struct {
	text string
	kind tokKind
}

// boundaryPunct are the punctuation marks that end a clause.
const boundaryPunct = ",;.!?，；。！？、:：\n"

// nameJoiners may stand inside a Latin word that names something ("frontier-7", "api.openai.com",
// "weights/orion", "db_main", "host:443").
const nameJoiners = "-._/:"

// scan splits a sentence into raw tokens. Apostrophes inside words are dropped ("don't" →
// "dont"); a joiner is kept only between letters or digits.
func (s *segmenter) scan(text string) []rawToken {
	if ascii(text) {
		return scanASCII(text)
	}
	return s.scanRunes(text)
}

// scanRunes is scan for any text.
func (s *segmenter) scanRunes(text string) []rawToken {
	text = strings.ToLower(text)
	var out []rawToken
	rs := []rune(text)
	wordChar := func(r rune) bool { return (unicode.IsLetter(r) || unicode.IsDigit(r)) && !isHan(r) }
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case isHan(r):
			j := i
			for j < len(rs) && isHan(rs[j]) {
				j++
			}
			for _, w := range s.cut(string(rs[i:j])) {
				out = append(out, rawToken{w, tokHan})
			}
			i = j
		case wordChar(r):
			var b strings.Builder
			j := i
			for j < len(rs) {
				c := rs[j]
				if wordChar(c) {
					b.WriteRune(c)
					j++
					continue
				}
				if (c == '\'' || c == '’') && j+1 < len(rs) && wordChar(rs[j+1]) {
					j++
					continue
				}
				if strings.ContainsRune(nameJoiners, c) && j+1 < len(rs) && wordChar(rs[j+1]) {
					b.WriteRune(c)
					j++
					continue
				}
				break
			}
			out = append(out, rawToken{b.String(), tokWord})
			i = j
		case strings.ContainsRune(boundaryPunct, r):
			if len(out) == 0 || out[len(out)-1].kind != tokPunct {
				out = append(out, rawToken{string(r), tokPunct})
			}
			i++
		default:
			i++
		}
	}
	return out
}

// nameParts splits a Latin word at its joiners ("frontier-7" → frontier, 7), each stemmed.
func nameParts(w string) []string {
	if !strings.ContainsAny(w, nameJoiners) {
		return []string{stem(w)}
	}
	parts := strings.FieldsFunc(w, func(r rune) bool { return strings.ContainsRune(nameJoiners, r) })
	for i, p := range parts {
		parts[i] = stem(p)
	}
	return parts
}

// terms splits text into search terms: Latin words at every non-letter, non-digit (stemmed),
// Chinese by the segmenter. The catalogue and queries are split alike.
func (s *segmenter) terms(text string) []string {
	var out []string
	for _, t := range s.scan(text) {
		switch t.kind {
		case tokWord:
			out = append(out, nameParts(t.text)...)
		case tokHan:
			out = append(out, t.text)
		}
	}
	return out
}
