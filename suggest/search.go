package suggest

import (
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"

	"rampart.dev/rampart/policy"
)

// Field weights for BM25F: a word in a resource's name says more than one in its description.
const (
	weightName        = 3.0
	weightAlias       = 3.0 // an alias is another name
	weightTag         = 2.0
	weightKind        = 1.5
	weightOwner       = 1.0
	weightDescription = 1.0

	bm25K1 = 1.2
	bm25B  = 0.75

	// nameBonus multiplies the score of a resource whose own name (the last segment of its path)
	// the query spells out in full: "frontier-7" prefers weights/frontier-7 to
	// weights/frontier-7-rlhf, unless "rlhf" is asked for too.
	nameBonus = 1.5

	// typoPenalty scales the score of a term matched at edit distance 1.
	typoPenalty = 0.6
	// minTypoLen is the shortest query term that may match with a typo.
	minTypoLen = 4
	// maxQueryTerms bounds the work one query can cause.
	maxQueryTerms = 32
	// maxQueryLen bounds the text accepted as a query.
	maxQueryLen = 1024
)

// Hit is one search result.
type Hit struct {
	Resource *policy.Resource
	Score    float64
	// Matched lists the catalogue words the query matched (after typo correction).
	Matched []string
}

type posting struct {
	doc int32
	tf  float32 // length-normalised, field-weighted term frequency
}

// searchIndex is a BM25F index over the resource catalogue, with a symmetric-delete index for
// typo tolerance (edit distance 1).
type searchIndex struct {
	docs     []*policy.Resource
	last     [][]string // per resource, the words of the last segment of its name
	lastN    []int      // per resource, how many distinct words last holds
	postings map[string][]posting
	idf      map[string]float64
	deletes  map[string][]string // a term with one character deleted → terms
	pool     sync.Pool           // *scratch

	// The reader's view of the catalogue (vocabulary.go): the segmenter that knows its Chinese
	// aliases, every run of consecutive words of a resource name or alias, the resources a whole
	// name or alias names, and the terms by length for typo look-ups at distance 2.
	seg   *segmenter
	runs  map[string]bool
	exact map[string][]string
	byLen map[int][]string
	// nameWords are the words of names and aliases; cooccur holds word + "\x00" + a digit-bearing
	// name word of one resource.
	nameWords, cooccur map[string]bool
	conj               map[string]bool // "a and b" as the catalogue writes it
	byLen3             []string        // terms of three letters, sorted

	readerOnce sync.Once
	rd         *reader
}

// tokenize splits text into search terms with the catalogue-free segmenter: lowercase Latin
// words of letters and digits, each stemmed, and Chinese words.
func tokenize(s string) []string {
	return defaultSegmenter().terms(s)
}

// stem folds a plural into its singular ("weights" → "weight", "evals" → "eval"), leaving
// words ending in ss, us or is alone; applied alike to the catalogue and to queries.
func stem(w string) string {
	if len(w) > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "us") && !strings.HasSuffix(w, "is") {
		return w[:len(w)-1]
	}
	return w
}

func newSearchIndex(pol *policy.Policy) *searchIndex {
	ix := &searchIndex{docs: pol.Resources(), postings: map[string][]posting{}, idf: map[string]float64{}, deletes: map[string][]string{},
		byLen: map[int][]string{}}
	baseWords()
	// The engine's segmenter knows the catalogue's Chinese: each alias whole, and the words the
	// catalogue-free segmenter cuts from aliases and descriptions ("猎户座" from "猎户座基座模型").
	var extra []string
	for _, r := range ix.docs {
		extra = append(extra, r.Aliases...)
		for _, text := range append([]string{r.Description}, r.Aliases...) {
			if hasHan(text) {
				extra = append(extra, defaultSegmenter().terms(text)...)
			}
		}
	}
	ix.seg = newSegmenter(extra)
	tokenize := ix.seg.terms
	ix.last = make([][]string, len(ix.docs))
	for i, r := range ix.docs {
		ix.last[i] = tokenize(r.Name[strings.LastIndexByte(r.Name, '/')+1:])
		distinct := map[string]bool{}
		for _, w := range ix.last[i] {
			distinct[w] = true
		}
		ix.lastN = append(ix.lastN, len(distinct))
	}
	nameTerms, descTerms := make([][]string, len(ix.docs)), make([][]string, len(ix.docs))
	for i, r := range ix.docs {
		nameTerms[i], descTerms[i] = tokenize(r.Name), tokenize(r.Description)
	}
	ix.buildNames(nameTerms, descTerms)
	type fieldText struct {
		weight float64
		words  []string
	}
	fields := make([][]fieldText, len(ix.docs))
	var avg [6]float64
	for i, r := range ix.docs {
		var owners []string
		for _, o := range r.Owners {
			owners = append(owners, tokenize(o)...)
		}
		var tags []string
		for _, t := range r.Tags {
			tags = append(tags, tokenize(t)...)
		}
		var aliases []string
		for _, a := range r.Aliases {
			aliases = append(aliases, aliasTerms(ix.seg, a)...)
		}
		fields[i] = []fieldText{
			{weightName, nameTerms[i]},
			{weightAlias, aliases},
			{weightTag, tags},
			{weightKind, tokenize(r.Kind)},
			{weightOwner, owners},
			{weightDescription, descTerms[i]},
		}
		for f, ft := range fields[i] {
			avg[f] += float64(len(ft.words))
		}
	}
	n := float64(max(len(ix.docs), 1))
	for f := range avg {
		avg[f] = max(avg[f]/n, 1)
	}
	for i := range ix.docs {
		tf := map[string]float64{}
		for f, ft := range fields[i] {
			norm := 1 - bm25B + bm25B*float64(len(ft.words))/avg[f]
			for _, w := range ft.words {
				tf[w] += ft.weight / norm
			}
		}
		for w, v := range tf {
			ix.postings[w] = append(ix.postings[w], posting{doc: int32(i), tf: float32(v)})
		}
	}
	for w, ps := range ix.postings {
		df := float64(len(ps))
		ix.idf[w] = math.Log(1 + (n-df+0.5)/(df+0.5))
		if len(w) >= minTypoLen && !hasHan(w) {
			ix.byLen[len(w)] = append(ix.byLen[len(w)], w)
			for _, d := range deletions(w) {
				ix.deletes[d] = append(ix.deletes[d], w)
			}
		}
	}
	for _, ts := range ix.byLen {
		sort.Strings(ts)
	}
	for w := range ix.postings {
		if len(w) == 3 && !hasHan(w) {
			ix.byLen3 = append(ix.byLen3, w)
		}
	}
	sort.Strings(ix.byLen3)
	return ix
}

// deletions returns every string made by deleting one byte of w.
func deletions(w string) []string {
	out := make([]string, 0, len(w))
	for i := range len(w) {
		out = append(out, w[:i]+w[i+1:])
	}
	return out
}

// expand returns the catalogue terms a query term stands for: itself if known, otherwise the
// known terms at edit distance 1 (insertion, deletion, substitution, adjacent transposition),
// each with its weight.
func (ix *searchIndex) expand(q string) map[string]float64 {
	if _, ok := ix.postings[q]; ok {
		return map[string]float64{q: 1}
	}
	out := map[string]float64{}
	if len(q) < minTypoLen || hasHan(q) {
		return out
	}
	// q is a known term with one character inserted.
	for _, d := range deletions(q) {
		if _, ok := ix.postings[d]; ok {
			out[d] = typoPenalty
		}
	}
	// A known term is q with one character inserted (q lost one), or both lost one at the same
	// place (a substitution) or at neighbouring places (a transposition, checked below).
	for _, t := range ix.deletes[q] {
		out[t] = typoPenalty
	}
	for _, d := range deletions(q) {
		for _, t := range ix.deletes[d] {
			if len(t) == len(q) && withinOne(q, t) {
				out[t] = typoPenalty
			}
		}
	}
	return out
}

// covers reports whether every word of name was asked for.
func covers(asked map[string]bool, name []string) bool {
	for _, w := range name {
		if !asked[w] {
			return false
		}
	}
	return len(name) > 0
}

// withinOne reports whether equal-length a and b differ by one substitution or one adjacent
// transposition.
func withinOne(a, b string) bool {
	var diff []int
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] {
			diff = append(diff, i)
			if len(diff) > 2 {
				return false
			}
		}
	}
	switch len(diff) {
	case 1:
		return true
	case 2:
		i, j := diff[0], diff[1]
		return j == i+1 && a[i] == b[j] && a[j] == b[i]
	}
	return false
}

// scratch is per-query working memory, pooled: a score per resource and the query terms each
// matched (a bit per term), so a query touching thousands of resources allocates little.
type scratch struct {
	scores  []float64
	terms   []uint64
	touched []int32
}

// search ranks resources for the query words. Words that match nothing, even with a typo, are
// ignored.
func (ix *searchIndex) search(words []string, limit int) []Hit {
	if len(words) > maxQueryTerms {
		words = words[:maxQueryTerms]
	}
	sc, _ := ix.pool.Get().(*scratch)
	if sc == nil || len(sc.scores) != len(ix.docs) {
		sc = &scratch{scores: make([]float64, len(ix.docs)), terms: make([]uint64, len(ix.docs))}
	}
	defer func() {
		for _, d := range sc.touched {
			sc.scores[d], sc.terms[d] = 0, 0
		}
		sc.touched = sc.touched[:0]
		ix.pool.Put(sc)
	}()
	var termList []string
	seen := map[string]bool{}
	for _, q := range words {
		for term, w := range ix.expand(q) {
			if seen[term] || len(termList) == 64 {
				continue
			}
			seen[term] = true
			bit := uint64(1) << len(termList)
			termList = append(termList, term)
			idf := ix.idf[term]
			for _, p := range ix.postings[term] {
				if sc.terms[p.doc] == 0 {
					sc.touched = append(sc.touched, p.doc)
				}
				tf := float64(p.tf)
				sc.scores[p.doc] += w * idf * tf * (bm25K1 + 1) / (tf + bm25K1)
				sc.terms[p.doc] |= bit
			}
		}
	}
	asked := map[string]bool{}
	for _, w := range words {
		asked[w] = true
	}
	type scored struct {
		doc   int32
		score float64
	}
	all := make([]scored, len(sc.touched))
	for i, d := range sc.touched {
		s := sc.scores[d]
		// Every word of the name asked for means the resource matched that many terms: most
		// resources a common word touched are ruled out by a bit count.
		if bits.OnesCount64(sc.terms[d]) >= ix.lastN[d] && covers(asked, ix.last[d]) {
			s *= nameBonus
		}
		all[i] = scored{d, s}
	}
	better := func(a, b scored) bool {
		if a.score != b.score {
			return a.score > b.score
		}
		return ix.docs[a.doc].Name < ix.docs[b.doc].Name
	}
	if limit > 0 && len(all) > 4*limit {
		// Only the best limit are wanted: keep them in a bounded min-heap (n log limit) rather
		// than sorting every resource a common word touched.
		top := all[:0:0]
		for _, a := range all {
			switch {
			case len(top) < limit:
				top = append(top, a)
				for i := len(top) - 1; i > 0 && better(top[(i-1)/2], top[i]); i = (i - 1) / 2 {
					top[i], top[(i-1)/2] = top[(i-1)/2], top[i]
				}
			case better(a, top[0]):
				top[0] = a
				for i := 0; ; {
					l, r, m := 2*i+1, 2*i+2, i
					if l < len(top) && better(top[m], top[l]) {
						m = l
					}
					if r < len(top) && better(top[m], top[r]) {
						m = r
					}
					if m == i {
						break
					}
					top[i], top[m] = top[m], top[i]
					i = m
				}
			}
		}
		all = top
	}
	slices.SortFunc(all, func(a, b scored) int {
		switch {
		case better(a, b):
			return -1
		case better(b, a):
			return 1
		}
		return 0
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	hits := make([]Hit, len(all))
	for i, a := range all {
		hits[i] = Hit{Resource: ix.docs[a.doc], Score: a.score, Matched: termsOf(sc.terms[a.doc], termList)}
	}
	return hits
}

func termsOf(bits uint64, terms []string) []string {
	var out []string
	for i, t := range terms {
		if bits&(1<<i) != 0 {
			out = append(out, t)
		}
	}
	return out
}
