package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on names. They keep hostile input small and keep names usable as Kubernetes label
// values and file names later.
const (
	maxNameLen      = 63
	maxResourceLen  = 253
	maxResourceSegs = 16
	maxSubjectLen   = 256
)

// ValidateName checks an identifier for groups, roles, policies, bindings, tags and kinds:
// lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit,
// at most 63 characters.
func ValidateName(s string) error {
	if s == "" {
		return errors.New("name is empty")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("name %.20q... is %d characters; the limit is %d", s, len(s), maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		edge := i == 0 || i == len(s)-1
		if isLowerAlnum(c) || (!edge && (c == '-' || c == '.' || c == '_')) {
			continue
		}
		return fmt.Errorf("name %q has %s at position %d; use lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit", s, charAt(s, i), i+1)
	}
	return nil
}

// ValidateAction checks an action name: lowercase letters, digits, '_' and '-', or "*".
func ValidateAction(s string) error {
	if s == "*" {
		return nil
	}
	if s == "" || len(s) > maxNameLen || !isLower(s[0]) {
		return fmt.Errorf("action %q must start with a lowercase letter and be at most %d characters", s, maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' && c != '_' {
			return fmt.Errorf("action %q has %s; use lowercase letters, digits, '-' and '_'", s, charAt(s, i))
		}
	}
	return nil
}

// ValidateResourceName checks a resource name: path-like segments separated by '/', each made of
// lowercase letters, digits, '.', '_', '-' and ':', starting and ending with a letter or digit.
// Empty segments, "." and "..", leading or trailing '/', uppercase, spaces and any other byte are
// refused, so a name can never smuggle a path trick or alias another resource.
func ValidateResourceName(s string) error {
	return validatePath(s, false)
}

// ValidatePattern checks a resource glob pattern: like a resource name, but a segment may contain
// '*' (any characters within one segment) or be exactly "**" (any number of segments).
func ValidatePattern(s string) error {
	return validatePath(s, true)
}

func validatePath(s string, pattern bool) error {
	what := "resource name"
	if pattern {
		what = "resource pattern"
	}
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > maxResourceLen {
		return fmt.Errorf("%s is %d characters; the limit is %d", what, len(s), maxResourceLen)
	}
	segs := strings.Split(s, "/")
	if len(segs) > maxResourceSegs {
		return fmt.Errorf("%s %q has %d segments; the limit is %d", what, s, len(segs), maxResourceSegs)
	}
	for _, seg := range segs {
		if seg == "" {
			return fmt.Errorf("%s %q has an empty segment (a leading, trailing or doubled '/')", what, s)
		}
		if pattern && seg == "**" {
			continue
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if isLowerAlnum(c) || (pattern && c == '*') {
				continue
			}
			edge := i == 0 || i == len(seg)-1
			if !edge && (c == '-' || c == '.' || c == '_' || c == ':') {
				continue
			}
			if c == '.' && (seg == "." || seg == "..") {
				return fmt.Errorf("%s %q contains a %q segment; names are not file paths", what, s, seg)
			}
			return fmt.Errorf("%s %q has %s in segment %q; use lowercase letters, digits, '.', '_', '-' and ':', starting and ending with a letter or digit", what, s, charAt(seg, i), seg)
		}
	}
	return nil
}

// MatchPattern reports whether the resource name matches the glob pattern. Both must be valid.
// It runs in time proportional to the product of the segment counts, whatever the pattern.
func MatchPattern(pattern, name string) bool {
	pat, segs := strings.Split(pattern, "/"), strings.Split(name, "/")
	// ok[j] says whether pat[i:] matches segs[j:], computed from the last pattern segment back.
	ok := make([]bool, len(segs)+1)
	ok[len(segs)] = true
	for i := len(pat) - 1; i >= 0; i-- {
		next := ok
		ok = make([]bool, len(segs)+1)
		if pat[i] == "**" {
			// "**" matches zero segments (next[j]) or one more (ok[j+1]).
			for j := len(segs); j >= 0; j-- {
				ok[j] = next[j] || (j < len(segs) && ok[j+1])
			}
			continue
		}
		for j := 0; j < len(segs); j++ {
			ok[j] = next[j+1] && matchSeg(pat[i], segs[j])
		}
	}
	return ok[0]
}

// matchSeg matches one segment where '*' stands for any run of characters, without recursion.
func matchSeg(p, s string) bool {
	pi, si, starP, starS := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			starP, starS = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case starP >= 0:
			starS++
			pi, si = starP+1, starS
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// Subject kinds. A subject is who a grant or binding is for, and who a decision is about.
const (
	// KindUser is a person: a bare user name such as "alice".
	KindUser = "user"
	// KindWorkload is a Kubernetes service account: "k8s:<cluster>/<namespace>/<name>".
	KindWorkload = "workload"
	// KindService is a machine client of the API: "service:<name>".
	KindService = "service"
	// KindPipeline is a CI pipeline run, authenticated by its CI system's ID token:
	// "ci:<issuer>/<repository>/<workflow>".
	KindPipeline = "pipeline"
)

// SubjectKind returns the kind of a valid subject string.
func SubjectKind(s string) string {
	switch {
	case strings.HasPrefix(s, "k8s:"):
		return KindWorkload
	case strings.HasPrefix(s, "service:"):
		return KindService
	case strings.HasPrefix(s, "ci:"):
		return KindPipeline
	default:
		return KindUser
	}
}

// ReservedUser is the name the ledger gives Rampart itself (audit.SystemActor: expiry, the
// settling of a quorum, checkpoints). No person may be named so, or their actions would read
// in the ledger as the system's, and the system's as theirs.
const ReservedUser = "rampart"

// ValidateSubject checks a subject: a user name (lowercase letters, digits and . _ @ + -, and
// not the reserved "rampart"), "k8s:<cluster>/<namespace>/<serviceaccount>", "service:<name>"
// or "ci:<issuer>/<repository>/<workflow>" (the repository one or more segments).
// Every path by which a user name enters Rampart (policy group members and bindings, the dev
// login, OpenID Connect sign-in, API tokens, requests) goes through it.
func ValidateSubject(s string) error {
	if s == "" {
		return errors.New("subject is empty")
	}
	if len(s) > maxSubjectLen {
		return fmt.Errorf("subject is %d characters; the limit is %d", len(s), maxSubjectLen)
	}
	switch SubjectKind(s) {
	case KindWorkload:
		parts := strings.Split(strings.TrimPrefix(s, "k8s:"), "/")
		if len(parts) != 3 {
			return fmt.Errorf("workload subject %q must look like k8s:<cluster>/<namespace>/<serviceaccount>", s)
		}
		for _, p := range parts {
			if err := ValidateName(p); err != nil {
				return fmt.Errorf("workload subject %q: %v", s, err)
			}
		}
		return nil
	case KindService:
		if err := ValidateName(strings.TrimPrefix(s, "service:")); err != nil {
			return fmt.Errorf("service subject %q: %v", s, err)
		}
		return nil
	case KindPipeline:
		issuer, name, ok := strings.Cut(strings.TrimPrefix(s, "ci:"), "/")
		if !ok || strings.Count(name, "/") < 1 {
			return fmt.Errorf("pipeline subject %q must look like ci:<issuer>/<repository>/<workflow>", s)
		}
		if err := ValidateName(issuer); err != nil {
			return fmt.Errorf("pipeline subject %q: issuer: %v", s, err)
		}
		if err := ValidateResourceName(name); err != nil {
			return fmt.Errorf("pipeline subject %q: %v", s, err)
		}
		return nil
	}
	if !isLowerAlnum(s[0]) {
		return fmt.Errorf("user name %q must start with a lowercase letter or digit", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isLowerAlnum(c) || c == '.' || c == '_' || c == '@' || c == '+' || c == '-' {
			continue
		}
		return fmt.Errorf("user name %q has %s; use lowercase letters, digits and . _ @ + -", s, charAt(s, i))
	}
	if s == ReservedUser {
		return fmt.Errorf("user name %q is reserved: the ledger names Rampart itself so; give the person another name (e.g. at the identity provider's username claim)", s)
	}
	return nil
}

// charAt names the character at byte i of s for a message: 'A', '\u202e', or a byte that is
// not UTF-8.
func charAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size == 1 {
		return fmt.Sprintf("byte 0x%02x (not UTF-8)", s[i])
	}
	return fmt.Sprintf("%q", r)
}

func isLower(c byte) bool      { return c >= 'a' && c <= 'z' }
func isLowerAlnum(c byte) bool { return isLower(c) || (c >= '0' && c <= '9') }
