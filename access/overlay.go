package access

import (
	"fmt"

	"rampart.dev/rampart/policy"
)

// UsePolicy puts in force a variant of the recorded policy: the same policy files (the same
// digest) with the groups people brought from the identity provider overlaid
// (policy.WithDirectory). Nothing new is recorded: the policy's load is in the ledger already,
// and each person's groups are in the entry of the sign-in that brought them. A policy with
// another digest must go through LoadPolicy.
func (s *Service) UsePolicy(pol *policy.Policy) error {
	if cur := s.pol.Load(); cur.Digest != pol.Digest {
		return fmt.Errorf("policy %s is not the recorded policy %s; load it with LoadPolicy", pol.Digest, cur.Digest)
	}
	s.pol.Store(pol)
	return nil
}
