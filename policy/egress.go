package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// EgressPolicy allows outbound destinations to subjects; the egress gateway denies everything
// else. A destination can also be granted just in time: a grant of a role giving "connect" on the
// resource egress/<host>:<port>.
type EgressPolicy struct {
	Name        string `yaml:"-"`
	Description string `yaml:"description"`
	// Subjects are users, workloads, services, group:NAME, or "default" for callers the gateway
	// cannot identify.
	Subjects []string `yaml:"subjects"`
	// Mode is "enforce" (the default) or "report": report-mode policies let denied connections
	// through and log what enforcement would have refused, for rolling a policy out.
	Mode  string       `yaml:"mode"`
	Allow []EgressRule `yaml:"allow"`
	// Budget limits the bytes a subject may send out per window, across all its connections.
	Budget *EgressBudget `yaml:"budget"`

	src source
}

// EgressRule is one allowed destination.
type EgressRule struct {
	// Host is an exact host name ("api.openai.com"), a suffix wildcard ("*.huggingface.co",
	// which matches subdomains but not huggingface.co itself), or an IP address.
	Host string `yaml:"host"`
	// Ports allowed; 443 if empty.
	Ports []int `yaml:"ports"`
}

// EgressBudget is an exfiltration budget.
type EgressBudget struct {
	Bytes  ByteSize `yaml:"bytes"`
	Window Duration `yaml:"window"`
}

// Egress modes.
const (
	EgressEnforce = "enforce"
	EgressReport  = "report"
)

// DefaultSubject names callers without an identity in EgressPolicy subjects.
const DefaultSubject = "default"

// ByteSize is a number of bytes, written as a whole number with an optional unit: 1048576, 512KiB,
// 10MiB, 1GiB, 500MB, 2GB.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}

// UnmarshalText parses a size.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size; write a positive whole number with an optional unit (512KiB, 10MiB, 1GiB, 500MB)", text)
	}
	*b = ByteSize(n * mult)
	return nil
}

// ValidateEgressHost checks a destination host as written in a rule or deny list: a lowercase
// DNS name, "*." followed by one, or an IP address (IPv6 without brackets).
func ValidateEgressHost(h string) error {
	if h == "" {
		return fmt.Errorf("host is empty")
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return fmt.Errorf("host %q: a wildcard may only be a leading \"*.\"", h)
	}
	if len(name) > 253 {
		return fmt.Errorf("host %q is over 253 characters", h)
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 && h != name {
		return fmt.Errorf("host %q: a wildcard needs a domain of at least two labels", h)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("host %q has an empty or over-long label", h)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if isLowerAlnum(c) || (c == '-' && i > 0 && i < len(l)-1) {
				continue
			}
			return fmt.Errorf("host %q has %s; write lowercase host names without scheme, port or path", h, charAt(l, i))
		}
	}
	allDigits := true
	for _, l := range labels {
		for i := 0; i < len(l); i++ {
			allDigits = allDigits && l[i] >= '0' && l[i] <= '9'
		}
	}
	if allDigits {
		return fmt.Errorf("host %q looks like an IP address but is not one; write it in dotted-decimal form", h)
	}
	return nil
}

// MatchEgressHost reports whether a normalised destination host matches a rule or deny-list host.
func MatchEgressHost(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(host, "."+suffix)
	}
	return pattern == host
}

func (p *Policy) validateEgress(e *EgressPolicy) {
	if len(e.Subjects) == 0 {
		e.src.errorf("subjects", "list who the policy applies to: users, workloads, group:NAME, or default")
	}
	for i, s := range e.Subjects {
		field := fmt.Sprintf("subjects[%d]", i)
		switch g, isGroup := strings.CutPrefix(s, "group:"); {
		case s == DefaultSubject:
		case isGroup:
			p.groupRef(e.src, field, g)
		default:
			if err := ValidateSubject(s); err != nil {
				e.src.errorf(field, "%v", err)
			}
		}
	}
	switch e.Mode {
	case "":
		e.Mode = EgressEnforce
	case EgressEnforce, EgressReport:
	default:
		e.src.errorf("mode", "unknown mode %q; use enforce or report", e.Mode)
	}
	if len(e.Allow) == 0 && e.Budget == nil {
		e.src.errorf("allow", "list at least one allowed destination {host: …, ports: […]}")
	}
	for i := range e.Allow {
		r := &e.Allow[i]
		field := fmt.Sprintf("allow[%d]", i)
		if err := ValidateEgressHost(r.Host); err != nil {
			e.src.errorf(field+".host", "%v", err)
		}
		if len(r.Ports) == 0 {
			r.Ports = []int{443}
		}
		for j, port := range r.Ports {
			if port < 1 || port > 65535 {
				e.src.errorf(fmt.Sprintf("%s.ports[%d]", field, j), "port %d is not between 1 and 65535", port)
			}
		}
		sort.Ints(r.Ports)
	}
	if b := e.Budget; b != nil {
		if b.Bytes <= 0 {
			e.src.errorf("budget.bytes", "budget.bytes is required, e.g. 10GiB")
		}
		if b.Window.Std() < 1e9 {
			e.src.errorf("budget.window", "budget.window must be at least 1s, e.g. 1h")
		}
	}
}

// EgressPolicies returns every egress policy, sorted by name.
func (p *Policy) EgressPolicies() []*EgressPolicy { return sortedValues(p.egress) }

// EgressDeny returns the global egress deny list (Settings.egress_deny): hosts that no rule and
// no grant can open.
func (p *Policy) EgressDeny() []string { return p.settings.EgressDeny }

// EgressPoliciesFor returns the egress policies that apply to subject: naming it, one of its
// groups, or (for callers without identity) "default".
func (p *Policy) EgressPoliciesFor(subject string) []*EgressPolicy {
	var out []*EgressPolicy
	for _, e := range p.EgressPolicies() {
		for _, s := range e.Subjects {
			g, isGroup := strings.CutPrefix(s, "group:")
			if s == subject || (subject == "" && s == DefaultSubject) || (isGroup && subject != "" && p.InGroup(subject, g)) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}
