package risk_test

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/identity/risk"
)

func TestParsePrefixList(t *testing.T) {
	text := `# Tor exits, fetched 2026-03-01
192.0.2.0/24
  198.51.100.7   # one host, indented, with a comment
2001:db8::/32

203.0.113.0/25
203.0.113.0/28
::ffff:198.51.100.9
192.0.2.0/24 # a duplicate is fine
`
	l, err := risk.ParsePrefixList("tor.txt", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 6 || l.Name() != "tor.txt" {
		t.Fatalf("Len() = %d, Name() = %q", l.Len(), l.Name())
	}
	for _, tc := range []struct{ ip, prefix, source string }{
		{"192.0.2.200", "192.0.2.0/24", "tor.txt:2"},
		{"198.51.100.7", "198.51.100.7/32", "tor.txt:3"},
		{"198.51.100.8", "", ""},
		{"2001:db8:ffff::1", "2001:db8::/32", "tor.txt:4"},
		{"203.0.113.5", "203.0.113.0/28", "tor.txt:7"},
		{"203.0.113.100", "203.0.113.0/25", "tor.txt:6"},
		{"203.0.113.200", "", ""},
		{"198.51.100.9", "198.51.100.9/32", "tor.txt:8"},
		{"::ffff:192.0.2.1", "192.0.2.0/24", "tor.txt:2"},
	} {
		m, ok := l.Lookup(netip.MustParseAddr(tc.ip))
		if ok != (tc.prefix != "") || (ok && (m.Prefix.String() != tc.prefix || m.Source != tc.source)) {
			t.Errorf("Lookup(%s) = %+v, %v; want %s at %s", tc.ip, m, ok, tc.prefix, tc.source)
		}
	}
	var none *risk.PrefixList
	if _, ok := none.Lookup(netip.MustParseAddr("192.0.2.1")); ok || none.Len() != 0 {
		t.Error("a nil list is not empty")
	}
}

func TestParsePrefixListErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // every error, in order
	}{
		{"not an address", "192.0.2.0/24\nexample.com\n", []string{`bad.txt:2: "example.com" is not an IP address or CIDR prefix`}},
		{"bad prefix length", "\n\n192.0.2.0/33\n", []string{`bad.txt:3: "192.0.2.0/33" is not a CIDR prefix`}},
		{"host bits", "192.0.2.1/24", []string{"bad.txt:1: 192.0.2.1/24 has bits set after the /24; did you mean 192.0.2.0/24?"}},
		{"zone", "fe80::1%eth0", []string{"bad.txt:1: fe80::1%eth0 has a zone"}},
		{"two addresses on a line", "192.0.2.1 192.0.2.2", []string{`bad.txt:1: "192.0.2.1 192.0.2.2" is not an IP address`}},
		{"leading zeros", "192.0.2.010", []string{`bad.txt:1: "192.0.2.010" is not an IP address`}},
		{"several bad lines", "x\n192.0.2.0/24\ny\n", []string{`bad.txt:1: "x"`, `bad.txt:3: "y"`}},
		{"too long", "192.0.2.1\n" + strings.Repeat("1", risk.MaxPrefixListLine+1) + "\n", []string{"bad.txt:2: line longer than 4096 bytes"}},
		{"not UTF-8", "192.0.2.1\n\xff\xfe\n", []string{"bad.txt:2: not valid UTF-8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := risk.ParsePrefixList("bad.txt", strings.NewReader(tc.text))
			if err == nil || l != nil {
				t.Fatalf("accepted: %v", l)
			}
			msgs := strings.Split(err.Error(), "\n")
			if len(msgs) != len(tc.want) {
				t.Fatalf("errors %q, want %d", msgs, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(msgs[i], w) {
					t.Errorf("error %q, want it to start with %q", msgs[i], w)
				}
			}
			var le *risk.LineError
			if !errors.As(err, &le) || le.File != "bad.txt" || le.Line < 1 {
				t.Errorf("errors.As(*LineError) = %+v", le)
			}
		})
	}
	// A file full of garbage stops after ten errors.
	_, err := risk.ParsePrefixList("junk.txt", strings.NewReader(strings.Repeat("junk\n", 1000)))
	if n := strings.Count(err.Error(), "\n") + 1; n != 10 {
		t.Errorf("%d errors reported, want 10", n)
	}
}

func TestLoadPrefixList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(path, []byte("192.0.2.0/24\n192.0.2.300\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := risk.LoadPrefixList(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Fatalf("err = %v, want it to start with %s:2:", err, path)
	}
	if _, err := risk.LoadPrefixList(filepath.Join(dir, "missing.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("192.0.2.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := risk.LoadPrefixList(path)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := l.Lookup(netip.MustParseAddr("192.0.2.9")); !ok || m.Source != path+":1" {
		t.Fatalf("Lookup = %+v, %v", m, ok)
	}
}

// FuzzParsePrefixList: prefix-list files come from third parties. Parsing must not panic, errors
// must name a line of the input, and every accepted line must be found by Lookup.
func FuzzParsePrefixList(f *testing.F) {
	for _, s := range []string{
		"192.0.2.0/24\n2001:db8::/32\n# c\n\n198.51.100.7 # host\n",
		"::ffff:192.0.2.0/120\n::ffff:1.2.3.4\n0.0.0.0/0\n::/0\n",
		"192.0.2.1/24\nfe80::1%eth0\n1.2.3.4/33\n",
		"\xff\n\r\n\t1.2.3.4\t\r\n",
		"1.2.3.4\n1.2.3.4/32\n::ffff:1.2.3.4/128\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := risk.ParsePrefixList("fuzz.txt", strings.NewReader(string(data)))
		lines := strings.Count(string(data), "\n") + 1
		if err != nil {
			if l != nil {
				t.Fatal("a list and an error")
			}
			var le *risk.LineError
			if !errors.As(err, &le) || le.File != "fuzz.txt" || le.Line < 1 || le.Line > lines+1 {
				t.Fatalf("error does not name a line of the input: %v", err)
			}
			return
		}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		n := 0
		for sc.Scan() {
			n++
			text, _, _ := strings.Cut(sc.Text(), "#")
			text = strings.TrimSpace(text)
			if text == "" {
				continue
			}
			var p netip.Prefix
			if strings.Contains(text, "/") {
				p = netip.MustParsePrefix(text) // accepted, so it must parse
			} else {
				a := netip.MustParseAddr(text)
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if _, ok := l.Lookup(p.Addr()); !ok {
				t.Fatalf("line %d (%q) accepted but %s not found", n, text, p.Addr())
			}
		}
		if l.Len() > n {
			t.Fatalf("%d prefixes from %d lines", l.Len(), n)
		}
	})
}
