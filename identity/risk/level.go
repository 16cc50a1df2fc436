package risk

import (
	"fmt"
	"strings"
)

// Level is how risky an attempt is. Levels are ordered: None < Low < Medium < High.
type Level int

// Levels.
const (
	// None means no signal fired.
	None Level = iota
	// Low signals are worth recording but not, alone, worth interrupting a person.
	Low
	// Medium signals justify asking for a second factor.
	Medium
	// High signals are strong evidence that the attempt is not the person's.
	High
)

var levelNames = [...]string{None: "none", Low: "low", Medium: "medium", High: "high"}

// valid reports whether l is one of the four levels.
func (l Level) valid() bool { return l >= None && l <= High }

// String returns "none", "low", "medium" or "high" ("level(N)" for anything else).
func (l Level) String() string {
	if !l.valid() {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return levelNames[l]
}

// MarshalText writes the level's name; it refuses values that are not a level.
func (l Level) MarshalText() ([]byte, error) {
	if !l.valid() {
		return nil, fmt.Errorf("risk level %d is not none, low, medium or high", int(l))
	}
	return []byte(levelNames[l]), nil
}

// UnmarshalText reads "none", "low", "medium" or "high".
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLevel reads "none", "low", "medium" or "high".
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if s == n {
			return Level(i), nil
		}
	}
	return None, fmt.Errorf("risk level %q is not one of %s", s, strings.Join(levelNames[:], ", "))
}
