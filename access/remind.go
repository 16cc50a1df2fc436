package access

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Reminder kinds.
const (
	// NotifyExpiring tells a grant's holder that it ends soon, with a link to renew it.
	NotifyExpiring = "expiring"
	// NotifyLapsing tells the approvers who have not answered a pending request that it lapses
	// soon.
	NotifyLapsing = "lapsing"
)

// Reminder events (Notification.Event): a reminder is caused by the clock, not by a ledger
// entry, so its Seq is 0 and these codes name no ledger entry.
const (
	EventGrantExpiring  = "grant.expiring"
	EventRequestLapsing = "request.lapsing"
)

// ReminderID is the outbox id of the reminder about grant g ending at expires (a renewed grant
// ends later, so it gets a new reminder) or, with a zero expires, about request g. Being derived
// from what it is about, it makes a reminder exactly once per item: a second sweep, or another
// replica, or a restarted server, finds the row already written.
func ReminderID(id string, expires time.Time) string {
	if expires.IsZero() {
		return "ntf_remind_" + id
	}
	return "ntf_remind_" + id + "_" + strconv.FormatInt(expires.UnixNano(), 36)
}

// Remind writes to the outbox, once per item, a reminder to the holder of every active grant
// that ends within the policy's notifications.remind_before, and to the approvers who may still
// approve every pending request that lapses within notifications.request_remind_before (or a
// quarter of its lifetime). It is idempotent, so any number of replicas may run it; the server
// runs it under the jobs lease. It returns how many reminders it wrote.
func (s *Service) Remind(ctx context.Context) (int, error) {
	now := s.now()
	pol := s.Policy()
	settings := pol.Notifications()
	written := 0
	s.forgetReminders(now)
	grants, err := s.store.ListGrants(ctx, GrantFilter{States: []GrantState{GrantActive}, EndedBy: now.Add(settings.RemindBefore.Std())})
	if err != nil {
		return 0, unavailable("listing grants to remind", err)
	}
	for _, g := range grants {
		if !now.Before(g.ExpiresAt) || s.wasReminded(ReminderID(g.ID, g.ExpiresAt)) {
			continue // the expiry sweep ends it, or it was reminded
		}
		err := s.txn(ctx, "reminding of a grant", func(t *txn) error {
			cur, err := t.Grant(ctx, g.ID)
			if err != nil || cur.State != GrantActive || !cur.ExpiresAt.Equal(g.ExpiresAt) {
				return err // changed since listed: revoked, or renewed (reminded before its new end)
			}
			to := []string{cur.Subject}
			if cur.Requester != "" && cur.Requester != cur.Subject {
				to = append(to, cur.Requester) // a workload's grant: the person who asked for it
			}
			policyName := ""
			if req, err := t.Request(ctx, cur.RequestID); err == nil {
				policyName = req.Policy
			}
			n := Notification{ID: ReminderID(cur.ID, cur.ExpiresAt), Event: EventGrantExpiring, Kind: NotifyExpiring, Recipients: to,
				RequestID: cur.RequestID, GrantID: cur.ID, Role: cur.Role, Policy: policyName, Requester: cur.Requester, Subject: cur.Subject,
				Message: fmt.Sprintf("%s's grant %s of %s ends at %s (in %s); renew it if it is still needed",
					cur.Subject, cur.ID, cur.Role, cur.ExpiresAt.UTC().Format(time.RFC3339), cur.ExpiresAt.Sub(now).Round(time.Minute)),
				CreatedAt: now}
			return t.remind(ctx, n, &written)
		})
		if err != nil {
			return written, err
		}
		s.remembered(ReminderID(g.ID, g.ExpiresAt), g.ExpiresAt)
	}
	pending, err := s.store.ListRequests(ctx, RequestFilter{States: []State{Pending}})
	if err != nil {
		return written, unavailable("listing requests to remind", err)
	}
	for _, r := range pending {
		if !now.Before(r.ExpiresAt) || now.Before(r.ExpiresAt.Add(-settings.RequestRemindLead(r.CreatedAt, r.ExpiresAt))) || r.BreakGlass ||
			s.wasReminded(ReminderID(r.ID, time.Time{})) {
			continue
		}
		err := s.txn(ctx, "reminding of a request", func(t *txn) error {
			cur, err := t.Request(ctx, r.ID)
			if err != nil || cur.State != Pending {
				return err // decided since listed: nobody is reminded
			}
			reviews, err := t.Reviews(ctx, cur.ID)
			if err != nil {
				return err
			}
			// Those who may approve it now (groups resolved at this moment), less those who
			// have answered.
			to := slices.DeleteFunc(eligibleApprovers(pol, cur.Role, cur.Requester, cur.Beneficiary), func(p string) bool {
				return slices.ContainsFunc(reviews, func(rv Review) bool { return rv.Approver == p })
			})
			n := Notification{ID: ReminderID(cur.ID, time.Time{}), Event: EventRequestLapsing, Kind: NotifyLapsing, Recipients: to,
				RequestID: cur.ID, Role: cur.Role, Policy: cur.Policy, Requester: cur.Requester, Subject: cur.Beneficiary,
				Message: fmt.Sprintf("%s's request %s for %s lapses at %s (in %s) unless it is approved: %s",
					cur.Requester, cur.ID, cur.Role, cur.ExpiresAt.UTC().Format(time.RFC3339), cur.ExpiresAt.Sub(now).Round(time.Minute), cur.Reason),
				CreatedAt: now}
			return t.remind(ctx, n, &written)
		})
		if err != nil {
			return written, err
		}
		s.remembered(ReminderID(r.ID, time.Time{}), r.ExpiresAt)
	}
	return written, nil
}

func (s *Service) wasReminded(id string) bool {
	s.remindMu.Lock()
	defer s.remindMu.Unlock()
	_, ok := s.reminded[id]
	return ok
}

// remembered notes that reminder id is in the outbox (or its item changed: either way this
// process need not look at it again) until end.
func (s *Service) remembered(id string, end time.Time) {
	s.remindMu.Lock()
	defer s.remindMu.Unlock()
	if s.reminded == nil {
		s.reminded = map[string]time.Time{}
	}
	s.reminded[id] = end
}

// forgetReminders drops what this process remembers of items that have ended.
func (s *Service) forgetReminders(now time.Time) {
	s.remindMu.Lock()
	defer s.remindMu.Unlock()
	for id, end := range s.reminded {
		if !now.Before(end) {
			delete(s.reminded, id)
		}
	}
}

// remind writes n unless it was written before, counting it in written.
func (t *txn) remind(ctx context.Context, n Notification, written *int) error {
	ok, err := t.InsertNotificationOnce(ctx, n)
	if err != nil {
		return fmt.Errorf("write reminder %s: %w", n.ID, err)
	}
	if ok {
		t.notifications++
		*written++
	}
	return nil
}
