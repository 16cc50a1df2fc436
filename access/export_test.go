package access

import "rampart.dev/rampart/policy"

// SwapPolicy puts pol in force without recording it, the way a concurrent LoadPolicy lands
// between two steps of an operation. Tests use it to pin down that an operation judges
// everything under the one snapshot it took.
func SwapPolicy(s *Service, pol *policy.Policy) { s.pol.Store(pol) }
