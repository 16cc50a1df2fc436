package secrets

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"rampart.dev/rampart/policy"
)

// MaxNameLen is the longest secret name: its resource, secrets/<name>, stays within the
// policy's limit on resource names.
const MaxNameLen = 200

// CheckName validates a secret name (the part after secrets/): path-like segments separated by
// '/', each of lowercase ASCII letters, digits, '.', '_', '-' and ':', starting and ending with
// a letter or digit. Everything that could make one name stand for another is refused with the
// reason: a leading or trailing '/', an empty segment ("//"), "." and ".." segments, a
// backslash, control characters, uppercase (two names differing in case), and any non-ASCII
// character (Unicode confusables such as a Cyrillic 'а' for a Latin 'a'). The error wraps
// ErrInvalid.
func CheckName(name string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: secret name %q %s", ErrInvalid, name, fmt.Sprintf(format, args...))
	}
	switch {
	case name == "":
		return fmt.Errorf("%w: the secret name is empty; name it like ci/deploy-key", ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: the secret name is %d bytes; the limit is %d", ErrInvalid, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return bad("is not valid UTF-8 (byte %d); secret names are ASCII", i+1)
		case r < 0x20 || r == 0x7f:
			return bad("has a control character (U+%04X) at byte %d; secret names are printable ASCII", r, i+1)
		case r >= 0x80:
			return bad("has the non-ASCII character %q (U+%04X) at byte %d; secret names are ASCII so that no two names look alike", r, r, i+1)
		case r == '\\':
			return bad("has a backslash at byte %d; separate segments with '/'", i+1)
		case r >= 'A' && r <= 'Z':
			return bad("has the uppercase letter %q at byte %d; secret names are lowercase, so two names never differ only in case", r, i+1)
		}
		i += size
	}
	switch {
	case strings.HasPrefix(name, "/"):
		return bad("starts with '/'; names are relative, like ci/deploy-key")
	case strings.HasSuffix(name, "/"):
		return bad("ends with '/'")
	case strings.Contains(name, "//"):
		return bad("has an empty segment ('//')")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "." || seg == ".." {
			return bad("has a %q segment; secret names are not file paths", seg)
		}
	}
	if err := policy.ValidateResourceName(Resource(name)); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Resource is the policy resource of a secret: secrets/<name>.
func Resource(name string) string { return "secrets/" + name }
