package egress

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// ConnectAction is the action a grant must give on egress/<host>:<port> to open a destination
// just in time.
const ConnectAction = "connect"

// ResourceFor names the catalogue resource of a destination: egress/<host>:<port>.
func ResourceFor(t Target) string { return "egress/" + t.Host + ":" + strconv.Itoa(t.Port) }

// Rule kinds: what allowed or denied a connection.
const (
	RuleDenyList = "deny-list"
	RulePolicy   = "egress-policy"
	RuleGrant    = "grant"
	RuleDefault  = "default-deny"
	RuleAddress  = "address"
	RuleBudget   = "budget"
	RuleLimit    = "tunnel-limit"
	RuleRequest  = "request"
	// RuleIdentity: the caller's identity no longer holds (a disabled person).
	RuleIdentity = "identity"
)

// Grants is what the gateway asks the decision engine (authz.Index): whether a grant lets a
// subject connect to a catalogue destination now, and whether a person is disabled.
type Grants interface {
	Check(authz.Query) authz.Decision
	Disabled(subject string) bool
}

// Decision is the outcome for one connection attempt, with its evidence.
type Decision struct {
	Allowed bool
	// Reported is set when a report-mode policy let a connection through that enforcement would
	// have refused.
	Reported bool
	Subject  string
	Target   Target
	// Rule is the kind of rule that decided; Name names it (a policy, a grant).
	Rule string
	Name string
	// Reason is a sentence for people.
	Reason string
	// GrantID and GrantExpires are set when a just-in-time grant allowed the connection.
	GrantID      string
	GrantExpires time.Time
	// Addr is the checked address to dial.
	Addr netip.AddrPort
}

// decideRules applies the deny list, the subject's egress policies and just-in-time grants to a
// normalised destination. It does no I/O: the address checks and the dial come after.
func decideRules(pol *policy.Policy, ix Grants, subject string, t Target) Decision {
	d := Decision{Subject: subject, Target: t}
	if ix != nil && subject != "" && ix.Disabled(subject) {
		// Invariant 8: a disabled person's egress policies and grants allow nothing, whatever
		// credential (a client certificate in their name) they still hold.
		d.Rule, d.Reason = RuleIdentity, fmt.Sprintf("%s is disabled", subject)
		return d
	}
	for _, h := range pol.EgressDeny() {
		if policy.MatchEgressHost(h, t.Host) {
			d.Rule, d.Name = RuleDenyList, h
			d.Reason = fmt.Sprintf("%s is on the global egress deny list (%s), which no policy or grant opens", t.Host, h)
			return d
		}
	}
	policies := pol.EgressPoliciesFor(subject)
	reportOnly := len(policies) > 0
	for _, p := range policies {
		if p.Mode != policy.EgressReport {
			reportOnly = false
		}
		for _, r := range p.Allow {
			if policy.MatchEgressHost(r.Host, t.Host) && containsInt(r.Ports, t.Port) {
				d.Allowed, d.Rule, d.Name = true, RulePolicy, p.Name
				d.Reason = fmt.Sprintf("allowed by egress policy %s (%s)", p.Name, ruleText(r))
				return d
			}
		}
	}
	if ix != nil && subject != "" {
		res := ResourceFor(t)
		if _, ok := pol.Resource(res); ok {
			dec := ix.Check(authz.Query{Subject: subject, Action: ConnectAction, Resource: res})
			if dec.Allowed {
				d.Allowed, d.Rule, d.Name = true, RuleGrant, dec.GrantID
				d.GrantID, d.GrantExpires = dec.GrantID, dec.ExpiresAt
				d.Reason = dec.Reason
				if d.Name == "" {
					d.Name = dec.Binding
				}
				return d
			}
			// The decision engine's reason ends with its own advice; the refusal gives one next
			// step (nextStep), so only the reason is kept.
			why, _, _ := strings.Cut(strings.TrimPrefix(dec.Reason, "denied: "), "; request it with: ")
			d.Rule, d.Reason = RuleDefault, fmt.Sprintf("no egress policy allows %s to %s, and %s", who(subject), t, why)
		}
	}
	if d.Reason == "" {
		_, listed := pol.Resource(ResourceFor(t))
		switch {
		case !listed:
			d.Reason = fmt.Sprintf("no egress policy allows %s to %s, and it is not in the catalogue, so no grant can", who(subject), t)
		case subject == "":
			d.Reason = fmt.Sprintf("no egress policy allows %s to %s, and grants are only for identified callers", who(subject), t)
		default:
			d.Reason = fmt.Sprintf("no egress policy or grant allows %s to %s", who(subject), t)
		}
		d.Rule = RuleDefault
	}
	if reportOnly {
		d.Allowed, d.Reported = true, true
		d.Reason = "report mode: " + d.Reason + "; allowed because every policy for this subject is in report mode"
	}
	return d
}

// nextStep tells a refused client what to do about it, consistently with the rule that refused
// it: nothing opens the deny list, so it never says to request access there.
func nextStep(pol *policy.Policy, subject string, t Target, rule string) string {
	switch rule {
	case RuleDenyList:
		return "Nothing can be requested to open it; if the work needs it, ask the security team to take it off the deny list (Settings: egress_deny)"
	case RuleIdentity:
		return "An administrator can enable the account again (rampart user enable)"
	}
	step := fmt.Sprintf("ask the security team to add %s to an EgressPolicy, or to the catalogue as the resource %s so that it can be requested (it is not in the catalogue)", t, ResourceFor(t))
	if _, ok := pol.Resource(ResourceFor(t)); ok {
		step = "request access: rampart request create --resource " + ResourceFor(t) + " --action " + ConnectAction + ` --reason "why you need it"`
	}
	if subject == "" {
		return "Authenticate first (a proxy URL with your token as the password, http://rampart:TOKEN@gateway; Proxy-Authorization: Bearer TOKEN; or a client certificate), then " + step
	}
	return strings.ToUpper(step[:1]) + step[1:]
}

// tooMany is the refusal of a subject over its limit of concurrent connections.
func tooMany(t Target, subject string, limit int) *proxyError {
	return &proxyError{status: http.StatusTooManyRequests,
		msg:  fmt.Sprintf("denied %s: %s already has %d open connections through the gateway (rule: %s)", t, who(subject), limit, RuleLimit),
		next: "Close some, or retry when they end"}
}

func who(subject string) string {
	if subject == "" {
		return "an unidentified client"
	}
	return subject
}

func ruleText(r policy.EgressRule) string {
	return fmt.Sprintf("host %s, ports %v", r.Host, r.Ports)
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
