package access

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// SubjectRevoked says what RevokeSubject ended.
type SubjectRevoked struct {
	// Grants are the active grants revoked.
	Grants []Grant `json:"grants_revoked"`
	// Requests are the pending requests cancelled: the subject's own, and those for them.
	Requests []string `json:"requests_cancelled"`
	// Approvals are the pending requests whose approval by the subject was withdrawn.
	Approvals []string `json:"approvals_withdrawn"`
}

// RevokeSubject ends everything a person who was just disabled holds in the workflow, in one
// transaction with its ledger entries (invariants 4 and 8): every active grant of theirs is
// revoked (not suspended: enabling them again must revive nothing, so their access takes a new
// request and new approvals), every pending request they made or that is for them is cancelled
// (it could otherwise be approved while they are disabled and wake up when they are enabled), and
// their approvals of requests still pending are withdrawn (a decision of theirs counts no more;
// their denials stay, since they only take access away). Running it again finds nothing.
func (s *Service) RevokeSubject(ctx context.Context, subject, actor, reason string) (SubjectRevoked, error) {
	if err := checkText("reason", reason, MaxReasonLen); err != nil {
		return SubjectRevoked{}, err
	}
	var out SubjectRevoked
	err := s.txn(ctx, "revoking everything of "+subject, func(t *txn) error {
		out = SubjectRevoked{}
		now := s.now()
		grants, err := t.ListGrants(ctx, GrantFilter{Subject: subject, States: []GrantState{GrantActive}})
		if err != nil {
			return err
		}
		for _, g := range grants {
			g, err := t.revoke(ctx, g, actor, reason, now)
			if err != nil {
				return err
			}
			out.Grants = append(out.Grants, g)
		}
		pending, err := t.ListRequests(ctx, RequestFilter{States: []State{Pending}})
		if err != nil {
			return err
		}
		for _, r := range pending {
			if r.Requester == subject || r.Beneficiary == subject {
				r.State, r.DecidedAt = Cancelled, now
				if err := t.record(ctx, requestEvent("request.cancel", ActivityUpdateName, r, actor,
					fmt.Sprintf("request %s for %s cancelled: %s", r.ID, r.Role, reason), map[string]any{"cancel_reason": reason, "disabled_subject": subject})); err != nil {
					return err
				}
				if err := t.saveRequest(ctx, r, false); err != nil {
					return err
				}
				out.Requests = append(out.Requests, r.ID)
				continue
			}
			reviews, err := t.Reviews(ctx, r.ID)
			if err != nil {
				return err
			}
			for _, rv := range reviews {
				if rv.Approver != subject || rv.Decision != Approve {
					continue
				}
				if err := t.record(ctx, requestEvent("request.approval_withdrawn", ActivityUpdateName, r, actor,
					fmt.Sprintf("%s's approval of request %s for %s no longer counts: %s", subject, r.ID, r.Role, reason),
					map[string]any{"approver": subject, "withdraw_reason": reason, "approved_at": rv.At.UTC().Format(time.RFC3339Nano)})); err != nil {
					return err
				}
				if err := t.DeleteReview(ctx, r.ID, subject); err != nil {
					return err
				}
				if err := t.saveRequest(ctx, r, false); err != nil {
					return err
				}
				out.Approvals = append(out.Approvals, r.ID)
			}
		}
		return nil
	})
	if err != nil {
		return SubjectRevoked{}, err
	}
	return out, nil
}

// String summarises what was ended, for messages.
func (r SubjectRevoked) String() string {
	var ids []string
	for _, g := range r.Grants {
		ids = append(ids, g.ID)
	}
	return fmt.Sprintf("%d grant(s) revoked [%s], %d pending request(s) cancelled, %d approval(s) withdrawn",
		len(r.Grants), strings.Join(ids, " "), len(r.Requests), len(r.Approvals))
}

// RevokeGrantsOf revokes every active grant of subject now, in one transaction with the
// grant.revoke entries (actor and reason as given), and returns them. It is the system's revoke,
// for automatic response (package detect) under a policy that was itself approved: it checks
// no actor's right to revoke (Revoke does, for people). Running it again finds nothing.
func (s *Service) RevokeGrantsOf(ctx context.Context, subject, actor, reason string) ([]Grant, error) {
	if err := checkText("reason", reason, MaxReasonLen); err != nil {
		return nil, err
	}
	var out []Grant
	err := s.txn(ctx, "revoking the grants of "+subject, func(t *txn) error {
		out = nil
		now := s.now()
		grants, err := t.ListGrants(ctx, GrantFilter{Subject: subject, States: []GrantState{GrantActive}})
		if err != nil {
			return err
		}
		for _, g := range grants {
			if !g.ActiveAt(now) {
				continue
			}
			g, err := t.revoke(ctx, g, actor, reason, now)
			if err != nil {
				return err
			}
			out = append(out, g)
		}
		return nil
	})
	return out, err
}
