package admission

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/podsec"
)

// Exceptions are grants like any other. An exception to check C for the pods that run as
// service account SA in namespace NS is an active grant, to the subject k8s:<cluster>/NS/SA, of
// a role that allows the action ExemptAction(C) on the resource namespaces/NS. It is requested,
// approved (under whatever approval policy covers namespaces/NS: multi-party by default),
// renewed, revoked and expires through the AccessManager workflow, and it applies exactly while
// the decision engine says it does — at admission and in scans alike, so both stop honouring it
// at the same instant.

// ExemptAction is the action that waives check: "exempt_" and the check id with '.' as '_'
// (check ids use no '_', so the mapping is one-to-one).
func ExemptAction(check string) string { return "exempt_" + strings.ReplaceAll(check, ".", "_") }

// NamespaceResource is the catalogue resource exceptions in namespace ns are granted on.
func NamespaceResource(ns string) string { return "namespaces/" + ns }

// UsedException is an exception that waived a check.
type UsedException struct {
	Check     string    `json:"check"`
	GrantID   string    `json:"grant_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ExceptionSet answers, for one workload, whether a check is waived, and remembers which
// exceptions were used.
type ExceptionSet struct {
	decide   func(authz.Query) authz.Decision
	subject  string
	ns       string
	deployer *Deployer
	mu       sync.Mutex
	used     []UsedException
	borrowed []borrowedException
}

// borrowedException is an exception that would have waived a check, had its deployer
// requested it.
type borrowedException struct {
	check    string
	decision authz.Decision
}

// Exceptions returns the exception set of workload wl in namespace ns.
func Exceptions(decide func(authz.Query) authz.Decision, cluster, ns string, wl podsec.Workload) *ExceptionSet {
	sa := ""
	if wl.Spec != nil {
		sa = wl.Spec.ServiceAccountName
	}
	return &ExceptionSet{decide: decide, subject: ServiceAccountSubject(cluster, ns, sa), ns: ns}
}

// For narrows the set to the exceptions d may use (see Deployer): when d is set and not
// trusted, an exception someone else requested waives nothing, and is reported by Borrowed.
func (e *ExceptionSet) For(d *Deployer) *ExceptionSet {
	e.deployer = d
	return e
}

// Exempt reports whether an active exception waives check.
func (e *ExceptionSet) Exempt(check string) bool {
	if !Waivable(check) {
		return false // protected data needs a grant to read it, never an exception
	}
	q := authz.Query{Subject: e.subject, Action: ExemptAction(check), Resource: NamespaceResource(e.ns)}
	d := e.decide(q)
	if !d.Allowed || d.GrantID == "" {
		// Exceptions are time-bound: a standing binding that allows an exempt action does not
		// make one.
		return false
	}
	if e.deployer != nil && e.deployer.Trusted == "" {
		q.RequestedBy = e.deployer.Subject
		own := e.decide(q)
		if !own.Allowed || own.GrantID == "" {
			e.mu.Lock()
			e.borrowed = append(e.borrowed, borrowedException{check: check, decision: d})
			e.mu.Unlock()
			return false
		}
		d = own
	}
	e.mu.Lock()
	e.used = append(e.used, UsedException{Check: check, GrantID: d.GrantID, ExpiresAt: d.ExpiresAt})
	e.mu.Unlock()
	return true
}

// Borrowed returns the violations (check rampart.workload-grant) of the exceptions that would
// have waived a check had the deployer requested them. field is the pod spec's path.
func (e *ExceptionSet) Borrowed(field string) []podsec.Violation {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []podsec.Violation
	for _, b := range e.borrowed {
		v := borrowed(field+".serviceAccountName", "an exception waives "+b.check+" for the pods of this service account", e.subject, b.decision, e.deployer, NamespaceResource(e.ns))
		v.Fix = fmt.Sprintf("have %s deploy it, or ask for an exception yourself: %s", requesterName(b.decision), ExceptionCommand(clusterOf(e.subject), e.ns, accountOf(e.subject), b.check))
		out = append(out, v)
	}
	return out
}

// clusterOf and accountOf take a workload subject k8s:<cluster>/<namespace>/<account> apart.
func clusterOf(subject string) string {
	c, _, _ := strings.Cut(strings.TrimPrefix(subject, "k8s:"), "/")
	return c
}

func accountOf(subject string) string { return subject[strings.LastIndexByte(subject, '/')+1:] }

// Used returns the exceptions that waived a check so far.
func (e *ExceptionSet) Used() []UsedException {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]UsedException(nil), e.used...)
}
