package suggest

import (
	"fmt"
	"strings"
)

// verbs maps words people use to the actions they usually mean, first choice first. Later
// choices are tried only when no role grants the first on the resource found: "run the eval
// pipeline" means trigger, "run a shell in staging" means exec.
var verbs = map[string][]string{
	// reading
	"read": {"read"}, "view": {"read"}, "see": {"read"}, "look": {"read"}, "inspect": {"read"},
	"download": {"read", "connect"}, "fetch": {"read", "connect"}, "load": {"read"}, "get": {"read"},
	"copy": {"read"}, "eval": {"read", "trigger"}, "evaluate": {"read"}, "evaluation": {"read"},
	"evaluating": {"read"}, "benchmark": {"read"}, "analyze": {"read"}, "analyse": {"read"},
	"query": {"read", "connect"}, "browse": {"read"}, "inference": {"read"}, "sample": {"read"},
	"reproduce": {"read"}, "review": {"read"}, "study": {"read"}, "open": {"read"},
	"pull": {"read", "connect"}, "clone": {"connect", "read"}, "distill": {"read"}, "distillation": {"read"}, "compare": {"read"},
	"train": {"read"}, "finetune": {"read"}, "tune": {"read"}, "explore": {"read"}, "audit": {"read"}, "monitor": {"read"},
	"watch": {"read"}, "check": {"read"}, "investigate": {"read"}, "access": {"read", "connect", "use"},
	// writing
	"write": {"write"}, "upload": {"write"}, "modify": {"write"}, "edit": {"write"}, "update": {"write"},
	"change": {"write"}, "push": {"write"}, "save": {"write"}, "add": {"write"}, "store": {"write"},
	"overwrite": {"write"}, "append": {"write"}, "label": {"write"}, "annotate": {"write"},
	"curate": {"write"}, "fix": {"write"}, "rotate": {"write", "admin"}, "publish": {"write", "trigger"},
	"record": {"write"}, "refresh": {"write"}, "replace": {"write"},
	// deleting
	"delete": {"delete"}, "remove": {"delete"}, "purge": {"delete"}, "erase": {"delete"},
	"wipe": {"delete"}, "drop": {"delete"}, "destroy": {"delete"}, "prune": {"delete"},
	// executing in a namespace
	"exec": {"exec"}, "shell": {"exec"}, "ssh": {"exec"}, "debug": {"exec"}, "attach": {"exec"},
	"execute": {"exec", "trigger"}, "console": {"exec"}, "troubleshoot": {"exec"}, "forward": {"exec"},
	"restart": {"exec", "write", "trigger"},
	"run":     {"trigger", "exec", "use"}, "start": {"trigger", "exec"}, "launch": {"trigger", "deploy", "exec"},
	"trigger": {"trigger"}, "kick": {"trigger"}, "rerun": {"trigger"},
	// deploying
	"deploy": {"deploy", "trigger"}, "release": {"trigger", "deploy"}, "ship": {"deploy", "trigger"},
	"rollout": {"deploy"}, "roll": {"deploy"}, "promote": {"deploy", "trigger"}, "serve": {"deploy"},
	// administering
	"administer": {"admin"}, "admin": {"admin"}, "manage": {"admin", "write"}, "configure": {"admin", "write"},
	// networking
	"call": {"connect"}, "reach": {"connect"}, "connect": {"connect"}, "send": {"connect"},
	"contact": {"connect"}, "egress": {"connect"}, "talk": {"connect"},
	// compute
	"use": {"use", "read", "connect"}, "schedule": {"use"}, "allocate": {"use"}, "borrow": {"use"},
}

// stopWords carry no meaning for search.
var stopWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an the i me my we our us you your to of on in into for from with
		and or but at by as is are be been being am it its this that these those need needs want wants
		would like please can could should must some any all so just also do does did have has had
		there here then than about via up out new our their them they he she his her will shall may
		might get got getting let lets some more most very quick quickly today tomorrow now again
		job jobs task work team access permission permissions`) {
		stopWords[stem(w)] = true
	}
}

// Intent is what a sentence asks for, read deterministically.
type Intent struct {
	Text string `json:"text"`
	// Actions are the actions its verbs name, first choice first (read if none).
	Actions []string `json:"actions"`
	// Words are the words searched for resources.
	Words []string `json:"words"`
	// joint is the set of first-choice actions of every verb: "read and write" needs both.
	joint []string
	// prefs are every candidate action in order of preference.
	prefs []string
}

// ParseIntent reads the actions and the search words of a sentence.
func ParseIntent(text string) (Intent, error) {
	if len(text) > maxQueryLen {
		return Intent{}, fmt.Errorf("intent is %d bytes; the limit is %d", len(text), maxQueryLen)
	}
	in := Intent{Text: text}
	seenJoint, seenPref := map[string]bool{}, map[string]bool{}
	for _, w := range tokenize(text) {
		if acts, ok := verbs[w]; ok {
			if !seenJoint[acts[0]] {
				seenJoint[acts[0]] = true
				in.joint = append(in.joint, acts[0])
			}
			for _, a := range acts {
				if !seenPref[a] {
					seenPref[a] = true
					in.prefs = append(in.prefs, a)
				}
			}
		}
		if !stopWords[w] {
			in.Words = append(in.Words, w)
		}
	}
	if len(in.prefs) == 0 {
		in.prefs, in.joint = []string{"read"}, []string{"read"}
	}
	in.Actions = in.prefs
	if len(in.Words) == 0 {
		return in, fmt.Errorf("%q names no resource to look for; say what you need access to (a model, dataset, namespace, secret, pipeline or host)", text)
	}
	return in, nil
}

// Target is a resource and the actions wanted on it, with its ranked candidates.
type Target struct {
	Ranking
	// Score is the resource's search score for the intent.
	Score float64 `json:"score"`
}

// Outcomes of a suggestion (issue 18 contract; i18-answer owns the real answerer).
const (
	StatusSuggested     = "suggested"      // every need has a role
	StatusNothingFits   = "nothing_fits"   // some need has no requestable role; Nearest names the closest resources
	StatusNotUnderstood = "not_understood" // a key word matched nothing; Unknown names it
)

// Suggestion answers an intent: the best target and the other plausible ones.
type Suggestion struct {
	Intent Intent `json:"intent"`
	Status string `json:"status"`
	// Targets: one per need (only when Status is suggested).
	Targets      []Target `json:"targets"`
	Target       *Target  `json:"target"`
	Alternatives []Target `json:"alternatives,omitempty"`
	Unknown      []string `json:"unknown,omitempty"`
	Nearest      []string `json:"nearest,omitempty"`
	Message      string   `json:"message,omitempty"`
}

// considered is how many search hits an intent looks at.
const considered = 8

// band is how close (as a fraction of the best score) another matching resource must be for a
// better fit of the intent's verbs to win over a better text match: "call the OpenAI API" is
// about the egress host (connect) more than the API key (read), which match the words as well.
const band = 0.8

// Suggest reads an intent deterministically: among the resources that best match its words, the
// one on which some role explicitly grants what its verbs mean, and that resource's candidates,
// least privileged first. Other matching resources are returned as alternatives.
func (e *Engine) Suggest(text string) (Suggestion, error) {
	in, err := ParseIntent(text)
	if err != nil {
		return Suggestion{Intent: in}, err
	}
	s := Suggestion{Intent: in}
	hits := e.search.search(in.Words, considered)
	if len(hits) == 0 {
		return s, fmt.Errorf("no resource matches %q; search the catalogue with `rampart search`", strings.Join(in.Words, " "))
	}
	type viable struct {
		t    Target
		rank int
	}
	var vs []viable
	for _, h := range hits {
		if rk, rank, ok := e.resolve(h.Resource.Name, in); ok {
			vs = append(vs, viable{Target{Ranking: rk, Score: h.Score}, rank})
		}
	}
	if len(vs) == 0 {
		return s, fmt.Errorf("resources match %q (best: %s), but no requestable role grants %s on them; ask the owners of %s",
			strings.Join(in.Words, " "), hits[0].Resource.Name, joinAnd(in.joint), hits[0].Resource.Name)
	}
	best := 0
	for i, v := range vs {
		if v.t.Score >= band*vs[0].t.Score && v.rank < vs[best].rank {
			best = i
		}
	}
	s.Target, s.Targets, s.Status = &vs[best].t, []Target{vs[best].t}, StatusSuggested
	for i, v := range vs {
		if i != best && len(s.Alternatives) < 3 {
			s.Alternatives = append(s.Alternatives, v.t)
		}
	}
	return s, nil
}

// resolve finds the actions the intent means on one resource, and how well they fit (lower is
// better): every verb's first choice together (-1), else the first preferred action (its
// position), else, when the resource's roles name only one action, that one (worst). Only
// actions some role names explicitly count: nobody "reads" a pipeline just because an admin
// role grants "*" on it.
func (e *Engine) resolve(resource string, in Intent) (Ranking, int, bool) {
	named := e.named[resource]
	allNamed := func(acts []string) bool {
		for _, a := range acts {
			if !named[a] {
				return false
			}
		}
		return true
	}
	if len(in.joint) > 1 && allNamed(in.joint) {
		if rk, err := e.Rank(resource, in.joint); err == nil {
			return rk, -1, true
		}
	}
	for i, a := range in.prefs {
		if named[a] {
			if rk, err := e.Rank(resource, []string{a}); err == nil {
				return rk, i, true
			}
		}
	}
	if len(named) == 1 {
		for a := range named {
			if rk, err := e.Rank(resource, []string{a}); err == nil {
				return rk, len(in.prefs), true
			}
		}
	}
	return Ranking{}, 0, false
}
