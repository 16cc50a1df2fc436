package risk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"unicode/utf8"
)

// PrefixList is a set of networks read from a file (anonymising services, known-bad sources).
// The zero value and nil are empty lists. It is safe for concurrent lookups.
//
// The file format: one CIDR prefix (192.0.2.0/24, 2001:db8::/32) or address (198.51.100.7,
// 2001:db8::1) per line; '#' starts a comment, to the end of the line; blank lines and
// surrounding spaces are ignored. Prefixes must not have bits set after their length
// (192.0.2.1/24 is refused, naming 192.0.2.0/24), addresses must not have zones, and
// IPv4-mapped IPv6 forms are read as the IPv4 they map. Duplicates are allowed; the first
// occurrence is the one reported.
type PrefixList struct {
	name string
	set  prefixSet[int] // value: line number
}

// Limits of prefix-list files, which may come from third parties.
const (
	// MaxPrefixListLine is the longest line accepted, in bytes.
	MaxPrefixListLine = 4096
	// MaxPrefixListEntries is the most prefixes one list may hold.
	MaxPrefixListEntries = 2_000_000
	// maxLineErrors is how many bad lines are reported before giving up.
	maxLineErrors = 10
)

// LineError is a problem on one line of a prefix-list file.
type LineError struct {
	// File is the list's name (its path, for LoadPrefixList).
	File string
	// Line is 1-based.
	Line int
	// Err is the problem.
	Err error
}

// Error reads "file:line: problem".
func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

// Unwrap returns the problem.
func (e *LineError) Unwrap() error { return e.Err }

// LoadPrefixList reads a prefix-list file (see PrefixList for the format).
func LoadPrefixList(path string) (*PrefixList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("prefix list: %w", err)
	}
	defer f.Close()
	return ParsePrefixList(path, f)
}

// ParsePrefixList reads a prefix list; name (usually the file's path) names it in errors and in
// detection evidence. Every bad line is reported as a *LineError (up to ten, joined).
func ParsePrefixList(name string, r io.Reader) (*PrefixList, error) {
	l := &PrefixList{name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxPrefixListLine)
	var errs []error
	fail := func(line int, err error) bool {
		errs = append(errs, &LineError{File: name, Line: line, Err: err})
		return len(errs) >= maxLineErrors
	}
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		p, err := parsePrefixLine(text)
		if err != nil {
			if fail(line, err) {
				break
			}
			continue
		}
		if _, dup := l.set.insert(p, line); !dup && l.set.n > MaxPrefixListEntries {
			fail(line, fmt.Errorf("more than %d prefixes; split the list or aggregate it", MaxPrefixListEntries))
			break
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", MaxPrefixListLine)
		}
		errs = append(errs, &LineError{File: name, Line: line + 1, Err: err})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return l, nil
}

// parsePrefixLine reads one entry: a prefix or a single address.
func parsePrefixLine(text string) (netip.Prefix, error) {
	if !utf8.ValidString(text) {
		return netip.Prefix{}, errors.New("not valid UTF-8 text")
	}
	var p netip.Prefix
	if strings.Contains(text, "/") {
		var err error
		if p, err = netip.ParsePrefix(text); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (like 192.0.2.0/24 or 2001:db8::/32)", text)
		}
	} else {
		a, err := netip.ParseAddr(text)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", text)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%s has a zone; zones are not allowed", text)
		}
		a = a.Unmap()
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return canonicalPrefix(p)
}

// Match is where an address was found on a PrefixList.
type Match struct {
	// Prefix is the longest listed prefix containing the address.
	Prefix netip.Prefix
	// Source is "file:line" of that prefix.
	Source string
}

// Lookup returns the most specific listed prefix containing ip.
func (l *PrefixList) Lookup(ip netip.Addr) (Match, bool) {
	if l == nil {
		return Match{}, false
	}
	p, line, ok := l.set.lookup(ip)
	if !ok {
		return Match{}, false
	}
	return Match{Prefix: p, Source: fmt.Sprintf("%s:%d", l.name, line)}, true
}

// Len returns the number of distinct prefixes on the list.
func (l *PrefixList) Len() int {
	if l == nil {
		return 0
	}
	return l.set.n
}

// Name returns the name the list was read under.
func (l *PrefixList) Name() string {
	if l == nil {
		return ""
	}
	return l.name
}
