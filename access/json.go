package access

import (
	"encoding/json"
	"fmt"
	"time"

	"rampart.dev/rampart/policy"
)

// Durations travel as text ("2h", "90m"), the way people write them on the command line.

type requestJSON Request

// MarshalJSON writes the request with its duration as text.
func (r Request) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		requestJSON
		Duration string `json:"duration"`
	}{requestJSON(r), policy.FormatDuration(r.Duration)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Request) UnmarshalJSON(b []byte) error {
	var v struct {
		requestJSON
		Duration string `json:"duration"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	d, err := parseDuration(v.Duration)
	*r = Request(v.requestJSON)
	r.Duration = d
	return err
}

type reviewJSON Review

// MarshalJSON writes the review with its duration cap as text ("" when uncapped).
func (rv Review) MarshalJSON() ([]byte, error) {
	d := ""
	if rv.Duration > 0 {
		d = policy.FormatDuration(rv.Duration)
	}
	return json.Marshal(struct {
		reviewJSON
		Duration string `json:"duration,omitempty"`
	}{reviewJSON(rv), d})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (rv *Review) UnmarshalJSON(b []byte) error {
	var v struct {
		reviewJSON
		Duration string `json:"duration"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	d, err := parseDuration(v.Duration)
	*rv = Review(v.reviewJSON)
	rv.Duration = d
	return err
}

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w", s, err)
	}
	return d, nil
}
