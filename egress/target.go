package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Target is a destination after normalisation: every later rule sees this form, never the
// spelling the client sent.
type Target struct {
	// Host is the lowercase host name without a trailing dot, or the canonical text of an IP
	// address (127.0.0.1, ::1) when the client named one, however it spelled it.
	Host string
	Port int
	// IP is set when the client named an address instead of a host name.
	IP netip.Addr
}

// String is host:port, with IPv6 in brackets.
func (t Target) String() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// ErrBadTarget wraps every reason a destination cannot be parsed.
var ErrBadTarget = errors.New("bad destination")

func badTarget(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadTarget, fmt.Sprintf(format, args...))
}

// maxHostLen bounds a destination host.
const maxHostLen = 253

// ParseTarget parses an authority ("host:port", "[v6]:port", or "host" with defaultPort when
// defaultPort > 0) and normalises it. IP addresses in any spelling inet_aton accepts — decimal
// 2130706433, octal 0177.0.0.1, hex 0x7f.1, short 127.1 — and IPv6 with brackets and zones
// become their canonical form, so that no rule or range check can be fooled by an alternative
// spelling.
func ParseTarget(authority string, defaultPort int) (Target, error) {
	if authority == "" {
		return Target{}, badTarget("empty destination")
	}
	host, portText, err := net.SplitHostPort(authority)
	if err != nil {
		if defaultPort <= 0 {
			return Target{}, badTarget("%q must be host:port", authority)
		}
		host, portText = authority, strconv.Itoa(defaultPort)
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 || (len(portText) > 1 && portText[0] == '0') {
		return Target{}, badTarget("port %q is not a number from 1 to 65535", portText)
	}
	t, err := normaliseHost(host)
	if err != nil {
		return Target{}, err
	}
	t.Port = port
	return t, nil
}

func normaliseHost(host string) (Target, error) {
	if host == "" {
		return Target{}, badTarget("empty host")
	}
	if len(host) > maxHostLen+2 {
		return Target{}, badTarget("host is over %d characters", maxHostLen)
	}
	// IPv6, possibly with a zone ("fe80::1%eth0"; %25 in URLs is decoded before this).
	if strings.Contains(host, ":") {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return Target{}, badTarget("%q is not an IPv6 address", host)
		}
		// An IPv4-mapped address is the IPv4 address: rules and range checks see one form.
		a = a.WithZone("").Unmap()
		return Target{Host: a.String(), IP: a}, nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "" {
		return Target{}, badTarget("empty host")
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return Target{}, badTarget("host %q is not ASCII; use its punycode (xn--) form", host)
		}
	}
	if looksNumeric(h) {
		a, err := parseIPv4(h)
		if err != nil {
			return Target{}, badTarget("host %q looks like an IPv4 address but is not one (%v)", host, err)
		}
		return Target{Host: a.String(), IP: a}, nil
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return Target{}, badTarget("host %q has an empty or over-long label", host)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' {
				continue
			}
			return Target{}, badTarget("host %q has %q", host, c)
		}
	}
	return Target{Host: h}, nil
}

// looksNumeric follows the WHATWG URL rule: a host whose last label is a number (decimal, or 0x
// hex) is an IPv4 address attempt, and must parse as one.
func looksNumeric(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return false
	}
	if strings.HasPrefix(last, "0x") {
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// parseIPv4 parses every form inet_aton accepts: one to four parts separated by dots, each
// decimal, octal (leading 0) or hexadecimal (leading 0x); the last part fills the remaining
// bytes (127.1 is 127.0.0.1, 2130706433 is 127.0.0.1).
func parseIPv4(h string) (netip.Addr, error) {
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return netip.Addr{}, errors.New("more than four parts")
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, errors.New("empty part")
		}
		base, digits := 10, p
		switch {
		case strings.HasPrefix(p, "0x"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("part %q is not a number", p)
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, fmt.Errorf("part %d (%d) is over 255", i+1, v)
		}
		n |= v << (8 * (3 - i))
	}
	last := vals[len(vals)-1]
	if max := uint64(1)<<(8*(5-len(vals))) - 1; last > max {
		return netip.Addr{}, fmt.Errorf("last part %d is over %d", last, max)
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), nil
}
