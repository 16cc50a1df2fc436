// Package suggest finds resources and recommends the least privileged role that gives the access
// someone needs: ranked text search over the catalogue, candidate roles established by the
// decision engine itself (authz.RoleAllows), a privilege ranking that weighs actions by the
// sensitivity of what they reach (rank.go), and a deterministic reading (Engine.Read) and
// answering (Engine.Answer) of sentences in English and Chinese. An answer is suggested (a role
// per need), nothing_fits or not_understood; it is never built from words that matched nothing,
// and break-glass roles are candidates only for a stated emergency.
//
// An optional language model (the Chooser interface, implemented by suggest/llm) may choose
// among each need's candidates, but its answer is verified (Engine.Verify: a candidate that
// grants what is needed, with no more privilege than the deterministic choice, not break-glass
// and not granting an excluded action unless that choice does) and any failure, timeout or
// refusal falls back to the deterministic ranking and says so. Suggestions grant nothing: a
// request still needs every approval its policy asks for.
package suggest

import (
	"fmt"

	"rampart.dev/rampart/policy"
)

// Engine answers searches and ranks roles over one policy. It is immutable and safe for
// concurrent use; build a new one when the policy changes.
type Engine struct {
	pol     *policy.Policy
	search  *searchIndex
	roles   map[string]*roleInfo
	actions []string // every concrete action named in the policy, sorted
	// named maps a resource to the actions some requestable role names explicitly on it (or
	// grants with "*" when that role reaches only it).
	named map[string]map[string]bool
	vocab *answerVocab
}

// New indexes the policy's catalogue and roles.
func New(pol *policy.Policy) *Engine {
	roles, actions := buildRoles(pol)
	e := &Engine{pol: pol, search: newSearchIndex(pol), roles: roles, actions: actions, named: map[string]map[string]bool{}, vocab: newAnswerVocab(pol)}
	for role := range roles {
		reach := pol.RoleResources(role)
		for _, res := range reach {
			acts := pol.RoleActions(role, res.Name)
			if len(reach) == 1 && hasString(acts, "*") {
				// "*" on exactly one resource ("anything in the scratch namespace") is how
				// that resource's access is written, not an administrator's reach.
				acts = actions
			}
			for _, a := range acts {
				if a == "*" {
					continue
				}
				if e.named[res.Name] == nil {
					e.named[res.Name] = map[string]bool{}
				}
				e.named[res.Name][a] = true
			}
		}
	}
	return e
}

// Policy is the policy the engine was built from.
func (e *Engine) Policy() *policy.Policy { return e.pol }

// Actions returns every concrete action the policy names.
func (e *Engine) Actions() []string { return e.actions }

// Search ranks resources by how well their name, tags, kind, owners and description match the
// query (BM25F; a misspelt word of five or more letters still matches at edit distance 1).
func (e *Engine) Search(query string, limit int) ([]Hit, error) {
	if len(query) > maxQueryLen {
		return nil, fmt.Errorf("query is %d bytes; the limit is %d", len(query), maxQueryLen)
	}
	words := tokenize(query)
	if len(words) == 0 {
		return nil, fmt.Errorf("query %q has no words to search for", query)
	}
	return e.search.search(words, limit), nil
}

// didYouMean suggests the closest resource name for a mistyped one.
func (e *Engine) didYouMean(name string) string {
	hits := e.search.search(tokenize(name), 1)
	if len(hits) == 0 {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", hits[0].Resource.Name)
}
