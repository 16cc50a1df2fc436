package podsec

import (
	"errors"
	"strings"
)

// imageRef is a container image reference, normalized the way container
// runtimes normalize it before they pull (github.com/distribution/reference
// ParseNormalizedNamed, which containerd and CRI-O use): "nginx" is
// docker.io/library/nginx, "index.docker.io/x/y" is docker.io/x/y.
//
// The parser is written here, not imported, for speed; a differential test
// holds it to that library.
type imageRef struct {
	domain string // registry host[:port], as written (hosts compare case-insensitively)
	path   string // repository path, e.g. "library/nginx"
	tag    string // "" when absent
	digest string // "algorithm:hex", "" when absent
}

const (
	dockerHub        = "docker.io"
	dockerHubLegacy  = "index.docker.io"
	maxRepositoryLen = 255
)

var (
	errImageEmpty     = errors.New("the image is empty")
	errImageID        = errors.New("a bare 64-hex-digit image ID is not a reference")
	errImageUppercase = errors.New("the repository path must be lowercase")
	errImageDomain    = errors.New("the registry host is not a valid host[:port]")
	errImagePath      = errors.New("the repository path is not valid (lowercase letters, digits and . _ - separators, components joined by /)")
	errImageTooLong   = errors.New("the repository path is longer than 255 characters")
	errImageTag       = errors.New("the tag is not valid (up to 128 of letters, digits, _ . -, not starting with . or -)")
	errImageDigest    = errors.New("the digest is not valid (sha256:<64 lowercase hex>, sha384:<96>, or sha512:<128>)")
)

// parseImage parses and normalizes a container image reference.
func parseImage(s string) (imageRef, error) {
	if s == "" {
		return imageRef{}, errImageEmpty
	}
	if len(s) == 64 && isLowerHex(s) {
		return imageRef{}, errImageID
	}
	var r imageRef
	// Split off the registry exactly as splitDockerDomain does.
	first, rest, ok := strings.Cut(s, "/")
	switch {
	case !ok:
		r.domain, rest = dockerHub, "library/"+s
	case first == "localhost":
		r.domain = first
	case first == dockerHubLegacy:
		r.domain = dockerHub
	case strings.ContainsAny(first, ".:"), hasUpper(first):
		r.domain = first
	default:
		r.domain, rest = dockerHub, s
	}
	if r.domain == dockerHub && strings.IndexByte(rest, '/') < 0 {
		// "docker.io/nginx" is "docker.io/library/nginx" (the prefix
		// itself cannot be a name path component here: its '/' is new).
		rest = "library/" + rest
	}
	if !validDomain(r.domain) {
		return imageRef{}, errImageDomain
	}
	rest, r.digest, _ = strings.Cut(rest, "@")
	r.path, r.tag, ok = strings.Cut(rest, ":")
	if hasUpper(r.path) {
		return imageRef{}, errImageUppercase
	}
	if !validPath(r.path) {
		return imageRef{}, errImagePath
	}
	if len(r.path) > maxRepositoryLen {
		return imageRef{}, errImageTooLong
	}
	if ok && !validTag(r.tag) {
		return imageRef{}, errImageTag
	}
	if r.digest != "" || strings.HasSuffix(s, "@") {
		if !validDigest(r.digest) {
			return imageRef{}, errImageDigest
		}
	}
	return r, nil
}

// name is the normalized repository name, e.g. "docker.io/library/nginx".
func (r imageRef) name() string { return r.domain + "/" + r.path }

// under reports whether the image's repository is entry or under it, at
// whole components: entry "reg.example/team" covers "reg.example/team" and
// "reg.example/team/app", not "reg.example/teamx" nor
// "reg.example.evil.com/team". Hosts compare case-insensitively.
func (r imageRef) under(entry string) bool {
	entry = strings.TrimRight(entry, "/")
	host, path, hasPath := strings.Cut(entry, "/")
	if strings.EqualFold(host, dockerHubLegacy) {
		host = dockerHub
	}
	if host == "" || !strings.EqualFold(host, r.domain) {
		return false
	}
	if !hasPath {
		return true
	}
	return r.path == path || (len(r.path) > len(path) && r.path[len(path)] == '/' && strings.HasPrefix(r.path, path))
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isWord(c byte) bool { return isAlnum(c) || 'A' <= c && c <= 'Z' || c == '_' }

// validDomain: host[:port], host a DNS name (components of letters, digits
// and inner '-') or a bracketed IPv6 address.
func validDomain(d string) bool {
	host, port := d, ""
	if strings.HasPrefix(d, "[") {
		end := strings.IndexByte(d, ']')
		if end < 0 {
			return false
		}
		host, port = d[:end+1], d[end+1:]
		if len(host) == 2 {
			return false
		}
		for i := 1; i < len(host)-1; i++ {
			c := host[i]
			if !(c == ':' || '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	} else {
		if i := strings.IndexByte(d, ':'); i >= 0 {
			host, port = d[:i], d[i:]
		}
		for comp := range strings.SplitSeq(host, ".") {
			if comp == "" || comp[0] == '-' || comp[len(comp)-1] == '-' {
				return false
			}
			for i := 0; i < len(comp); i++ {
				c := comp[i]
				if !(isAlnum(c) || 'A' <= c && c <= 'Z' || c == '-') {
					return false
				}
			}
		}
	}
	if port == "" {
		return true
	}
	if port[0] != ':' || len(port) == 1 {
		return false
	}
	for i := 1; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

// validPath: components of [a-z0-9]+ joined by '.', '_', '__' or runs of
// '-', the components joined by '/'.
func validPath(p string) bool {
	for comp := range strings.SplitSeq(p, "/") {
		if comp == "" || !isAlnum(comp[0]) || !isAlnum(comp[len(comp)-1]) {
			return false
		}
		for i := 1; i < len(comp)-1; i++ {
			c := comp[i]
			switch {
			case isAlnum(c):
			case c == '-':
			case c == '.':
				if !isAlnum(comp[i+1]) || !isAlnum(comp[i-1]) {
					return false
				}
			case c == '_':
				// '_' or '__' between alphanumerics.
				if comp[i+1] == '_' {
					if !isAlnum(comp[i-1]) || i+2 >= len(comp) || !isAlnum(comp[i+2]) {
						return false
					}
					i++
				} else if !isAlnum(comp[i-1]) || !isAlnum(comp[i+1]) {
					return false
				}
			default:
				return false
			}
		}
		// A run of '-' may not touch '.' or '_': the loop above checks the
		// neighbours of '.' and '_', which must be alphanumeric.
	}
	return true
}

func validTag(t string) bool {
	if t == "" || len(t) > 128 || !isWord(t[0]) {
		return false
	}
	for i := 1; i < len(t); i++ {
		if !isWord(t[i]) && t[i] != '.' && t[i] != '-' {
			return false
		}
	}
	return true
}

func validDigest(d string) bool {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || !isLowerHex(hex) {
		return false
	}
	switch alg {
	case "sha256":
		return len(hex) == 64
	case "sha384":
		return len(hex) == 96
	case "sha512":
		return len(hex) == 128
	}
	return false
}
