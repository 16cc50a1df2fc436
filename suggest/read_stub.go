package suggest

// This file is a stand-in for the catalogue-aware reader (issue 18, part A1), which replaces
// it: the answering side is built and tested against the Intent shape below.

// Need is one thing a request asks for: actions on the resource(s) some words describe.
type Need struct {
	// Actions wanted, first choice first: later ones are tried only when no role grants the
	// first on the resource found ("run the pipeline" → trigger, "run a shell" → exec).
	Actions []string `json:"actions"`
	// Joint are actions wanted together ("read and write"): all must be granted.
	Joint []string `json:"joint,omitempty"`
	// Words are the normalised content words that describe the resource.
	Words []string `json:"words"`
	// Resources, when the reader already resolved words to catalogue resources (an alias, an
	// exact name), are those names; the answerer may still search Words.
	Resources []string `json:"resources,omitempty"`
}

// Intent is what a sentence asks for, read deterministically.
type Intent struct {
	Text string `json:"text"`
	Lang string `json:"lang"`
	// Needs: one per distinct thing asked for. At least one when the reading succeeded.
	Needs []Need `json:"needs"`
	// Excluded are actions the sentence says it does not want.
	Excluded []string `json:"excluded,omitempty"`
	// Unknown are content words that match nothing: no verb, no catalogue word, no stop word.
	Unknown []string `json:"unknown,omitempty"`
	// Emergency is true when the sentence says it is an emergency: only then may a
	// break-glass role be suggested.
	Emergency bool `json:"emergency,omitempty"`
	// Actions and Words: the first need's, kept for callers of the old shape.
	Actions []string `json:"actions"`
	Words   []string `json:"words"`
}

var stubEmergency = map[string]bool{"emergency": true, "incident": true, "outage": true, "breakglass": true, "sev1": true}
var stubNegation = map[string]bool{"not": true, "no": true, "without": true, "don": true, "never": true}

// Read reads a sentence against this engine's catalogue vocabulary.
func (e *Engine) Read(text string) (Intent, error) {
	in, err := ParseIntent(text)
	if err != nil {
		return in, err
	}
	words := tokenize(text)
	negated := map[string]bool{}
	for i, w := range words {
		if stubEmergency[w] || (w == "break" && i+1 < len(words) && words[i+1] == "glass") {
			in.Emergency = true
		}
		if stubNegation[w] {
			for j := i + 1; j < len(words) && j <= i+3; j++ {
				if acts, ok := verbs[words[j]]; ok {
					negated[words[j]] = true
					if !hasString(in.Excluded, acts[0]) {
						in.Excluded = append(in.Excluded, acts[0])
					}
					break
				}
			}
		}
	}
	for _, w := range in.Words {
		if _, verb := verbs[w]; verb || stubEmergency[w] || stubNegation[w] || w == "glass" {
			continue
		}
		if len(e.search.expand(w)) == 0 && !hasString(in.Unknown, w) {
			in.Unknown = append(in.Unknown, w)
		}
	}
	if len(negated) > 0 {
		// Recompute the wanted actions from the verbs that were not negated.
		var prefs, joint []string
		for _, w := range words {
			if acts, ok := verbs[w]; ok && !negated[w] {
				if !hasString(joint, acts[0]) {
					joint = append(joint, acts[0])
				}
				for _, a := range acts {
					if !hasString(prefs, a) {
						prefs = append(prefs, a)
					}
				}
			}
		}
		if len(prefs) == 0 {
			prefs, joint = []string{"read"}, []string{"read"}
		}
		n := &in.Needs[0]
		n.Actions, n.Joint = prefs, nil
		if len(joint) > 1 {
			n.Joint = joint
		}
		in.Actions = prefs
	}
	return in, nil
}
