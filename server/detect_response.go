package server

import (
	"context"
	"sync"
	"time"

	"rampart.dev/rampart/detect"
)

// tunnelClosers are the CloseSubject of every egress gateway this instance built.
type tunnelClosers struct {
	mu  sync.Mutex
	fns []func(subject, why string) int
}

func (c *tunnelClosers) add(f func(subject, why string) int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
}

func (c *tunnelClosers) close(subject, why string) int {
	c.mu.Lock()
	fns := append([]func(string, string) int{}, c.fns...)
	c.mu.Unlock()
	n := 0
	for _, f := range fns {
		n += f(subject, why)
	}
	return n
}

// Responder returns the automatic response of detection rules over this instance's services
// (detect.Responder): the same ones an admin's revoke, session revocation and disable go
// through, so each action is recorded by its service with actor detect:<rule>. The hourly
// budget is the policy's detection.max_actions_per_hour, counted in the store.
func (in *Instance) Responder() *detect.Responder {
	return &detect.Responder{Actions: responseActions{in}, Store: in.Store, Now: in.now,
		IsAdmin:    func(s string) bool { return in.Access.Policy().IsAdmin(s) },
		MaxPerHour: func() int { return in.Access.Policy().Detection().MaxActionsPerHour }}
}

// responseActions are detect.Actions over an Instance.
type responseActions struct{ in *Instance }

// RevokeGrants revokes the subject's active grants; the grant listeners end what they
// materialised (RBAC bindings, egress tunnels that relied on them) as for any revocation.
func (a responseActions) RevokeGrants(ctx context.Context, subject, actor, reason string) (int, error) {
	gs, err := a.in.Access.RevokeGrantsOf(ctx, subject, actor, reason)
	return len(gs), err
}

// RevokeSessions revokes the subject's sessions and API tokens; the egress gateways close
// connections that relied on them at once (their credential no longer holds).
func (a responseActions) RevokeSessions(ctx context.Context, subject, actor, reason string) (int, error) {
	d, err := a.in.Sessions.RevokeAll(ctx, subject, actor, reason)
	a.in.Tokens.ForgetSubject(subject)
	a.in.hooks.run()
	return len(d.Sessions) + d.Tokens, err
}

// DisableUser disables the subject as an admin's disable does (Instance.DisableUser).
func (a responseActions) DisableUser(ctx context.Context, subject, actor, reason string) error {
	_, _, err := a.in.DisableUser(ctx, subject, actor, reason)
	return err
}

// CloseTunnels closes the subject's connections through this instance's egress gateways.
func (a responseActions) CloseTunnels(_ context.Context, subject, reason string) (int, error) {
	return a.in.tunnels.close(subject, reason), nil
}

// responseSink takes the automatic response of each committed firing whose rule responds
// (mode on or dry-run), on the runner's goroutine right after the commit, then tells next
// (Options.DetectSink), if any. A response is a few short transactions, and the budget bounds the
// actions, so the runner is not held up for long.
type responseSink struct {
	in   *Instance
	r    *detect.Responder
	next detect.Sink
}

// responseSink returns the detection runner's sink: automatic response, then next.
func (in *Instance) responseSink(next detect.Sink) detect.Sink {
	return responseSink{in: in, r: in.Responder(), next: next}
}

// Fired implements detect.Sink.
func (s responseSink) Fired(ctx context.Context, alerts []detect.Recorded) {
	for _, a := range alerts {
		if a.Firing.Mode != detect.ModeOn && a.Firing.Mode != detect.ModeDryRun {
			continue
		}
		out, err := s.r.Respond(ctx, a.Firing)
		if err != nil {
			s.in.log.Error("detection: automatic response not recorded", "rule", a.Firing.Rule, "subject", a.Firing.Subject, "alert_seq", a.Seq, "err", err)
			continue
		}
		for _, o := range out {
			s.in.log.Info("detection: automatic response", "rule", a.Firing.Rule, "subject", a.Firing.Subject, "action", o.Action,
				"state", o.State, "guardrail", o.Guardrail, "prior", o.Prior, "error", o.Error)
		}
	}
	if s.next != nil {
		s.next.Fired(ctx, alerts)
	}
}

// ResponseCatchUpInterval is how often the jobs-lease holder looks for responses a crash lost.
const ResponseCatchUpInterval = time.Minute

// startResponseCatchUp runs catchUpResponses on the jobs-lease holder: the first time as soon as
// it holds the lease (checked every second), then every ResponseCatchUpInterval of the
// instance's clock.
func (in *Instance) startResponseCatchUp(ctx context.Context) {
	var next time.Time
	in.every(ctx, "detection response catch-up", time.Second, in.jobs.guard(func(ctx context.Context) error {
		if now := in.now(); now.Before(next) {
			return nil
		}
		next = in.now().Add(ResponseCatchUpInterval)
		return in.catchUpResponses(ctx)
	}))
}

// catchUpResponses takes the responses a crash lost between the runner's commit of a firing and
// its response (the runner does not hand a committed firing to its sink again): for each alert
// updated within the last hour (the budget's window; an older firing is not acted on late), the
// firing of its latest detect.alert entry is rebuilt from the ledger (detect.FiringFromEntry,
// the same FiringID) and, if its rule responds and its response is not complete, responded to.
// Respond's idempotence makes this safe however often it runs.
func (in *Instance) catchUpResponses(ctx context.Context) error {
	as, err := in.Store.Alerts(ctx, detect.AlertFilter{Since: in.now().Add(-time.Hour), Limit: detect.MaxAlertPage})
	if err != nil {
		return err
	}
	r := in.Responder()
	for _, a := range as {
		recs, err := in.Store.Entries(ctx, a.LastSeq, 1)
		if err != nil {
			return err
		}
		if len(recs) != 1 {
			continue
		}
		f, ok := detect.FiringFromEntry(recs[0].Data)
		if !ok || (f.Mode != detect.ModeOn && f.Mode != detect.ModeDryRun) || len(f.Actions) == 0 {
			continue
		}
		pending, err := in.Store.ResponsePending(ctx, detect.FiringID(f), len(f.Actions))
		if err != nil || !pending {
			if err != nil {
				return err
			}
			continue
		}
		out, err := r.Respond(ctx, f)
		if err != nil {
			return err
		}
		in.log.Warn("detection: a response lost to a restart was taken now", "rule", f.Rule, "subject", f.Subject, "alert_seq", a.LastSeq, "outcomes", out)
	}
	return nil
}
