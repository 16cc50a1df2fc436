package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity/signin"
	"rampart.dev/rampart/internal/clistate"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/internal/text"
	"rampart.dev/rampart/policy"
)

func newLoginCmd(g *globals) *cobra.Command {
	var dev, printToken, device, browser, stepUp, noOpen bool
	var user string
	cmd := &cobra.Command{
		Use:   "login [--device|--browser] [--step-up] [--print-token] | --dev --user NAME",
		Short: "Sign in through the identity provider and save the session for this server",
		Long: `Sign in to the server through its identity provider (OIDC). When a browser can be opened
here (macOS, Windows, $BROWSER, or a desktop session with xdg-open), the CLI opens it and
receives the result on a loopback port (PKCE): the flow every provider allows. Otherwise (over
SSH, in a container) it shows a URL and a code to enter in a browser on any device (the device
flow), and falls back to printing the browser URL when the provider has no device flow for
Rampart. --browser and --device choose; --no-open never opens a browser (the device flow, or with
--browser the URL to open yourself). The session's access token
lasts at most 15 minutes and is refreshed automatically; the session itself ends after 12 hours,
when revoked, or when the person is disabled.

--step-up asks the identity provider for a fresh multi-factor sign-in (approvals that require
one). The session is saved for this --addr in the state file ($RAMPART_CONFIG_DIR/state.json or
the user config directory), or its access token is printed with --print-token (not saved).

Against 'rampart dev', --dev --user NAME skips the identity provider and opens a session for a
demo user (method dev; its access token is refreshed like any other). On servers without
sign-in, use an API token: RAMPART_TOKEN=rpt_… (it cannot approve: approvals need a session).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !dev {
				if user != "" {
					return usageErr("--user goes with --dev; a real sign-in asks the identity provider who you are")
				}
				tr, err := oidcLogin(cmd.Context(), g, device, browser, stepUp, noOpen, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				if printToken {
					return g.done(printedToken{Token: tr.AccessToken, Subject: tr.Session.Subject, SessionID: tr.Session.ID, ExpiresAt: time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)}, "%s\n", tr.AccessToken)
				}
				if err := saveSession(g.addr, tr); err != nil {
					return err
				}
				mfa := ""
				if !tr.Session.MFAAt.IsZero() {
					mfa = ", multi-factor"
				}
				return g.done(loggedIn{Server: g.addr, Subject: tr.Session.Subject, SessionID: tr.Session.ID, MFAAt: tr.Session.MFAAt, ExpiresAt: tr.Session.ExpiresAt},
					"Signed in to %s as %s (session %s%s, until %s).\n", g.addr, tr.Session.Subject, tr.Session.ID, mfa, tr.Session.ExpiresAt.Local().Format(time.RFC1123))
			}
			if user == "" {
				return usageErr("--dev needs --user NAME (a user of the dev server's policy, e.g. alice)")
			}
			c := api.NewClient(g.addr, "")
			t, err := c.DevLogin(cmd.Context(), user)
			if err != nil {
				return err
			}
			if printToken {
				return g.done(printedToken{Token: t.Token, Subject: t.Subject, SessionID: t.Session.ID, ExpiresAt: t.ExpiresAt}, "%s\n", t.Token)
			}
			tr := signin.TokenResponse{AccessToken: t.Token, RefreshToken: t.RefreshToken, TokenType: "Bearer",
				ExpiresIn: int(time.Until(t.ExpiresAt) / time.Second), Session: t.Session}
			if err := saveSession(g.addr, tr); err != nil {
				return err
			}
			return g.done(loggedIn{Server: g.addr, Subject: t.Subject, SessionID: t.Session.ID, ExpiresAt: t.Session.ExpiresAt},
				"Logged in to %s as %s (development session %s, until %s).\n", g.addr, t.Subject, t.Session.ID, t.Session.ExpiresAt.Local().Format(time.RFC1123))
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "use the development login of `rampart dev` (no identity provider)")
	cmd.Flags().StringVar(&user, "user", "", "demo user to log in as (with --dev)")
	cmd.Flags().BoolVar(&printToken, "print-token", false, "print the access token instead of saving the session")
	cmd.Flags().BoolVar(&device, "device", false, "the device flow: a code to enter in a browser on any device (default when no browser can be opened here)")
	cmd.Flags().BoolVar(&browser, "browser", false, "a browser on this machine with a loopback redirect (default when one can be opened)")
	cmd.Flags().BoolVar(&stepUp, "step-up", false, "ask for a fresh multi-factor sign-in")
	cmd.Flags().BoolVar(&noOpen, "no-open", false, "never open a browser: the device flow, or with --browser the URL to open yourself")
	return cmd
}

// printedToken is what login --print-token prints under -o json or yaml (the table is the bare
// token, for RAMPART_TOKEN=$(rampart login --print-token)).
type printedToken struct {
	Token     string    `json:"token"`
	Subject   string    `json:"subject"`
	SessionID string    `json:"session_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// loggedIn is what login prints under -o json or yaml when it saved the session.
type loggedIn struct {
	Server    string    `json:"server"`
	Subject   string    `json:"subject"`
	SessionID string    `json:"session_id"`
	MFAAt     time.Time `json:"mfa_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at"`
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "End the saved session (or revoke the saved token) and forget it",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := clistate.Load()
			if err != nil {
				return err
			}
			s := st.For(g.addr)
			if s.Token == "" {
				return fmt.Errorf("not logged in to %s", g.addr)
			}
			c := api.NewClient(g.addr, s.Token)
			if s.SessionID != "" {
				err = c.RevokeSession(cmd.Context(), s.SessionID, "logged out")
			} else {
				err = c.RevokeToken(cmd.Context(), s.TokenID)
			}
			s.ForgetLogin()
			if serr := st.Save(); serr != nil {
				return serr
			}
			if err != nil && !api.IsStatus(err, 401) {
				return fmt.Errorf("forgot the login locally, but the server did not end it: %w", err)
			}
			return g.done(map[string]string{"logged_out": g.addr}, "Logged out.\n")
		},
	}
}

func newWhoamiCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who the current token belongs to",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			w, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, w, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "subject:\t%s\nkind:\t%s\ngroups:\t%s\nadmin:\t%v\nauditor:\t%v\ntoken:\t%s\n", w.Subject, w.Kind, strings.Join(w.Groups, ", "), w.Admin, w.Auditor, w.TokenID)
			})
		},
	}
}

func newResourcesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resources",
		Short: "List the resource catalogue",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rs, err := c.Resources(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, rs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "NAME\tKIND\tSENSITIVITY\tOWNERS\tDESCRIPTION")
				for _, r := range rs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, r.Sensitivity, strings.Join(r.Owners, ","), r.Description)
				}
			})
		},
	}
}

func newRolesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "roles",
		Short: "List roles, what they reach and the approval they need",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rs, err := c.Roles(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, rs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ROLE\tRESOURCES\tAPPROVAL POLICY\tAPPROVALS\tMAX")
				for _, r := range rs {
					ap := r.Policy
					if ap == "" {
						ap = "(not requestable)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Name, strings.Join(r.Resources, ","), ap, r.Approvals, r.MaxDur)
				}
			})
		},
	}
}

func newRequestCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "request", Short: "Create, list, show, approve, deny and cancel access requests"}
	var (
		role, reason, duration, beneficiary, action string
		resources                                   []string
		breakGlass, yes, wait                       bool
	)
	create := &cobra.Command{
		Use:   "create (--role ROLE | --resource R [--resource R2 …] --action A [--yes]) --reason TEXT [--duration 2h] [--for SUBJECT] [--break-glass] [--wait]",
		Short: "Request a role, or the least privileged role for an action on one or more resources",
		Long: `Request a role. Or name --resource and --action instead: the least privileged role that
gives the action is suggested, shown with the approval it needs, and requested once you confirm
(--yes confirms for scripts).

--resource may be given several times: a role is suggested for the action on each resource first,
and only if every one has a role are they requested together, one request per distinct role, with
the same reason and duration. If some resource has no requestable role, nothing is requested and
the command exits 4.

With --wait it stays until the request is decided, printing who approved and who is still
needed, then prints the grant; a denial exits 3 with the reason, a request that lapses or is
cancelled exits 1. Ctrl-C stops waiting and leaves the request pending.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			byResource := len(resources) > 0 || action != ""
			switch {
			case role != "" && byResource:
				return usageErr("give --role, or --resource and --action, not both")
			case role == "" && !byResource:
				return usageErr("--role is required (list roles with 'rampart roles'), or give --resource and --action")
			case byResource && (len(resources) == 0 || action == ""):
				return usageErr("--resource and --action go together")
			case len(resources) > 1 && (wait || breakGlass):
				return usageErr("--wait and --break-glass take one request; give one --resource, or --role")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if len(resources) > 1 {
				return createRequestSet(cmd.Context(), g, c, resources, api.CreateRequestBody{Action: action, Reason: reason, Duration: duration, Beneficiary: beneficiary}, yes)
			}
			if byResource {
				adv, err := c.Suggest(cmd.Context(), api.SuggestBody{Resource: resources[0], Actions: []string{action}})
				if err != nil {
					return noFitCode(err)
				}
				tw := tabwriter.NewWriter(os.Stderr, 0, 4, 2, ' ', 0)
				printAdvice(tw, adv, false)
				tw.Flush()
				if !yes {
					ok, err := confirm(fmt.Sprintf("Request %s for %s? [y/N] ", adv.Role.Role, orSelf(beneficiary)))
					if err != nil {
						return err
					}
					if !ok {
						return fmt.Errorf("not requested: you did not confirm")
					}
				}
				role = adv.Role.Role
			}
			out, err := c.CreateRequest(cmd.Context(), api.CreateRequestBody{Role: role, Reason: reason, Duration: duration, Beneficiary: beneficiary, BreakGlass: breakGlass})
			if err != nil {
				return err
			}
			if wait && out.Grant == nil {
				r := out.Request
				fmt.Fprintf(os.Stderr, "Request %s created: %s for %s, %s, under approval policy %q; waiting for its approvers (Ctrl-C stops waiting, the request stays pending).\n",
					r.ID, r.Role, r.Beneficiary, policy.FormatDuration(r.Duration), r.Policy)
				v, err := waitForDecision(cmd.Context(), c, r.ID, os.Stderr)
				if err != nil {
					return err
				}
				return printDecision(g, v)
			}
			return output.Print(os.Stdout, g.output, out, func(tw *tabwriter.Writer) {
				r := out.Request
				if out.Grant != nil {
					fmt.Fprintf(tw, "BREAK-GLASS: grant %s of %s is active until %s.\nAn after-the-fact review by the approvers is now required; this use is marked in the ledger.\n", out.Grant.ID, r.Role, out.Grant.ExpiresAt.UTC().Format(time.RFC3339))
					return
				}
				fmt.Fprintf(tw, "Request %s created: %s for %s, %s, under approval policy %q.\n", r.ID, r.Role, r.Beneficiary, policy.FormatDuration(r.Duration), r.Policy)
				fmt.Fprintf(tw, "It needs approval before %s. Approvers see it with `rampart request list --scope review`.\n", r.ExpiresAt.UTC().Format(time.RFC3339))
				fmt.Fprintf(tw, "Follow it with: rampart request show %s\n", r.ID)
			})
		},
	}
	create.Flags().StringVar(&role, "role", "", "role to request")
	create.Flags().StringArrayVar(&resources, "resource", nil, "instead of --role: the resource you need (repeat for several: one request per distinct role)")
	create.Flags().StringVar(&action, "action", "", "with --resource: the action you need on it (on each)")
	create.Flags().BoolVarP(&yes, "yes", "y", false, "with --resource: request the suggested role without asking")
	create.Flags().StringVar(&reason, "reason", "", "what the access is for (recorded in the ledger)")
	create.Flags().StringVar(&duration, "duration", "", "how long, e.g. 2h (default: the policy's default)")
	create.Flags().StringVar(&beneficiary, "for", "", "who gets the access (default: you), e.g. k8s:prod/ml/trainer; filing for anyone else needs a request_for rule (see rampart policy explain --beneficiary)")
	create.Flags().BoolVar(&breakGlass, "break-glass", false, "emergency self-activation, where policy allows; reviewed after the fact")
	create.Flags().BoolVar(&wait, "wait", false, "wait until the request is decided (with progress), then print the grant; a denial exits 3")

	var scope string
	var states []string
	var limit int
	list := &cobra.Command{
		Use:   "list [--scope mine|review|all] [--state pending]",
		Short: "List requests you made, can review, or (admins, auditors) all",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rs, err := c.ListRequests(cmd.Context(), scope, states, limit)
			if err != nil {
				return err
			}
			now := time.Now()
			return output.Print(os.Stdout, g.output, rs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tROLE\tFOR\tBY\tSTATE\tDURATION\tCREATED")
				for _, r := range rs {
					state := string(r.State)
					if r.BreakGlass {
						state += " (break-glass, review " + string(r.PostReview) + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Role, r.Beneficiary, r.Requester, state, policy.FormatDuration(r.Duration), output.When(r.CreatedAt, now))
				}
			})
		},
	}
	list.Flags().StringVar(&scope, "scope", "mine", "mine, review or all")
	list.Flags().StringSliceVar(&states, "state", nil, "only these states (pending, approved, denied, cancelled, expired)")
	list.Flags().IntVar(&limit, "limit", 200, "at most this many")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a request with its reviews, approval tally and grant",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.GetRequest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printView(g, v)
		},
	}

	var revDuration, comment string
	reviewCmd := func(d access.Decision, short string) *cobra.Command {
		c := &cobra.Command{
			Use:   string(d) + " ID",
			Short: short,
			Args:  exactArgs("ID"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				v, err := c.Review(cmd.Context(), args[0], d, api.ReviewBody{Duration: revDuration, Comment: comment})
				if err != nil {
					return err
				}
				return printView(g, v)
			},
		}
		c.Flags().StringVar(&comment, "comment", "", "note recorded with the review")
		if d == access.Approve {
			c.Flags().StringVar(&revDuration, "duration", "", "approve for at most this long (the shortest approved duration wins)")
		}
		return c
	}
	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Withdraw your pending request",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.Cancel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printView(g, v)
		},
	}
	cmd.AddCommand(create, list, show, reviewCmd(access.Approve, "Approve a request you are eligible to review"), reviewCmd(access.Deny, "Deny a request you are eligible to review"), cancel)
	return cmd
}

// confirm asks a yes/no question on the terminal. Without a terminal it refuses to guess.
func confirm(question string) (bool, error) {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false, usageErr("standard input is not a terminal, so nobody can confirm; pass --yes to request the suggested role")
	}
	fmt.Fprint(os.Stderr, question)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(os.Stderr)
		return false, usageErr("no answer (end of input); pass --yes to request the suggested role without asking")
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}

func orSelf(who string) string {
	if who == "" {
		return "yourself"
	}
	return who
}

func printView(g *globals, v access.View) error {
	now := time.Now()
	return output.Print(os.Stdout, g.output, v, func(tw *tabwriter.Writer) {
		r := v.Request
		fmt.Fprintf(tw, "request:\t%s\nrole:\t%s\nfor:\t%s\nrequested by:\t%s\nreason:\t%s\nduration:\t%s\nstate:\t%s\npolicy:\t%s\ncreated:\t%s\n",
			r.ID, r.Role, r.Beneficiary, r.Requester, text.Escape(r.Reason), policy.FormatDuration(r.Duration), r.State, r.Policy, output.When(r.CreatedAt, now))
		if r.State == access.Pending {
			fmt.Fprintf(tw, "lapses:\t%s\n", output.When(r.ExpiresAt, now))
		}
		if r.BreakGlass {
			fmt.Fprintf(tw, "break-glass:\tyes; after-the-fact review %s\n", r.PostReview)
		}
		if r.RenewalOf != "" {
			fmt.Fprintf(tw, "renews:\t%s\n", r.RenewalOf)
		}
		for _, rv := range v.Reviews {
			extra := ""
			if rv.Duration > 0 {
				extra = " for at most " + policy.FormatDuration(rv.Duration)
			}
			if rv.Comment != "" {
				extra += ": " + text.Escape(rv.Comment) // stored before the text rule, perhaps
			}
			fmt.Fprintf(tw, "review:\t%s %sd%s at %s\n", rv.Approver, rv.Decision, extra, rv.At.UTC().Format(time.RFC3339))
		}
		if v.Tally != nil {
			for _, st := range v.Tally.Steps {
				name := st.Name
				if name == "" {
					name = strings.Join(st.From, "|")
				}
				fmt.Fprintf(tw, "step %s:\t%d of %d from %s: %s\n", name, len(st.Counted), st.Need, strings.Join(st.From, ", "), strings.Join(st.Counted, ", "))
			}
			for _, ig := range v.Tally.Ignored {
				fmt.Fprintf(tw, "not counted:\t%s %s\n", ig.Approver, ig.Why)
			}
		}
		if v.Grant != nil {
			fmt.Fprintf(tw, "grant:\t%s (%s) until %s\n", v.Grant.ID, v.Grant.State, output.When(v.Grant.ExpiresAt, now))
		}
	})
}

func newGrantCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "grant", Short: "List, renew and revoke grants"}
	var subject string
	var all bool
	var states []string
	list := &cobra.Command{
		Use:   "list [--subject S | --all] [--state active]",
		Short: "List your grants (admins and auditors: anyone's)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			gs, err := c.ListGrants(cmd.Context(), subject, all, states)
			if err != nil {
				return err
			}
			roles, err := c.Roles(cmd.Context())
			if err != nil {
				return err
			}
			digest := map[string]string{}
			for _, r := range roles {
				digest[r.Name] = r.Digest
			}
			now := time.Now()
			return output.Print(os.Stdout, g.output, gs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tROLE\tSUBJECT\tSTATE\tEXPIRES")
				for _, gr := range gs {
					state := string(gr.State)
					switch {
					case gr.State == access.GrantActive && !gr.ActiveAt(now):
						state = "expired (sweep pending)"
					case gr.State == access.GrantActive && gr.RoleDigest != "" && gr.RoleDigest != digest[gr.Role]:
						// Invariant 9: it keeps what it was approved for, narrowed to the role as it is.
						state += " (role changed since approval; renew for its current definition)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", gr.ID, gr.Role, gr.Subject, state, output.When(gr.ExpiresAt, now))
				}
			})
		},
	}
	list.Flags().StringVar(&subject, "subject", "", "whose grants (default: yours)")
	list.Flags().BoolVar(&all, "all", false, "everyone's grants (admins and auditors)")
	list.Flags().StringSliceVar(&states, "state", nil, "only these states (active, revoked, expired)")

	var duration, reason string
	renew := &cobra.Command{
		Use:   "renew ID [--duration 2h] [--reason TEXT]",
		Short: "Ask to extend a grant; a new request under the current policy",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.Renew(cmd.Context(), args[0], api.RenewBody{Duration: duration, Reason: reason})
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, out, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Renewal request %s created for grant %s; it needs the same approvals as a new request.\n", out.Request.ID, args[0])
			})
		},
	}
	renew.Flags().StringVar(&duration, "duration", "", "how long to extend by (default: the policy's default)")
	renew.Flags().StringVar(&reason, "reason", "", "why (default: the original reason)")

	var revokeReason string
	revoke := &cobra.Command{
		Use:   "revoke ID --reason TEXT",
		Short: "End a grant now",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if revokeReason == "" {
				return usageErr("--reason is required: it is recorded in the ledger")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			gr, err := c.Revoke(cmd.Context(), args[0], revokeReason)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, gr, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Grant %s (%s for %s) revoked.\n", gr.ID, gr.Role, gr.Subject)
			})
		},
	}
	revoke.Flags().StringVar(&revokeReason, "reason", "", "why (recorded in the ledger)")
	cmd.AddCommand(list, renew, revoke)
	return cmd
}

func newCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check SUBJECT ACTION RESOURCE",
		Short: "Ask the decision engine; exit 0 if allowed, 3 if denied",
		Long: `Ask whether SUBJECT may perform ACTION on RESOURCE now. Prints the decision and its
evidence (the grant or standing binding, and when it ends). Exit status: 0 allowed, 3 denied,
1 error (including a server failing closed). Checking another subject needs an admin, auditor or
service token.`,
		Args: exactArgs("SUBJECT", "ACTION", "RESOURCE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.Check(cmd.Context(), authz.Query{Subject: args[0], Action: args[1], Resource: args[2]})
			if err != nil {
				return err
			}
			perr := output.Print(os.Stdout, g.output, d, func(tw *tabwriter.Writer) {
				verdict := "DENIED"
				if d.Allowed {
					verdict = "ALLOWED"
				}
				fmt.Fprintf(tw, "%s: %s %s %s\n%s\n", verdict, args[0], args[1], args[2], d.Reason)
				if d.Allowed && !d.ExpiresAt.IsZero() {
					fmt.Fprintf(tw, "expires: %s\n", output.When(d.ExpiresAt, time.Now()))
				}
			})
			if perr != nil {
				return perr
			}
			if !d.Allowed {
				return &codeError{code: exitDenied}
			}
			return nil
		},
	}
}

// createRequestSet suggests a role for action on each resource, shows them, and once confirmed
// files them together (POST /v1/requests with resources: the server suggests again and files
// nothing unless every resource has a role).
func createRequestSet(ctx context.Context, g *globals, c *api.Client, resources []string, b api.CreateRequestBody, yes bool) error {
	tw := tabwriter.NewWriter(os.Stderr, 0, 4, 2, ' ', 0)
	var roles []string
	seen := map[string]bool{}
	for _, res := range resources {
		adv, err := c.Suggest(ctx, api.SuggestBody{Resource: res, Actions: []string{b.Action}})
		if err != nil {
			return noFitCode(fmt.Errorf("--resource %s: %w; nothing was requested", res, err))
		}
		fmt.Fprintf(tw, "For %s on %s:\t\n", b.Action, res)
		printRole(tw, adv.AsPart())
		if !seen[adv.Role.Role] {
			seen[adv.Role.Role] = true
			roles = append(roles, adv.Role.Role)
		}
	}
	tw.Flush()
	if !yes {
		ok, err := confirm(fmt.Sprintf("Request %s for %s? [y/N] ", strings.Join(roles, " and "), orSelf(b.Beneficiary)))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("not requested: you did not confirm")
		}
	}
	b.Resources = resources
	out, err := c.CreateRequests(ctx, b)
	if err != nil {
		return noFitCode(err)
	}
	return output.Print(os.Stdout, g.output, out, func(tw *tabwriter.Writer) {
		for _, cr := range out.Requests {
			r := cr.Request
			fmt.Fprintf(tw, "Request %s created: %s for %s, %s, under approval policy %q (for %s).\n", r.ID, r.Role, r.Beneficiary, policy.FormatDuration(r.Duration), r.Policy, strings.Join(cr.Resources, ", "))
		}
		fmt.Fprintf(tw, "They need approval; approvers see them with `rampart request list --scope review`. Follow them with: rampart request list\n")
	})
}
