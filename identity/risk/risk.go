// Package risk scores sign-ins, step-ups and token refreshes from what Rampart can really
// observe: the address and device of the attempt, where that address is (from MaxMind-format
// databases or a table in Rampart's configuration), the person's own past sign-ins, and recent
// failed attempts. It plays the part Microsoft Entra ID Protection plays for Entra sign-ins.
//
// # Use
//
// Build one Engine with NewEngine and call Assess for every attempt, before letting it in:
//
//	as, err := engine.Assess(ctx, risk.Attempt{Subject: "alice", Username: "alice", Time: now,
//		IP: ip, Fingerprint: fp, Kind: risk.KindSignIn, Success: true})
//	if err != nil {
//		// The sign-in history could not be read (or the attempt is malformed): refuse, 503.
//	}
//	switch outcomes.For(as.Level) { case risk.Allow: …; case risk.StepUp: …; case risk.Block: … }
//
// Then record what happened, so that the next assessment knows it (see History): a sign-in or
// step-up that was let in becomes a Record (NewRecord) of its subject; a failed attempt (a wrong
// password, a wrong second factor, an unknown refresh token) becomes a Failure (NewFailure). A
// sign-in that was blocked, or is waiting for its step-up, is not recorded as a sign-in:
// otherwise an attacker's device and country would become "familiar". A sign-in whose outcome
// was StepUp is recorded once its second factor succeeds, without assessing it again; for an
// attempt of kind step_up, StepUp is satisfied by the step-up itself and only Block refuses; for
// a refresh, StepUp means "sign in again".
//
// The engine is pure decision logic: it reads the clock from Attempt.Time, its history from the
// injected History and its geography from the injected Geo, so the same inputs always give the
// same Assessment, detections in the same order. It is safe for concurrent use.
//
// # Signals
//
// Each signal that fires is a Detection with a code, a level, the evidence it saw and a message
// for people. "After learning" means the subject has at least Config.LearningSignIns recorded
// sign-ins that carry the compared property (a fingerprint, an ASN, a country), so that a new
// user, or a deployment that has just added a geo database, is not flooded with "new" signals.
//
//	code               level   fires when
//	new_device         low     after learning, the fingerprint is not among the subject's past
//	                           sign-ins (presenting none, when they usually do, counts as an
//	                           unknown device)
//	new_ip             low     after learning, the network address (the IPv4 address, or the
//	                           IPv6 /64, see SourceOf) is not among the past sign-ins
//	new_asn            low     after learning, the autonomous system is not among the past ones
//	new_country        medium  after learning, the country is not among the past ones
//	unusual_hour       low     after learning, no past sign-in was within
//	                           Config.UnusualHourMargin (default 2 h) of this time of day (UTC,
//	                           compared on the 24-hour circle, so 23:30 is near 00:30)
//	impossible_travel  high    the great-circle distance from the located sign-in nearest in
//	                           time (or from where the session was last used, if nearer in
//	                           time), less both locations' accuracy radii, is at least
//	                           Config.MinTravelKm (default 500 km) and, divided by the elapsed
//	                           time (at least a minute), above Config.ImpossibleSpeedKmh
//	                           (default 1000 km/h); works from the first located sign-in, no
//	                           learning needed
//	anonymous_ip       medium  the address is on Config.AnonymousIPs or the geo data marks it
//	                           anonymous (VPN service, Tor exit, public or residential proxy);
//	                           not for a refresh from the session's own address, whose sign-in
//	                           was already assessed there (or every refresh would ask again)
//	bad_ip             high    the address is on Config.BadIPs
//	user_failures      medium  Config.UserFailures (default 5) or more failed attempts for this
//	                           username within Config.FailureWindow (default 15 min), counting
//	                           this attempt if it failed
//	password_spray     high    recorded failed attempts for Config.SprayUsers (default 10) or
//	                           more distinct usernames came from this source (SourceOf)
//	                           within Config.FailureWindow
//	token_replay       high    the session (refreshed, or stepped up) is used by another device
//	                           fingerprint than its own
//	                   medium  … from the same device but another network (another ASN, or,
//	                           without ASN data, another IPv4 /24 or IPv6 /48)
//	                   low     … from the same device and another address in the same network
//
// Signals per kind of attempt: a sign-in or step-up is checked for all of them (token_replay
// only if Attempt.SessionIP is given); a refresh is checked for token_replay, impossible_travel,
// anonymous_ip, bad_ip and password_spray — familiarity and hour of day say nothing about a
// token that refreshes itself in the background, and password guessing by someone else does not
// weaken a token the client already holds.
//
// # Level
//
// An Assessment's level is the highest level among its detections; None if there are none. A
// few combinations are stronger evidence than their parts; each adds a "combination" detection
// naming its rule, with the level below, so the rule stays "the highest level wins":
//
//	rule                          level   when
//	new_country+new_device        high    a device never seen, in a country never seen
//	new_device+new_asn            medium  a device never seen, on a network never seen
//	anonymous_ip+new_device       high    a device never seen, hiding its address
//	user_failures+new             high    a successful attempt after repeated failures, from a
//	                                      new device or a new country
//
// What to do at each level is the caller's policy: Outcomes maps levels to Allow, StepUp or
// Block (by default none and low allow, medium steps up, high blocks).
//
// # Failing closed
//
// Assess returns an error, never a partial Assessment, when the history cannot be read
// (ErrHistoryUnavailable) or the attempt is malformed (ErrInvalidAttempt); the caller must then
// refuse the attempt (DESIGN.md invariant 6). Missing geo data is not an error: the signals
// that need it do not fire, and the others still do.
package risk

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Kind says what an attempt is.
type Kind string

// Kinds of attempts.
const (
	// KindSignIn is an interactive sign-in (an OIDC callback, a password, a device flow).
	KindSignIn Kind = "sign_in"
	// KindRefresh is a refresh-token exchange inside an existing session.
	KindRefresh Kind = "refresh"
	// KindStepUp is an interactive re-authentication (a second factor) inside a session.
	KindStepUp Kind = "step_up"
)

// interactive reports whether a person took part in the attempt, so that familiarity and time
// of day mean something.
func (k Kind) interactive() bool { return k == KindSignIn || k == KindStepUp }

// Attempt is one sign-in, step-up or refresh to assess.
type Attempt struct {
	// Subject is the person the attempt is for, as Rampart names them; "" if the attempt failed
	// before anyone was identified. Required when Success is true.
	Subject string
	// Username is what was typed or asserted (it names failures); Subject is used if empty.
	// Use one key per person for failures and assessments alike (normalised, e.g. lower
	// case), so that a failed password and a failed second factor count together.
	Username string
	// Time is when the attempt happened: the engine's only clock. Required.
	Time time.Time
	// IP is the client's address as Rampart saw it (after trusted proxies). Required.
	IP netip.Addr
	// Fingerprint identifies the client device (a hash of a device cookie and the user agent
	// family); "" if the client presented none.
	Fingerprint string
	// Kind is sign_in, refresh or step_up.
	Kind Kind
	// Success is false for a failed credential or factor.
	Success bool
	// SessionIP is where the session was last used (or, if the caller keeps only that, where it
	// was created); required for a successful refresh, optional for a step-up. When it is set,
	// the attempt is checked for token replay.
	SessionIP netip.Addr
	// SessionFingerprint is the fingerprint the session was created with ("" if it had none).
	SessionFingerprint string
	// SessionLastSeen is when the session was used from SessionIP (zero if unknown); with it,
	// impossible travel is also checked from the session's last place. It must describe the
	// same moment as SessionIP: pass the creation time if SessionIP is the creation address.
	SessionLastSeen time.Time
}

// Detection is one signal that fired, with what it saw.
type Detection struct {
	// Code names the signal (new_device, impossible_travel, …; see the package documentation).
	Code string `json:"code"`
	// Level is how much risk this signal alone carries.
	Level Level `json:"level"`
	// Evidence holds the observed values, JSON-friendly (strings, numbers, booleans, string
	// slices), for the audit record.
	Evidence map[string]any `json:"evidence,omitempty"`
	// Message explains the detection to a person.
	Message string `json:"message"`
}

// Assessment is the engine's verdict on one attempt.
type Assessment struct {
	// Level is the highest level among Detections (None without detections).
	Level Level `json:"level"`
	// Detections are the signals that fired, in a fixed order.
	Detections []Detection `json:"detections,omitempty"`
	// Location is where the attempt came from, nil if the geo data did not know.
	Location *Location `json:"location,omitempty"`
}

// String summarises the assessment for logs: "high: impossible_travel, new_device".
func (as Assessment) String() string {
	if len(as.Detections) == 0 {
		return as.Level.String()
	}
	codes := make([]string, len(as.Detections))
	for i, d := range as.Detections {
		codes[i] = d.Code
	}
	return as.Level.String() + ": " + strings.Join(codes, ", ")
}

// Has reports whether a detection with the given code fired.
func (as Assessment) Has(code string) bool {
	for _, d := range as.Detections {
		if d.Code == code {
			return true
		}
	}
	return false
}

// Errors of Assess. Both mean the caller must refuse the attempt.
var (
	// ErrHistoryUnavailable wraps a History failure.
	ErrHistoryUnavailable = errors.New("sign-in history unavailable")
	// ErrInvalidAttempt wraps every reason an Attempt is malformed (a bug in the caller).
	ErrInvalidAttempt = errors.New("invalid attempt")
)

// validate refuses attempts the engine cannot assess soundly.
func (a Attempt) validate() error {
	switch {
	case a.Time.IsZero():
		return fmt.Errorf("%w: Time is not set", ErrInvalidAttempt)
	case !a.IP.IsValid():
		return fmt.Errorf("%w: IP is not set", ErrInvalidAttempt)
	case a.Kind != KindSignIn && a.Kind != KindRefresh && a.Kind != KindStepUp:
		return fmt.Errorf("%w: Kind %q is not %q, %q or %q", ErrInvalidAttempt, a.Kind, KindSignIn, KindRefresh, KindStepUp)
	case a.Success && a.Subject == "":
		return fmt.Errorf("%w: a successful attempt must name its Subject", ErrInvalidAttempt)
	case a.Kind == KindRefresh && a.Success && !a.SessionIP.IsValid():
		return fmt.Errorf("%w: a successful refresh must carry SessionIP (where the session was last used)", ErrInvalidAttempt)
	}
	return nil
}

// normAddr strips what does not identify a host: the IPv4-in-IPv6 wrapping and the zone.
func normAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// SourceOf is the network a client address stands for: the IPv4 address itself, or the /64 of
// an IPv6 address (the smallest network a provider hands out, whose addresses a client can
// rotate through freely). New-IP detection compares sources, and History.FailuresBySource is
// asked about sources.
func SourceOf(ip netip.Addr) netip.Prefix {
	ip = normAddr(ip)
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}
