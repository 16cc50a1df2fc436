package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/internal/text"
)

// waitPoll is how often `request create --wait` reads the request. It polls the existing
// GET /v1/requests/{id}: one cheap read a second per waiting person, no new route.
var waitPoll = time.Second

// waitForDecision reads request id until it is decided, printing progress (who approved, who
// is still needed) to progress. It returns the final view. Interrupting it (ctx ends) leaves the
// request pending and says how to follow it.
func waitForDecision(ctx context.Context, c *api.Client, id string, progress io.Writer) (access.View, error) {
	last := ""
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		v, err := c.GetRequest(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return v, stoppedWaiting(id)
			}
			return v, err
		}
		if v.Request.State != access.Pending {
			return v, nil
		}
		if p := waitProgress(v); p != last {
			fmt.Fprintln(progress, p)
			last = p
		}
		select {
		case <-ctx.Done():
			return v, stoppedWaiting(id)
		case <-t.C:
		}
	}
}

func stoppedWaiting(id string) error {
	return fmt.Errorf("stopped waiting; request %s is still pending (follow it with: rampart request show %s)", id, id)
}

// waitProgress is one line: who approved, and what is still needed.
func waitProgress(v access.View) string {
	var approved []string
	for _, rv := range v.Reviews {
		if rv.Decision == access.Approve {
			approved = append(approved, rv.Approver)
		}
	}
	var needed []string
	if v.Tally != nil {
		for _, st := range v.Tally.Steps {
			if more := st.Need - len(st.Counted); more > 0 {
				name := st.Name
				if name == "" {
					name = strings.Join(st.From, "|")
				}
				needed = append(needed, fmt.Sprintf("%d more for step %s (from %s)", more, name, strings.Join(st.From, ", ")))
			}
		}
	}
	a := "no approval yet"
	if len(approved) > 0 {
		a = "approved by " + strings.Join(approved, ", ")
	}
	n := "waiting for the grant"
	if len(needed) > 0 {
		n = "still needed: " + strings.Join(needed, "; ")
	}
	return fmt.Sprintf("waiting for %s: %s; %s", v.Request.ID, a, n)
}

// printDecision prints the decided request (the grant, or why not) and returns the exit error:
// nil when granted, exit 3 with the reason when denied, 1 when it lapsed or was cancelled.
func printDecision(g *globals, v access.View) error {
	r := v.Request
	if err := output.Print(os.Stdout, g.output, v, func(tw *tabwriter.Writer) {
		if r.State == access.Approved && v.Grant != nil {
			fmt.Fprintf(tw, "Request %s approved: grant %s of %s for %s is active until %s.\n", r.ID, v.Grant.ID, r.Role, r.Beneficiary, v.Grant.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}); err != nil {
		return err
	}
	switch r.State {
	case access.Approved:
		return nil
	case access.Denied:
		why := "denied"
		for _, rv := range v.Reviews {
			if rv.Decision == access.Deny {
				why = "denied by " + rv.Approver
				if rv.Comment != "" {
					why += ": " + text.Escape(rv.Comment)
				}
			}
		}
		return &codeError{code: exitDenied, err: fmt.Errorf("request %s was %s", r.ID, why)}
	}
	return &codeError{code: exitError, err: errors.New("request " + r.ID + " was " + string(r.State) + " before a decision")}
}
