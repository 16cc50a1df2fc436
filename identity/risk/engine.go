package risk

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Config tunes the engine. Zero fields take the defaults named on them; negative or nonsensical
// values are refused by NewEngine.
type Config struct {
	// LearningSignIns is how many recorded sign-ins carrying a property (device, network, ASN,
	// country, time of day) a subject needs before a new value of it is a signal (default 5).
	LearningSignIns int
	// HistorySize is how many of the subject's most recent sign-ins form the baseline
	// (default 50, at most 1000).
	HistorySize int
	// ImpossibleSpeedKmh is the travel speed above which two sign-ins cannot be the same person
	// (default 1000 km/h, a little above an airliner's cruising speed).
	ImpossibleSpeedKmh float64
	// MinTravelKm is the distance below which travel is never impossible, however short the
	// time: IP geolocation is rarely better than this (default 500 km).
	MinTravelKm float64
	// UnusualHourMargin is how close, in time of day, a past sign-in must be for this one's hour
	// to be usual (default 2h, less than 12h).
	UnusualHourMargin time.Duration
	// FailureWindow is how far back failed attempts are counted (default 15m).
	FailureWindow time.Duration
	// UserFailures is how many failed attempts for one username within FailureWindow make
	// user_failures fire (default 5).
	UserFailures int
	// SprayUsers is how many distinct usernames failing from one source within FailureWindow
	// make password_spray fire (default 10).
	SprayUsers int
	// AnonymousIPs lists anonymising services (VPN providers, Tor exits, proxies); nil for none.
	AnonymousIPs *PrefixList
	// BadIPs lists known-bad sources (threat intelligence, past attackers); nil for none.
	BadIPs *PrefixList
}

// Defaults of Config, each for the field of the same name.
const (
	// DefaultLearningSignIns is Config.LearningSignIns's default.
	DefaultLearningSignIns = 5
	// DefaultHistorySize is Config.HistorySize's default.
	DefaultHistorySize = 50
	// DefaultImpossibleSpeedKmh is Config.ImpossibleSpeedKmh's default.
	DefaultImpossibleSpeedKmh = 1000
	// DefaultMinTravelKm is Config.MinTravelKm's default.
	DefaultMinTravelKm = 500
	// DefaultUnusualHourMargin is Config.UnusualHourMargin's default.
	DefaultUnusualHourMargin = 2 * time.Hour
	// DefaultFailureWindow is Config.FailureWindow's default.
	DefaultFailureWindow = 15 * time.Minute
	// DefaultUserFailures is Config.UserFailures's default.
	DefaultUserFailures = 5
	// DefaultSprayUsers is Config.SprayUsers's default.
	DefaultSprayUsers = 10
	// MaxHistorySize bounds the work of one assessment.
	MaxHistorySize = 1000
)

// withDefaults fills zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("risk config: "+format, args...)) }
	setInt := func(v *int, def int, name string) {
		if *v == 0 {
			*v = def
		} else if *v < 0 {
			bad("%s is %d; it must be positive (or 0 for the default, %d)", name, *v, def)
		}
	}
	setInt(&c.LearningSignIns, DefaultLearningSignIns, "LearningSignIns")
	setInt(&c.HistorySize, DefaultHistorySize, "HistorySize")
	setInt(&c.UserFailures, DefaultUserFailures, "UserFailures")
	setInt(&c.SprayUsers, DefaultSprayUsers, "SprayUsers")
	setFloat := func(v *float64, def float64, name string) {
		if *v == 0 {
			*v = def
		} else if !(*v > 0) || math.IsInf(*v, 0) {
			bad("%s is %v; it must be a positive number (or 0 for the default, %v)", name, *v, def)
		}
	}
	setFloat(&c.ImpossibleSpeedKmh, DefaultImpossibleSpeedKmh, "ImpossibleSpeedKmh")
	setFloat(&c.MinTravelKm, DefaultMinTravelKm, "MinTravelKm")
	setDur := func(v *time.Duration, def time.Duration, name string) {
		if *v == 0 {
			*v = def
		} else if *v < 0 {
			bad("%s is %s; it must be positive (or 0 for the default, %s)", name, *v, def)
		}
	}
	setDur(&c.UnusualHourMargin, DefaultUnusualHourMargin, "UnusualHourMargin")
	setDur(&c.FailureWindow, DefaultFailureWindow, "FailureWindow")
	if c.HistorySize > MaxHistorySize {
		bad("HistorySize is %d; at most %d", c.HistorySize, MaxHistorySize)
	}
	if c.LearningSignIns > c.HistorySize {
		bad("LearningSignIns (%d) is more than HistorySize (%d), so learning would never end", c.LearningSignIns, c.HistorySize)
	}
	if c.UnusualHourMargin >= 12*time.Hour {
		bad("UnusualHourMargin is %s; it must be less than 12h, or every hour is usual", c.UnusualHourMargin)
	}
	return c, errors.Join(errs...)
}

// Engine assesses attempts. It is immutable and safe for concurrent use.
type Engine struct {
	cfg  Config
	geo  Geo
	hist History
}

// NewEngine returns an engine reading hist and locating addresses with geo (nil for no geo
// data). It refuses a nil history and an invalid configuration.
func NewEngine(cfg Config, geo Geo, hist History) (*Engine, error) {
	if hist == nil {
		return nil, errors.New("risk engine: no history")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Engine{cfg: c, geo: geo, hist: hist}, nil
}

// Config returns the configuration in force, defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// locate returns the location of ip, nil if unknown.
func (e *Engine) locate(ip netip.Addr) *Location {
	if e.geo == nil || !ip.IsValid() {
		return nil
	}
	loc, ok := e.geo.Lookup(ip)
	if !ok {
		return nil
	}
	return &loc
}

// Assess scores one attempt (see the package documentation for the signals and the level). It
// returns an error only when the attempt is malformed (ErrInvalidAttempt) or the history cannot
// be read (ErrHistoryUnavailable); the caller must then refuse the attempt. Call it before
// recording the attempt in the history.
func (e *Engine) Assess(ctx context.Context, a Attempt) (Assessment, error) {
	if err := a.validate(); err != nil {
		return Assessment{}, err
	}
	a.IP, a.SessionIP = normAddr(a.IP), normAddr(a.SessionIP)
	s := signals{cfg: &e.cfg, a: a, loc: e.locate(a.IP)}
	since := a.Time.Add(-e.cfg.FailureWindow)

	var err error
	if a.Subject != "" {
		if s.records, err = e.hist.Recent(ctx, a.Subject, e.cfg.HistorySize); err != nil {
			return Assessment{}, fmt.Errorf("%w: recent sign-ins of %q: %w", ErrHistoryUnavailable, a.Subject, err)
		}
	}
	if s.username = a.Username; s.username == "" {
		s.username = a.Subject
	}
	if s.username != "" && a.Kind != KindRefresh {
		if s.userFailures, err = e.hist.FailuresByUser(ctx, s.username, since); err != nil {
			return Assessment{}, fmt.Errorf("%w: failures of %q: %w", ErrHistoryUnavailable, s.username, err)
		}
		if !a.Success {
			s.userFailures++
		}
	}
	src := SourceOf(a.IP)
	if s.srcFailures, s.srcUsers, err = e.hist.FailuresBySource(ctx, src, since); err != nil {
		return Assessment{}, fmt.Errorf("%w: failures from %s: %w", ErrHistoryUnavailable, src, err)
	}
	if !a.Success {
		s.srcFailures++
	}
	if a.SessionIP.IsValid() { // required for a successful refresh (validate)
		s.session = true
		s.sessionLoc = e.locate(a.SessionIP)
	}
	return s.assess(), nil
}
