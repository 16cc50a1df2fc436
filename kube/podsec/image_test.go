package podsec

import (
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// The reference parser container runtimes use is the oracle for ours.

func TestParseImageNormalizes(t *testing.T) {
	tests := []struct{ in, name, tag, digest string }{
		{"nginx", "docker.io/library/nginx", "", ""},
		{"nginx:1.27", "docker.io/library/nginx", "1.27", ""},
		{"library/nginx", "docker.io/library/nginx", "", ""},
		{"docker.io/nginx", "docker.io/library/nginx", "", ""},
		{"index.docker.io/nginx", "docker.io/library/nginx", "", ""},
		{"index.docker.io/team/app", "docker.io/team/app", "", ""},
		{"team/app", "docker.io/team/app", "", ""},
		{"localhost/app", "localhost/app", "", ""},
		{"localhost:5000/app:v1", "localhost:5000/app", "v1", ""},
		{"Registry.Example/app", "Registry.Example/app", "", ""},
		{"REGISTRY/app", "REGISTRY/app", "", ""},
		{"[::1]:5000/app", "[::1]:5000/app", "", ""},
		{"registry.internal.example/a/b/c:t@" + testDigest, "registry.internal.example/a/b/c", "t", testDigest},
		{"registry.internal.example.evil.com/x", "registry.internal.example.evil.com/x", "", ""},
	}
	for _, tt := range tests {
		r, err := parseImage(tt.in)
		if err != nil {
			t.Errorf("parseImage(%q): %v", tt.in, err)
			continue
		}
		if r.name() != tt.name || r.tag != tt.tag || r.digest != tt.digest {
			t.Errorf("parseImage(%q) = %s tag %q digest %q; want %s tag %q digest %q", tt.in, r.name(), r.tag, r.digest, tt.name, tt.tag, tt.digest)
		}
	}
}

func TestImageUnder(t *testing.T) {
	tests := []struct {
		image, entry string
		want         bool
	}{
		{"registry.internal.example/app", "registry.internal.example/", true},
		{"registry.internal.example/app", "registry.internal.example", true},
		{"registry.internal.example.evil.com/app", "registry.internal.example/", false},
		{"registry.internal.example.evil.com/app", "registry.internal.example", false},
		{"registry.internal.example:5000/app", "registry.internal.example/", false},
		{"registry.internal.example:5000/app", "registry.internal.example:5000", true},
		{"REGISTRY.internal.example/app", "registry.internal.example/", true},
		{"registry.internal.example/research/app", "registry.internal.example/research/", true},
		{"registry.internal.example/research", "registry.internal.example/research", true},
		{"registry.internal.example/researchx/app", "registry.internal.example/research", false},
		{"registry.internal.example/other/research/app", "registry.internal.example/research", false},
		{"nginx", "docker.io/library/", true},
		{"nginx", "index.docker.io/library", true},
		{"nginx", "docker.io/team", false},
		{"evil.com/registry.internal.example/app", "registry.internal.example/", false},
		{"registry.internal.example/app", "", false},
		{"registry.internal.example/app", "/", false},
	}
	for _, tt := range tests {
		r, err := parseImage(tt.image)
		if err != nil {
			t.Fatalf("parseImage(%q): %v", tt.image, err)
		}
		if got := r.under(tt.entry); got != tt.want {
			t.Errorf("%q under %q = %v, want %v", tt.image, tt.entry, got, tt.want)
		}
	}
}

var imageSeeds = []string{
	"", "nginx", "nginx:latest", "nginx@" + testDigest, "nginx:1@" + testDigest, "docker.io/nginx", "index.docker.io/nginx",
	"localhost/x", "localhost", "localhost:5000", "localhost:5000/x:y", "LOCALHOST/x", "Foo/bar", "foo/Bar", "foo:bar/baz",
	"registry.internal.example/a/b", "registry.internal.example:0/a", "[::1]/a", "[::1]:5000/a", "[]/a", "[::1/a",
	"a/b__c", "a/b___c", "a/b_-c", "a/b--c", "a/b.-c", "a/.b", "a/b.", "a//b", "a/b/", "/a", "a:", "a@", "a@sha256:",
	"a@sha256:" + strings.Repeat("A", 64), "a@sha512:" + strings.Repeat("a", 128), "a@sha384:" + strings.Repeat("a", 96),
	"a@md5:" + strings.Repeat("a", 32), "a@sha256:" + strings.Repeat("a", 63), strings.Repeat("a", 64),
	"a:" + strings.Repeat("t", 128), "a:" + strings.Repeat("t", 129), "a:.t", "a:-t", "a:_t", "a:t:t",
	"a/" + strings.Repeat("b", 250), "a@b@c", "user@host/x", "ex-ample.com/x", "-example.com/x", "example-.com/x",
	"ex_ample.com/x", "exa..mple.com/x", "example.com:/x", "example.com:12a/x", "a.b/c:T_1.2-3", "é/x",
	"index.docker.io/x", "index.docker.io", "docker.io", "docker.io/", "Docker.io/x", "a\x00/b",
}

// oracleImage parses s the way containerd and CRI-O do.
//
// One deliberate difference: when the first component is taken as a
// registry host (it has a '.' or ':') but is not a valid host, such as
// "ex_ample.com/x", the library re-reads the whole string as a path and
// returns a name with an empty domain, which a runtime would then pull from
// "ex_ample.com". We refuse such references; the oracle counts them invalid.
func oracleImage(s string) (name, tag, digest string, ok bool) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil || reference.Domain(n) == "" {
		return "", "", "", false
	}
	if t, isTagged := n.(reference.Tagged); isTagged {
		tag = t.Tag()
	}
	if d, isDigested := n.(reference.Digested); isDigested {
		digest = d.Digest().String()
	}
	return reference.Domain(n) + "/" + reference.Path(n), tag, digest, true
}

func compareImage(t *testing.T, s string) {
	t.Helper()
	name, tag, digest, ok := oracleImage(s)
	r, err := parseImage(s)
	if ok != (err == nil) {
		t.Fatalf("image %q: distribution/reference ok=%v, ours err=%v", s, ok, err)
	}
	if ok && (r.name() != name || r.tag != tag || r.digest != digest) {
		t.Fatalf("image %q: distribution/reference %s %q %q, ours %s %q %q", s, name, tag, digest, r.name(), r.tag, r.digest)
	}
}

func TestParseImageMatchesDistribution(t *testing.T) {
	for _, s := range imageSeeds {
		compareImage(t, s)
	}
}

func FuzzParseImage(f *testing.F) {
	for _, s := range imageSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		compareImage(t, s)
	})
}
