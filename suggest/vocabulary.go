package suggest

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The catalogue's vocabulary, as the reader sees it: which words a catalogue knows, which runs
// of name words name something, and which known word a misspelt one stands for.

// maxRun bounds the length of the runs of name words indexed (longer names match on any run up
// to this length).
const maxRun = 6

// aliasTerms are the search terms of one alias: its words, and a Chinese alias whole as well,
// so that a request that spells it out (the segmenter knows it as one word) matches it.
func aliasTerms(seg *segmenter, alias string) []string {
	terms := seg.terms(alias)
	if hasHan(alias) {
		whole := strings.ToLower(strings.Join(strings.Fields(alias), ""))
		if len(terms) != 1 || terms[0] != whole {
			terms = append(terms, whole)
		}
		// The alias cut by the catalogue-free segmenter too, so that Engine.Search finds it.
		terms = append(terms, defaultSegmenter().terms(alias)...)
	}
	return terms
}

// buildNames indexes every run of consecutive words (up to maxRun) of each resource's name and
// aliases, and which resources a whole name's last segment or a whole alias names.
func (ix *searchIndex) buildNames(nameTerms, descTerms [][]string) {
	ix.runs, ix.exact = map[string]bool{}, map[string][]string{}
	ix.nameWords, ix.cooccur, ix.conj = map[string]bool{}, map[string]bool{}, map[string]bool{}
	var key strings.Builder
	addRuns := func(words []string) {
		for i := range words {
			key.Reset()
			for j := i; j < len(words) && j-i < maxRun; j++ {
				if j > i {
					key.WriteByte(' ')
				}
				key.WriteString(words[j])
				ix.runs[key.String()] = true
			}
		}
	}
	addExact := func(key, name string) {
		if l := ix.exact[key]; len(l) == 0 || l[len(l)-1] != name {
			ix.exact[key] = append(ix.exact[key], name)
		}
	}
	for i, r := range ix.docs {
		texts := [][]string{descTerms[i]}
		for _, a := range r.Aliases {
			texts = append(texts, ix.seg.terms(a))
		}
		for _, ts := range texts {
			for k := 1; k+1 < len(ts); k++ {
				if conjunctions[ts[k]] {
					ix.conj[ts[k-1]+" "+ts[k]+" "+ts[k+1]] = true
				}
			}
		}
		nameTerms := nameTerms[i]
		addRuns(nameTerms)
		addExact(strings.Join(ix.last[i], " "), r.Name)
		// Which words and sizes or versions one resource has together.
		words := slices.Clone(nameTerms)
		for _, a := range r.Aliases {
			words = append(words, ix.seg.terms(a)...)
			words = append(words, defaultSegmenter().terms(a)...)
		}
		for _, w := range words {
			ix.nameWords[w] = true
			for _, d := range nameTerms {
				if strings.ContainsFunc(d, unicode.IsDigit) {
					ix.cooccur[w+"\x00"+d] = true
				}
			}
		}
		addExact(strings.ToLower(r.Name), r.Name)
		for _, a := range r.Aliases {
			words := ix.seg.terms(a)
			addRuns(words)
			if hasHan(a) {
				addRuns(ix.seg.terms(strings.Join(defaultSegmenter().terms(a), " ")))
			}
			words = slices.DeleteFunc(words, func(w string) bool { return stopWords[w] })
			addExact(strings.Join(words, " "), r.Name)
		}
	}
}

// together reports whether a name-like word's digit parts ("7b") belong to a resource that word
// names too ("orion" → orion-13b only: "orion 7b" is not together). Words that name no resource
// ("the", "pods") pass.
func (ix *searchIndex) together(word string, parts []string) bool {
	if !ix.nameWords[word] {
		return true
	}
	for _, p := range parts {
		if strings.ContainsFunc(p, unicode.IsDigit) && !ix.cooccur[word+"\x00"+p] {
			return false
		}
	}
	return true
}

// conjoined reports whether "a and b" is written so in the catalogue's descriptions or aliases.
func (ix *searchIndex) conjoined(phrase string) bool { return ix.conj[phrase] }

// named returns the resources that runs of words name whole (a name's last segment, an alias),
// longest run first from the left. A single word counts only when it has a digit or is Chinese:
// "release" alone is a word, not the pipeline ci/release.
func (ix *searchIndex) named(words []string) []string {
	var out []string
	for i := 0; i < len(words); {
		matched := false
		for j := min(len(words), i+maxRun); j > i; j-- {
			key := strings.Join(words[i:j], " ")
			if res := ix.exact[key]; len(res) > 0 && (j-i > 1 || hasHan(key) || strings.ContainsFunc(key, unicode.IsDigit)) {
				out = append(out, res...)
				i, matched = j, true
				break
			}
		}
		if !matched {
			i++
		}
	}
	return out
}

// known reports whether term is a word of the catalogue (names, tags, kinds, owners,
// descriptions, aliases).
func (ix *searchIndex) known(term string) bool {
	_, ok := ix.postings[term]
	return ok
}

// nameRun reports whether words appear together, in this order, in some resource's name or
// alias ("orion 13b" in models/orion-13b-base), and which resources they name whole.
func (ix *searchIndex) nameRun(words []string) (exact []string, ok bool) {
	key := strings.Join(words, " ")
	if len(words) > maxRun {
		// Longer than any indexed run: every window of maxRun words must be one.
		for i := 0; i+maxRun <= len(words); i++ {
			if !ix.runs[strings.Join(words[i:i+maxRun], " ")] {
				return nil, false
			}
		}
		return ix.exact[key], true
	}
	return ix.exact[key], ix.runs[key]
}

// typoBudget is the Damerau distance a misspelling of a word of n letters may have: none under
// 4 letters, 1 from 4 to 7, 2 from 8.
func typoBudget(n int) int {
	switch {
	case n < 4:
		return 0
	case n < 8:
		return 1
	}
	return 2
}

// correct returns the catalogue word a misspelt word stands for: the closest within its typo
// budget that keeps the first letter, then the more frequent in the catalogue, then the first alphabetically.
func (ix *searchIndex) correct(w string) (string, bool) {
	n := utf8.RuneCountInString(w)
	budget := typoBudget(n)
	if hasHan(w) {
		return "", false
	}
	if n == 3 {
		// Three letters: only two neighbours swapped ("kye" → "key").
		for _, t := range ix.byLen3 {
			if t != w && osa(w, t, 1) == 1 && t[0] == w[0] && sameLetters(w, t) {
				return t, true
			}
		}
		return "", false
	}
	if budget == 0 {
		return "", false
	}
	best, bestD, bestDF := "", budget+1, 0
	lo, hi := n-budget, n+budget
	if n < 5 {
		lo, hi = n, n // four letters: a letter changed or two swapped, not one added ("base" is no "biase")
	}
	for l := lo; l <= hi; l++ {
		for _, t := range ix.byLen[l] {
			d := osa(w, t, budget)
			if d > budget || !sameStart(w, t) {
				continue
			}
			df := len(ix.postings[t])
			if d < bestD || (d == bestD && df > bestDF) {
				best, bestD, bestDF = t, d, df
			}
		}
	}
	return best, best != ""
}

// sameLetters reports whether a and b are made of the same letters.
func sameLetters(a, b string) bool {
	x, y := []rune(a), []rune(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// sameStart reports whether a misspelling keeps its word's first letter (or swaps the first two):
// people rarely mistype the first letter, and without this "retrain" would be "pretrain".
func sameStart(w, t string) bool {
	rw, rt := []rune(w), []rune(t)
	if len(rw) == 0 || len(rt) == 0 {
		return false
	}
	if rw[0] == rt[0] {
		return true
	}
	return len(rw) > 1 && len(rt) > 1 && rw[0] == rt[1] && rw[1] == rt[0]
}

// osa is the optimal-string-alignment (restricted Damerau) distance between a and b: insertions,
// deletions, substitutions and transpositions of adjacent letters. It stops counting past max.
func osa(a, b string, max int) int {
	ra, rb := []rune(a), []rune(b)
	if d := len(ra) - len(rb); d > max || -d > max {
		return max + 1
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
			rowMin = min(rowMin, v)
		}
		if rowMin > max {
			return max + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
