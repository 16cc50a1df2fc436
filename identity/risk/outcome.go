package risk

import (
	"fmt"
	"strings"
)

// Outcome is what the caller does with an attempt at some level.
type Outcome string

// Outcomes, from the most to the least permissive.
const (
	// Allow lets the attempt in.
	Allow Outcome = "allow"
	// StepUp asks for a second factor first; for a refresh, it means signing in again.
	StepUp Outcome = "step_up"
	// Block refuses the attempt.
	Block Outcome = "block"
)

// strictness orders outcomes; 0 for unknown ones.
func (o Outcome) strictness() int {
	switch o {
	case Allow:
		return 1
	case StepUp:
		return 2
	case Block:
		return 3
	}
	return 0
}

// UnmarshalText reads "allow", "step_up" or "block".
func (o *Outcome) UnmarshalText(b []byte) error {
	v := Outcome(b)
	if v.strictness() == 0 {
		return fmt.Errorf("risk outcome %q is not allow, step_up or block", string(b))
	}
	*o = v
	return nil
}

// Outcomes says what to do at each level. A field left empty takes its default (DefaultOutcomes()),
// so the zero value is the default policy, never a permissive one. In configuration it is
// written as text (see ParseOutcomes).
type Outcomes struct {
	// None, Low, Medium and High are the outcomes of each level.
	None, Low, Medium, High Outcome
}

// defaultOutcomes is a constant in all but name: a variable anyone could change would change
// every engine's fallback.
var defaultOutcomes = Outcomes{None: Allow, Low: Allow, Medium: StepUp, High: Block}

// DefaultOutcomes allows none and low, steps up medium, blocks high.
func DefaultOutcomes() Outcomes { return defaultOutcomes }

// For returns the outcome for a level. A level that is not one of the four blocks.
func (o Outcomes) For(l Level) Outcome {
	var got, def Outcome
	switch l {
	case None:
		got, def = o.None, defaultOutcomes.None
	case Low:
		got, def = o.Low, defaultOutcomes.Low
	case Medium:
		got, def = o.Medium, defaultOutcomes.Medium
	case High:
		got, def = o.High, defaultOutcomes.High
	default:
		return Block
	}
	if got == "" {
		return def
	}
	if got.strictness() == 0 {
		return Block
	}
	return got
}

// Validate checks that every outcome is known and that a higher level is never treated more
// leniently than a lower one (high=allow with medium=block is a typo, not a policy).
func (o Outcomes) Validate() error {
	prev := Outcome("")
	for l := None; l <= High; l++ {
		var set Outcome
		switch l {
		case None:
			set = o.None
		case Low:
			set = o.Low
		case Medium:
			set = o.Medium
		case High:
			set = o.High
		}
		if set != "" && set.strictness() == 0 {
			return fmt.Errorf("risk outcome for %s: %q is not allow, step_up or block", l, set)
		}
		cur := o.For(l)
		if prev != "" && cur.strictness() < prev.strictness() {
			return fmt.Errorf("risk outcome for %s is %s, more lenient than %s for %s: outcomes must not decrease with the level",
				l, cur, prev, l-1)
		}
		prev = cur
	}
	return nil
}

// ParseOutcomes reads "level=outcome" pairs separated by commas or spaces, e.g.
// "medium=block,high=block"; levels not named keep their default. The result is validated.
func ParseOutcomes(s string) (Outcomes, error) {
	var o Outcomes
	seen := map[Level]bool{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Outcomes{}, fmt.Errorf("risk outcomes: %q is not level=outcome (e.g. medium=step_up)", f)
		}
		l, err := ParseLevel(k)
		if err != nil {
			return Outcomes{}, fmt.Errorf("risk outcomes: %w", err)
		}
		if seen[l] {
			return Outcomes{}, fmt.Errorf("risk outcomes: %s is given twice", l)
		}
		seen[l] = true
		var out Outcome
		if err := out.UnmarshalText([]byte(v)); err != nil {
			return Outcomes{}, fmt.Errorf("risk outcomes: %s: %w", l, err)
		}
		switch l {
		case None:
			o.None = out
		case Low:
			o.Low = out
		case Medium:
			o.Medium = out
		case High:
			o.High = out
		}
	}
	if err := o.Validate(); err != nil {
		return Outcomes{}, err
	}
	return o, nil
}

// String writes all four pairs, as ParseOutcomes reads them.
func (o Outcomes) String() string {
	return fmt.Sprintf("none=%s,low=%s,medium=%s,high=%s", o.For(None), o.For(Low), o.For(Medium), o.For(High))
}

// MarshalText writes the outcomes as String does.
func (o Outcomes) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads the outcomes as ParseOutcomes does.
func (o *Outcomes) UnmarshalText(b []byte) error {
	v, err := ParseOutcomes(string(b))
	if err != nil {
		return err
	}
	*o = v
	return nil
}
