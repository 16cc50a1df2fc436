package signin

import (
	"context"
	"fmt"

	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/identity/risk"
)

// refuse records a refused attempt in the ledger and the history, and returns err. If the
// ledger cannot be written the refusal stands (and says so in the log).
//
// Refusals are aggregated by source (invariant 11): anyone can send a browser to /callback
// with a forged state, and a signed-in person can send wrong codes to step-up. The source is
// the client's network (risk.SourceOf: the address, or its IPv6 /64) for an unknown person,
// the person and their network otherwise. The first refusal of a source in a window is
// recorded in full, the rest counted into one summary; only the first few of each window go
// into the history the risk engine counts (enough to cross its thresholds).
func (s *Service) refuse(ctx context.Context, id identityClaims, c client, method string, d decision, err error) error {
	ev := s.authEvent("signin.refused", id, c, method, d, false, fmt.Sprintf("sign-in of %s refused: %v", nameOr(id.Subject), err))
	source := "address " + risk.SourceOf(c.IP).String()
	if id.Subject != "" {
		source = "user " + id.Subject + " from " + risk.SourceOf(c.IP).String()
	}
	out := refusals.Outcome{Recorded: true, N: 1, Detailed: true}
	var rerr error
	if s.d.Refused != nil {
		out, rerr = s.d.Refused(ctx, source, ev)
	} else {
		rerr = s.d.Record(ctx, ev)
	}
	if rerr != nil {
		s.d.Logger.Error("cannot record a refused sign-in in the ledger", "err", rerr, "subject", id.Subject)
	}
	if !out.Detailed {
		return err
	}
	if ferr := s.d.Store.AddFailure(ctx, risk.Failure{Time: s.d.Now(), Username: id.Subject, IP: c.IP}); ferr != nil {
		s.d.Logger.Error("cannot record a failed sign-in in the history", "err", ferr)
	}
	return err
}

func nameOr(s string) string {
	if s == "" {
		return "an unknown person"
	}
	return s
}
