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

// ParseIntent reads the actions and the search words of a sentence.
func ParseIntent(text string) (Intent, error) {
	if len(text) > maxQueryLen {
		return Intent{}, fmt.Errorf("intent is %d bytes; the limit is %d", len(text), maxQueryLen)
	}
	in := Intent{Text: text, Lang: "en"}
	var joint, prefs []string
	seenJoint, seenPref := map[string]bool{}, map[string]bool{}
	for _, w := range tokenize(text) {
		if acts, ok := verbs[w]; ok {
			if !seenJoint[acts[0]] {
				seenJoint[acts[0]] = true
				joint = append(joint, acts[0])
			}
			for _, a := range acts {
				if !seenPref[a] {
					seenPref[a] = true
					prefs = append(prefs, a)
				}
			}
		}
		if !stopWords[w] {
			in.Words = append(in.Words, w)
		}
	}
	if len(prefs) == 0 {
		prefs, joint = []string{"read"}, []string{"read"}
	}
	in.Actions = prefs
	need := Need{Actions: prefs, Words: in.Words}
	if len(joint) > 1 {
		need.Joint = joint
	}
	in.Needs = []Need{need}
	if len(in.Words) == 0 {
		return in, fmt.Errorf("%q names no resource to look for; say what you need access to (a model, dataset, namespace, secret, pipeline or host)", text)
	}
	return in, nil
}
