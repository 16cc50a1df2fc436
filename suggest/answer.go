package suggest

import (
	"errors"
	"fmt"
	"strings"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// Outcomes of a suggestion.
const (
	// StatusSuggested: every need has a role.
	StatusSuggested = "suggested"
	// StatusNothingFits: some need has no requestable role, or matches the catalogue only
	// weakly; Nearest names the closest resources.
	StatusNothingFits = "nothing_fits"
	// StatusNotUnderstood: a key word matched nothing; Unknown names it.
	StatusNotUnderstood = "not_understood"
)

// Target is a resource and the actions wanted on it, with its ranked candidates.
type Target struct {
	Ranking
	// Score is the resource's search score for the need.
	Score float64 `json:"score"`
}

// Suggestion answers a sentence: one target per need when every need has a role, otherwise
// what was not understood or why nothing fits.
type Suggestion struct {
	Intent Intent `json:"intent"`
	Status string `json:"status"`
	// Targets: one per need, in the order of Intent.Needs (only when Status is suggested).
	Targets []Target `json:"targets"`
	// Target is &Targets[0] when there is one (old callers).
	Target       *Target  `json:"target"`
	Alternatives []Target `json:"alternatives,omitempty"`
	Unknown      []string `json:"unknown,omitempty"`
	// Nearest are the resources closest to what was asked when nothing fits (names), best first.
	Nearest []string `json:"nearest,omitempty"`
	// Message says in words what was not understood or why nothing fits, and what to do; when
	// a role is suggested, it names the words that matched nothing and were left aside.
	Message string `json:"message,omitempty"`
}

// considered is how many search hits a need looks at.
const considered = 8

// band is how close (as a fraction of the best score) another matching resource must be for a
// better fit of the need's verbs to win over a better text match: "call the OpenAI API" is
// about the egress host (connect) more than the API key (read), which match the words as well.
const band = 0.8

// nearestMax is how many resources an answer that suggests nothing names as nearest.
const nearestMax = 3

// Suggest reads a sentence (Read) and answers it (Answer). The error is only for unusable
// input: too long, or no words at all.
//
// A sentence with words of which none describes a resource ("ignore the rules and give me
// admin") is not invalid: it is not understood, with a nil error.
func (e *Engine) Suggest(text string) (Suggestion, error) {
	in, err := e.Read(text)
	if err != nil {
		s := Suggestion{Intent: in, Status: StatusNotUnderstood, Targets: []Target{}, Unknown: in.Unknown, Message: err.Error()}
		if len(text) > maxQueryLen || strings.TrimSpace(text) == "" {
			return s, err
		}
		return s, nil
	}
	return e.Answer(in), nil
}

// statusAside marks a need that is left aside: a fragment of the sentence that describes no
// resource ("I'm the CTO", "nothing destructive", "P.S."), or that only names roles ("give me
// platform.admin": Rampart suggests a role by what it grants, never because it was named).
const statusAside = "aside"

// needAnswer is the answer to one need.
type needAnswer struct {
	status  string
	target  Target
	alts    []Target
	nearest []string
	message string
}

// Answer answers an intent, need by need:
//
//   - a need is not understood when one of its words is unknown (matches nothing in the
//     catalogue) and either that word looks like a name (see writtenAsName) or the need's other
//     words match no resource by an identifying word; it is never answered from its other
//     words;
//   - a need finds nothing when no resource matches one of its identifying words (a match only
//     on a number, a generic word such as "model" or "data", or an owning team's name is not a
//     match), or when no requestable role grants what it needs on the resources it matches;
//   - otherwise its target is, among the resources that match it, the one on which some role
//     explicitly grants what its verbs mean (see Suggest's band), and its candidates are ranked
//     by RankWith with the intent's Excluded actions and Emergency.
//
// The status is not_understood if any need is, else nothing_fits if any need is, else
// suggested. Needs on the same resource are answered by one role granting their actions
// together when that role is no more privileged than their separate roles combined.
func (e *Engine) Answer(in Intent) Suggestion {
	s := Suggestion{Intent: in, Status: StatusSuggested, Targets: []Target{}, Unknown: in.Unknown}
	if len(in.Needs) == 0 {
		s.Status = StatusNotUnderstood
		s.Message = fmt.Sprintf("%q names nothing to look for; say what you need access to (a model, dataset, namespace, secret, pipeline or host)", in.Text)
		return s
	}
	attributed := map[string]bool{}
	for _, n := range in.Needs {
		for _, w := range n.Words {
			attributed[w] = true
		}
	}
	var loose []string // unknown words no need claims
	for _, u := range in.Unknown {
		if !attributed[u] && !attributed[stem(strings.ToLower(u))] {
			loose = append(loose, u)
		}
	}
	opts := RankOptions{Emergency: in.Emergency, Exclude: in.Excluded}
	roleWords := e.roleWordsIn(in.Text)
	var aside, asideNear []string
	answers := make([]needAnswer, len(in.Needs))
	var msgs []string
	seenNear := map[string]bool{}
	for i, n := range in.Needs {
		a := e.answerNeed(in, n, loose, roleWords, opts)
		answers[i] = a
		if a.status == StatusSuggested {
			continue
		}
		if a.status == statusAside {
			aside = append(aside, a.message)
			asideNear = append(asideNear, a.nearest...)
			continue
		}
		if a.status == StatusNotUnderstood || s.Status == StatusSuggested {
			s.Status = a.status
		}
		msg := a.message
		if len(in.Needs) > 1 {
			msg = fmt.Sprintf("part %d (%s): %s", i+1, strings.Join(n.Words, " "), msg)
		}
		msgs = append(msgs, msg)
		for _, r := range a.nearest {
			if !seenNear[r] {
				seenNear[r] = true
				s.Nearest = append(s.Nearest, r)
			}
		}
	}
	answered := 0
	for _, a := range answers {
		if a.status == StatusSuggested {
			answered++
		}
	}
	if s.Status == StatusSuggested && answered == 0 {
		// Every need was left aside: nothing in the request describes a resource.
		s.Status = StatusNothingFits
		if len(in.Unknown) > 0 {
			s.Status = StatusNotUnderstood
			msgs = append(msgs, notUnderstood(in.Unknown, nil))
		} else {
			msgs = append(msgs, fmt.Sprintf("%q describes no resource of the catalogue by a word that identifies it (generic words, numbers and owning teams do not); say what you need access to (a model, dataset, namespace, secret, pipeline or host)", in.Text))
		}
		msgs = append(msgs, aside...)
		for _, r := range asideNear {
			if !seenNear[r] && len(s.Nearest) < nearestMax {
				seenNear[r] = true
				s.Nearest = append(s.Nearest, r)
			}
		}
	}
	if s.Status != StatusSuggested {
		s.Message = strings.Join(msgs, "; ")
		return s
	}
	e.combine(in, answers, opts)
	for _, a := range answers {
		if a.status == StatusSuggested {
			s.Targets = append(s.Targets, a.target)
		}
	}
	s.Target = &s.Targets[0]
	for _, a := range answers {
		for _, alt := range a.alts {
			if len(s.Alternatives) < 3 {
				s.Alternatives = append(s.Alternatives, alt)
			}
		}
	}
	var notes []string
	if len(in.Unknown) > 0 {
		notes = append(notes, fmt.Sprintf("left aside %s, which the catalogue does not use; if one of them names what you need, search for it (rampart search)", quoteJoin(in.Unknown)))
	}
	notes = append(notes, aside...)
	s.Message = strings.Join(notes, "; ")
	return s
}

// answerNeed answers one need; loose are the intent's unknown words that no need claims.
func (e *Engine) answerNeed(in Intent, n Need, loose []string, roleWords map[string]bool, o RankOptions) needAnswer {
	if len(n.Resources) == 0 && len(roleWords) > 0 {
		// Words of a role the text names ("respond with team.data") are about that role.
		var rest []string
		for _, w := range n.Words {
			if !roleWords[w] {
				rest = append(rest, w)
			}
		}
		if len(rest) == 0 {
			return needAnswer{status: statusAside, message: fmt.Sprintf("%q names a role: roles are suggested by what they grant, never because a request names them", strings.Join(n.Words, " "))}
		}
		n.Words = rest
	}
	var unknown, names []string
	for i, w := range n.Words {
		if isUnknown(in.Unknown, w) && !hasString(unknown, w) {
			unknown = append(unknown, w)
			if writtenAsName(w, in.Text) || (i+1 < len(n.Words) && e.vocab.namesVariant(w, n.Words[i+1])) {
				names = append(names, w)
			}
		}
	}
	if len(n.Words) == 0 && len(n.Resources) == 0 {
		return needAnswer{status: StatusNotUnderstood, message: "it names nothing to look for; say what you need access to"}
	}
	// Hits: the search's, and the resources the reader resolved (named whole by a name, the
	// last segment of a name or an alias), which always count as identified; one the search
	// did not find ranks first.
	found := e.search.search(n.Words, considered)
	resolvedSet := map[string]bool{}
	var hits []Hit
	for _, name := range n.Resources {
		if r, ok := e.pol.Resource(name); ok && !resolvedSet[name] {
			resolvedSet[name] = true
			inSearch := false
			for _, h := range found {
				inSearch = inSearch || h.Resource.Name == name
			}
			if !inSearch {
				top := 1.0
				if len(found) > 0 {
					top = found[0].Score
				}
				hits = append(hits, Hit{Resource: r, Score: top})
			}
		}
	}
	hits = append(hits, found...)
	resolved := len(resolvedSet)
	var strong []Hit
	for _, h := range hits {
		if resolvedSet[h.Resource.Name] || (e.vocab.identifies(h) && matchesSizes(n.Words, h) && e.vocab.fitsKind(n.Words, h)) {
			strong = append(strong, h)
		}
	}
	nearest := func(hs []Hit) []string {
		var out []string
		for _, h := range hs {
			if len(out) < nearestMax {
				out = append(out, h.Resource.Name)
			}
		}
		return out
	}
	if quantified(in.Text) && len(names) == 0 {
		if prefs, _, _ := wanted(n, in.Excluded); len(prefs) > 0 {
			if t, ok := e.answerAll(n, prefs, o); ok {
				return needAnswer{status: StatusSuggested, target: t}
			}
		}
	}
	if len(strong) == 0 && len(names) == 0 && resolved == 0 && len(unknown) == 0 && quantified(in.Text) && e.onlyGeneric(n.Words) {
		// "read every checkpoint we have, all models": a part made of generic words only
		// restates another part of a request for everything of a kind.
		return needAnswer{status: statusAside, nearest: nearest(hits), message: fmt.Sprintf("%q restates the request in generic words", strings.Join(n.Words, " "))}
	}
	if len(strong) == 0 && len(names) == 0 && resolved == 0 && !e.describesResource(n.Words) {
		return needAnswer{status: statusAside, nearest: nearest(hits), message: fmt.Sprintf("%q describes no resource", strings.Join(n.Words, " "))}
	}
	if len(names) > 0 && resolved == 0 {
		return needAnswer{status: StatusNotUnderstood, nearest: nearest(hits), message: notUnderstood(names, nearest(hits))}
	}
	if len(strong) == 0 {
		switch {
		case len(unknown) > 0:
			return needAnswer{status: StatusNotUnderstood, nearest: nearest(hits), message: notUnderstood(unknown, nearest(hits))}
		case len(loose) > 0:
			return needAnswer{status: StatusNotUnderstood, nearest: nearest(hits), message: notUnderstood(loose, nearest(hits))}
		case len(hits) == 0:
			return needAnswer{status: StatusNothingFits, message: fmt.Sprintf("no resource in the catalogue matches %q; search the catalogue with `rampart search`", strings.Join(n.Words, " "))}
		}
		return needAnswer{status: StatusNothingFits, nearest: nearest(hits), message: fmt.Sprintf(
			"no resource matches %q by a word that identifies it (only generic words, numbers or owning teams matched); the nearest are %s: name the one you need (rampart search)",
			strings.Join(n.Words, " "), strings.Join(nearest(hits), ", "))}
	}
	prefs, joint, dropped := wanted(n, in.Excluded)
	if len(prefs) == 0 {
		if len(dropped) > 0 {
			return needAnswer{status: StatusNotUnderstood, message: fmt.Sprintf("it asks for %s and also says not to; say which action you need", joinAnd(dropped))}
		}
		verb := "its verb"
		if vw := append(append([]string{}, unknown...), loose...); len(vw) > 0 {
			verb = quoteJoin(vw)
		}
		return needAnswer{status: StatusNotUnderstood, nearest: nearest(strong), message: fmt.Sprintf(
			"%s is not an action Rampart knows, so no role is suggested for %s; say what you need to do (read, write, run, deploy, debug…)", verb, strings.Join(n.Words, " "))}
	}
	type viable struct {
		t   Target
		fit int
	}
	var vs []viable
	var firstErr error
	var refused []Hit // better matches that no role fits
	for _, h := range strong {
		rk, fit, ok, err := e.resolve(h.Resource.Name, prefs, joint, o)
		if !ok {
			if firstErr == nil {
				firstErr = err
			}
			if resolvedSet[h.Resource.Name] {
				refused = append(refused, h)
			}
			continue
		}
		if r, worse := shadowedBy(h, refused); worse && !resolvedSet[h.Resource.Name] {
			// "deploy a new image to sjc2 train-prod", where nobody may deploy to train-prod:
			// the request names train-prod whole, and train-dev matches only words train-prod
			// matches too, fewer of them. It is a sibling of what was asked, not an answer.
			if firstErr == nil {
				_, firstErr = e.RankWith(r.Resource.Name, prefs[:1], o)
			}
			continue
		}
		vs = append(vs, viable{Target{Ranking: rk, Score: h.Score}, fit})
	}
	if len(vs) == 0 {
		best := strong[0].Resource.Name
		if firstErr == nil {
			_, firstErr = e.RankWith(best, prefs[:1], o)
		}
		var nc *NoCandidateError
		msg := fmt.Sprintf("no requestable role names %s on %s; ask its owners", joinAnd(prefs), best)
		if errors.As(firstErr, &nc) {
			msg = nc.Error()
		}
		return needAnswer{status: StatusNothingFits, nearest: nearest(strong), message: msg}
	}
	// Within the band, a resource the request names whole (its name, the last segment of it,
	// an alias) fits one step better than a search match: "I need the anthropic api" is the
	// egress host named so, not the key whose description says Anthropic.
	fit := func(v viable) int {
		if resolvedSet[v.t.Resource] {
			return v.fit - 1
		}
		return v.fit
	}
	best := 0
	for i, v := range vs {
		if v.t.Score >= band*vs[0].t.Score && fit(v) < fit(vs[best]) {
			best = i
		}
	}
	a := needAnswer{status: StatusSuggested, target: vs[best].t}
	for i, v := range vs {
		if i != best && len(a.alts) < 3 {
			a.alts = append(a.alts, v.t)
		}
	}
	return a
}

// shadowedBy reports whether h matched only words that a better hit — one the request names
// whole, and that no role fits — also matched, and fewer of them: it then answers a request
// about that resource with a sibling.
func shadowedBy(h Hit, better []Hit) (Hit, bool) {
	for _, b := range better {
		if b.Score <= h.Score || len(h.Matched) >= len(b.Matched) {
			continue
		}
		subset := true
		for _, w := range h.Matched {
			subset = subset && hasString(b.Matched, w)
		}
		if subset {
			return b, true
		}
	}
	return Hit{}, false
}

// wanted returns a need's preferred actions and joint actions without the excluded ones, and
// the excluded ones it asked for. A need without actions is one whose verb was not understood:
// it gets none, never a default.
func wanted(n Need, excluded []string) (prefs, joint, dropped []string) {
	for _, a := range n.Actions {
		if hasString(excluded, a) {
			dropped = append(dropped, a)
		} else {
			prefs = append(prefs, a)
		}
	}
	for _, a := range n.Joint {
		if !hasString(excluded, a) {
			joint = append(joint, a)
		} else if !hasString(dropped, a) {
			dropped = append(dropped, a)
		}
	}
	if len(prefs) == 0 && len(joint) > 0 {
		prefs = joint[:1]
	}
	return prefs, joint, dropped
}

// resolve finds the actions a need means on one resource, and how well they fit (lower is
// better): every joint action together (-1), else the first preferred action (its position),
// else, when the need asks to look (read, connect or use) and the resource's roles name only one
// action, itself a look-only one, that one (worst). Only actions some
// role names explicitly count: nobody "reads" a pipeline just because an admin role grants
// "*" on it (a role that reaches only this resource with "*", a scratch namespace's "anything in
// it", names every action: see New). Excluded actions (o.Exclude) are never the reason for a role.
func (e *Engine) resolve(resource string, prefs, joint []string, o RankOptions) (rk Ranking, fit int, ok bool, err error) {
	named := e.named[resource]
	allNamed := func(acts []string) bool {
		for _, a := range acts {
			if !named[a] {
				return false
			}
		}
		return true
	}
	var firstErr error
	try := func(acts []string) (Ranking, bool) {
		rk, err := e.RankWith(resource, acts, o)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return rk, err == nil
	}
	if len(joint) > 1 && allNamed(joint) {
		if rk, ok := try(joint); ok {
			return rk, -1, true, nil
		}
	}
	for i, a := range prefs {
		if named[a] {
			if rk, ok := try([]string{a}); ok {
				return rk, i, true, nil
			}
		}
	}
	// The fallback trades one look-only action for another ("access the wandb host" is
	// connect), never a wanted change for something else: "delete X" is not answered with read.
	if len(named) == 1 && ActionWeight(prefs[0]) == 1 {
		for a := range named {
			if hasString(o.Exclude, a) || ActionWeight(a) != 1 {
				break
			}
			if rk, ok := try([]string{a}); ok {
				return rk, len(prefs), true, nil
			}
		}
	}
	return Ranking{}, 0, false, firstErr
}

// combine answers needs that landed on the same resource with one role granting all their
// actions, when that role is no more privileged than the separate roles held together.
func (e *Engine) combine(in Intent, answers []needAnswer, o RankOptions) {
	for i := range answers {
		for j := i + 1; j < len(answers); j++ {
			if answers[i].status != StatusSuggested || answers[j].status != StatusSuggested {
				continue
			}
			ti, tj := answers[i].target, answers[j].target
			if ti.Resource != tj.Resource || len(ti.Candidates) == 0 || len(tj.Candidates) == 0 {
				continue
			}
			acts := append([]string{}, ti.Actions...)
			for _, a := range tj.Actions {
				if !hasString(acts, a) {
					acts = append(acts, a)
				}
			}
			rk, err := e.RankWith(ti.Resource, acts, o)
			if err != nil {
				continue
			}
			both := e.privilegeOf(ti.Candidates[0].Role, tj.Candidates[0].Role)
			if rk.Candidates[0].Privilege <= both {
				t := Target{Ranking: rk, Score: max(ti.Score, tj.Score)}
				answers[i].target, answers[j].target = t, t
			}
		}
	}
}

// privilegeOf is the privilege of holding all the roles at once: each (action, resource) pair
// counted once.
func (e *Engine) privilegeOf(roles ...string) float64 {
	pairs := map[string]bool{}
	for _, r := range roles {
		if ri := e.roles[r]; ri != nil {
			for p := range ri.pairs {
				pairs[p] = true
			}
		}
	}
	var sum float64
	for p := range pairs {
		a, r, _ := strings.Cut(p, "\x00")
		if res, ok := e.pol.Resource(r); ok {
			sum += ActionWeight(a) * TierWeight(res.Sensitivity)
		}
	}
	return sum
}

func notUnderstood(words, nearest []string) string {
	verb, it := "matches", "it"
	if len(words) > 1 {
		verb, it = "match", "them"
	}
	msg := fmt.Sprintf("%s %s nothing in the catalogue (no resource name, tag, alias or description uses %s), so no role is suggested from the other words", quoteJoin(words), verb, it)
	if len(nearest) > 0 {
		msg += "; the nearest resources are " + strings.Join(nearest, ", ")
	}
	return msg + ": check the name with `rampart search`, or ask an administrator to add it to the catalogue"
}

func quoteJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = fmt.Sprintf("%q", w)
	}
	return joinAnd(q)
}

// answerAll answers a need for every resource of a kind ("read every checkpoint", "读取全部天琴座
// 检查点"): the resources of the kind its words name that match all its identifying words, and
// the least privileged role granting a wanted action on every one of them. ok is false when the
// need names no kind, fewer than two resources qualify, or no role covers them all (the need is
// then answered as usual).
func (e *Engine) answerAll(n Need, prefs []string, o RankOptions) (Target, bool) {
	kinds := map[string]bool{}
	var ids []string
	for _, w := range n.Words {
		switch {
		case kindZh[w] != "":
			kinds[kindZh[w]] = true
		case e.vocab.kinds[w] || headNouns[w]:
			kinds[w] = true
		case !e.vocab.generic[w]:
			ids = append(ids, w)
		}
	}
	if len(kinds) == 0 {
		return Target{}, false
	}
	// The resources each identifying word matches, by the search index's own matching (names,
	// tags, aliases in any language, descriptions).
	matching := map[string]map[string]bool{}
	for _, w := range ids {
		matching[w] = map[string]bool{}
		for term := range e.search.expand(w) {
			for _, p := range e.search.postings[term] {
				matching[w][e.search.docs[p.doc].Name] = true
			}
		}
	}
	var set []*policy.Resource
	for _, r := range e.pol.Resources() {
		if !e.vocab.ofKind(r, kinds) {
			continue
		}
		all := true
		for _, w := range ids {
			all = all && matching[w][r.Name]
		}
		if all {
			set = append(set, r)
		}
	}
	if len(set) < 2 {
		return Target{}, false
	}
	for _, a := range prefs {
		rk, err := e.RankWith(set[0].Name, []string{a}, o)
		if err != nil {
			continue
		}
		var cands []*roleInfo
		var kept []Candidate
		for _, c := range rk.Candidates {
			every := true
			for _, r := range set[1:] {
				every = every && authz.RoleAllows(e.pol, c.Role, a, r.Name)
			}
			if every {
				cands = append(cands, e.roles[c.Role])
				kept = append(kept, c)
			}
		}
		if len(kept) == 0 {
			continue
		}
		names := make([]string, len(set))
		for i, r := range set {
			names[i] = r.Name
		}
		rk.Candidates = kept
		rk.Explanation = fmt.Sprintf("all %d resources asked for (%s): %s", len(set), strings.Join(names, ", "), explain(cands, rk))
		return Target{Ranking: rk}, true
	}
	return Target{}, false
}

// isUnknown reports whether the need word w is one of the reader's unknown words (which are
// as written, lowercased).
func isUnknown(unknown []string, w string) bool {
	for _, u := range unknown {
		if u == w || stem(strings.ToLower(u)) == w {
			return true
		}
	}
	return false
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
