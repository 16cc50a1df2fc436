package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/signin"
	"rampart.dev/rampart/internal/clistate"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/server"
)

// loginTimeout bounds how long the CLI waits for the person to finish signing in.
const loginTimeout = 5 * time.Minute

// errNoDeviceFlow means the identity provider does not offer the device authorization grant.
var errNoDeviceFlow = errors.New("the identity provider does not offer the device flow")

// oidcLogin signs in through the server's identity provider. With --device, the device
// authorization grant; with --browser or --step-up, the browser with a loopback redirect. With
// neither, the browser when one can be opened here (canOpenBrowser): Okta and Auth0 offer the
// device flow only to native applications and Entra ID only to public clients, so the browser is
// the flow every provider allows; else the device flow, and the browser (its URL printed) if
// the provider has no device flow for Rampart.
func oidcLogin(ctx context.Context, g *globals, device, browser, stepUp, noOpen bool, stderr io.Writer) (signin.TokenResponse, error) {
	st, err := clistate.Load()
	if err != nil {
		return signin.TokenResponse{}, err
	}
	c := api.NewClient(g.addr, "")
	c.Device = st.Device()
	if err := st.Save(); err != nil {
		return signin.TokenResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	switch {
	case device && browser:
		return signin.TokenResponse{}, usageErr("--device and --browser are alternatives; choose one")
	case device && stepUp:
		return signin.TokenResponse{}, usageErr("--step-up needs the browser (the device flow cannot ask the identity provider for a fresh second factor); drop --device, or use `rampart mfa step-up CODE`")
	case browser || stepUp:
		return browserLogin(ctx, c, stepUp, noOpen, stderr)
	case device:
		return deviceLogin(ctx, c, stderr)
	}
	if !noOpen && canOpenBrowser(runtime.GOOS, os.Getenv, exec.LookPath) {
		return browserLogin(ctx, c, false, false, stderr)
	}
	tr, err := deviceLogin(ctx, c, stderr)
	if errors.Is(err, errNoDeviceFlow) {
		fmt.Fprintf(stderr, "%v\nSigning in through a browser instead.\n", err)
		return browserLogin(ctx, c, false, noOpen, stderr)
	}
	return tr, err
}

// canOpenBrowser reports whether `rampart login` can open a browser on this machine: on macOS
// and Windows always; elsewhere when $BROWSER names one, or a graphical session ($DISPLAY or
// $WAYLAND_DISPLAY) has xdg-open. Not over a plain SSH session, in a container or on a server:
// there the device flow lets the person sign in on any other device.
func canOpenBrowser(goos string, getenv func(string) string, lookPath func(string) (string, error)) bool {
	switch goos {
	case "darwin", "windows":
		return true
	}
	if browserCommand(getenv("BROWSER"), "x") != nil {
		return true
	}
	if getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == "" {
		return false
	}
	_, err := lookPath("xdg-open")
	return err == nil
}

// browserCommand is the first command of $BROWSER (a list separated by colons, as xdg-open and
// Python read it) to open u: "%s" in it stands for the URL, else the URL is its last argument.
// It is split on spaces and run without a shell. Nil when $BROWSER names none.
func browserCommand(env, u string) []string {
	for _, entry := range strings.Split(env, ":") {
		args := strings.Fields(entry)
		if len(args) == 0 {
			continue
		}
		replaced := false
		for i, a := range args {
			if strings.Contains(a, "%s") {
				args[i], replaced = strings.ReplaceAll(a, "%s", u), true
			}
		}
		if !replaced {
			args = append(args, u)
		}
		return args
	}
	return nil
}

func randomURLSafe() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// browserLogin runs the loopback flow (RFC 8252): a listener on 127.0.0.1, the server's /login
// with our PKCE challenge, and the one-time code redeemed with our verifier.
func browserLogin(ctx context.Context, c *api.Client, stepUp, noOpen bool, stderr io.Writer) (signin.TokenResponse, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return signin.TokenResponse{}, fmt.Errorf("open a loopback port for the sign-in redirect: %w", err)
	}
	defer ln.Close()
	redirect := "http://" + ln.Addr().String() + "/callback"
	verifier, state := randomURLSafe(), randomURLSafe()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"redirect_uri": {redirect}, "state": {state}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	if stepUp {
		q.Set("step_up", "1")
	}
	loginURL := c.BaseURL + "/login?" + q.Encode()

	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		v := r.URL.Query()
		var res result
		switch {
		case v.Get("state") != state:
			http.Error(w, "This sign-in was not started by this rampart login.", http.StatusBadRequest)
			return // keep waiting for the right one
		case v.Get("error") != "":
			res.err = fmt.Errorf("sign-in refused: %s", v.Get("error_description"))
			fmt.Fprintf(w, "<!doctype html><title>Rampart</title><h1>Sign-in refused</h1><p>%s</p>", html.EscapeString(v.Get("error_description")))
		default:
			res.code = v.Get("code")
			fmt.Fprint(w, "<!doctype html><title>Rampart</title><h1>Signed in</h1><p>You can close this window and return to the terminal.</p>")
		}
		select {
		case done <- res:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		// Let the browser receive its page before the listener goes: the handler hands over the
		// result before its response is written, and Close would cut that response off.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
	}()

	fmt.Fprintf(stderr, "Open this URL in a browser to sign in:\n\n  %s\n\nWaiting (up to %s)…\n", loginURL, loginTimeout)
	if !noOpen {
		openBrowser(loginURL)
	}
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return signin.TokenResponse{}, fmt.Errorf("no sign-in within %s: %w", loginTimeout, ctx.Err())
	}
	if res.err != nil {
		return signin.TokenResponse{}, res.err
	}
	return c.AuthToken(ctx, url.Values{"grant_type": {signin.GrantCode}, "code": {res.code}, "code_verifier": {verifier}, "redirect_uri": {redirect}})
}

// openBrowser tries to open u: with $BROWSER when set, else the system's way. Failures are
// silent (the URL is printed).
func openBrowser(u string) {
	var cmd *exec.Cmd
	if args := browserCommand(os.Getenv("BROWSER"), u); args != nil {
		cmd = exec.Command(args[0], args[1:]...)
		if cmd.Start() == nil {
			go func() { _ = cmd.Wait() }()
		}
		return
	}
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return
		}
		cmd = exec.Command("xdg-open", u)
	}
	_ = cmd.Start()
}

// deviceLogin runs the device flow: the person signs in on any device with the code shown.
func deviceLogin(ctx context.Context, c *api.Client, stderr io.Writer) (signin.TokenResponse, error) {
	d, err := c.DeviceAuthorization(ctx)
	var oe *api.OAuthError
	switch {
	case api.IsStatus(err, http.StatusNotFound):
		return signin.TokenResponse{}, errors.New("this server has no sign-in configured (oidc); use an API token (RAMPART_TOKEN) or, against rampart dev, login --dev --user NAME")
	case errors.As(err, &oe) && oe.TokenError.Error == "unsupported_grant_type":
		return signin.TokenResponse{}, fmt.Errorf("%w (%s)", errNoDeviceFlow, oe.Description)
	case err != nil:
		return signin.TokenResponse{}, err
	}
	where := d.VerificationURI
	if d.VerificationURIComplete != "" {
		where = d.VerificationURIComplete
	}
	fmt.Fprintf(stderr, "On any device, open\n\n  %s\n\nand enter the code %s. Waiting (up to %s)…\n", where, d.UserCode, time.Duration(d.ExpiresIn)*time.Second)
	interval := time.Duration(max(d.Interval, 1)) * time.Second
	form := url.Values{"grant_type": {signin.GrantDevice}, "device_code": {d.DeviceCode}}
	for {
		select {
		case <-ctx.Done():
			return signin.TokenResponse{}, fmt.Errorf("no sign-in in time: %w", ctx.Err())
		case <-time.After(interval):
		}
		tr, err := c.AuthToken(ctx, form)
		var oe *api.OAuthError
		if !errors.As(err, &oe) {
			return tr, err
		}
		switch oe.TokenError.Error {
		case "authorization_pending":
			continue
		case "slow_down":
			interval += 5 * time.Second
			continue
		case "mfa_required":
			return otpLogin(ctx, c, oe.MFAToken, oe.Description, stderr)
		}
		return tr, err
	}
}

// otpLogin finishes a sign-in that needs a code from the authenticator app.
func otpLogin(ctx context.Context, c *api.Client, token, why string, stderr io.Writer) (signin.TokenResponse, error) {
	fmt.Fprintf(stderr, "%s\nOne-time code: ", why)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return signin.TokenResponse{}, fmt.Errorf("read the one-time code from standard input: %w", err)
	}
	return c.AuthToken(ctx, url.Values{"grant_type": {signin.GrantOTP}, "mfa_token": {token}, "otp": {strings.TrimSpace(line)}})
}

// saveSession remembers a signed-in session for addr.
func saveSession(addr string, tr signin.TokenResponse) error {
	st, err := clistate.Load()
	if err != nil {
		return err
	}
	s := st.For(addr)
	s.ForgetLogin()
	s.Token, s.RefreshToken, s.Subject, s.SessionID = tr.AccessToken, tr.RefreshToken, tr.Session.Subject, tr.Session.ID
	s.AccessExpiresAt = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	return st.Save()
}

// refreshIfDue renews a saved session's access token shortly before it expires.
func refreshIfDue(st *clistate.State, addr string) error {
	s := st.For(addr)
	if !strings.HasPrefix(s.Token, identity.AccessPrefix) || s.RefreshToken == "" || time.Until(s.AccessExpiresAt) > 30*time.Second {
		return nil
	}
	c := api.NewClient(addr, "")
	c.Device = st.Device()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := c.AuthToken(ctx, url.Values{"grant_type": {signin.GrantRefresh}, "refresh_token": {s.RefreshToken}})
	if err != nil {
		var oe *api.OAuthError
		if errors.As(err, &oe) {
			s.ForgetLogin()
			_ = st.Save()
			return fmt.Errorf("your session at %s ended (%s); run `rampart login` again", addr, oe.Description)
		}
		return err
	}
	s.Token, s.RefreshToken = tr.AccessToken, tr.RefreshToken
	s.AccessExpiresAt = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	return st.Save()
}

func newSessionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "session", Short: "List and revoke sign-in sessions"}
	var subject string
	var all bool
	list := &cobra.Command{
		Use:   "list [--subject NAME | --all]",
		Short: "List your sessions (admins and auditors: anyone's)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ss, err := c.Sessions(cmd.Context(), subject, all)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, ss, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSUBJECT\tMETHOD\tCREATED\tLAST USED\tIP\tRISK\tMFA\tSTATE")
				now := time.Now()
				for _, s := range ss {
					state := "active"
					switch {
					case !s.RevokedAt.IsZero():
						state = "revoked: " + s.RevokedReason
					case !now.Before(s.ExpiresAt):
						state = "expired"
					}
					mfa := "-"
					if !s.MFAAt.IsZero() {
						mfa = s.MFAAt.Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Subject, s.Method, s.CreatedAt.Local().Format(time.DateTime),
						s.LastSeenAt.Local().Format(time.DateTime), s.IP, s.Risk, mfa, state)
				}
			})
		},
	}
	list.Flags().StringVar(&subject, "subject", "", "whose sessions (admins and auditors)")
	list.Flags().BoolVar(&all, "all", false, "everyone's sessions (admins and auditors)")
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke ID [--reason TEXT]",
		Short: "End a session now: its tokens stop working on the next call",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeSession(cmd.Context(), args[0], reason); err != nil {
				return err
			}
			return g.done(map[string]any{"id": args[0], "revoked": true}, "Session %s revoked.\n", args[0])
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why (recorded in the ledger)")
	cmd.AddCommand(list, revoke)
	return cmd
}

func newMFACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "mfa", Short: "Rampart's own second factor (TOTP), for identity providers that cannot be asked for one"}
	var enrolOTP string
	enrol := &cobra.Command{
		Use:   "enrol [--otp CODE]",
		Short: "Start enrolling (or replacing) an authenticator app: needs a factor you already have",
		Long: `Start enrolling an authenticator app as your Rampart second factor, from a sign-in of the last
15 minutes. Enrolling or replacing a factor needs a factor you already have, so that someone with
only your password cannot add theirs: --otp CODE, a code of your current factor (to replace it);
or a multi-factor sign-in at the identity provider in the last 15 minutes (rampart login
--step-up); or an administrator's one-time allowance (rampart mfa allow-enrol YOU). The enrolment
is a High ledger entry. A factor counts for approvals' require_step_up only after a day, unless it
was enrolled under the identity provider's multi-factor authentication.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.EnrolTOTP(cmd.Context(), enrolOTP)
			if err != nil {
				return err
			}
			return g.done(out, "Add this to your authenticator app:\n\n  secret: %s\n  uri:    %s\n\nthen confirm with: rampart mfa confirm CODE\n", out["secret"], out["otpauth_uri"])
		},
	}
	confirm := &cobra.Command{
		Use:   "confirm CODE",
		Short: "Confirm the enrolment with the app's current code",
		Args:  exactArgs("CODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.ConfirmTOTP(cmd.Context(), args[0]); err != nil {
				return err
			}
			return g.done(map[string]any{"enrolled": true}, "Second factor enrolled.\n")
		},
	}
	stepUp := &cobra.Command{
		Use:   "step-up CODE",
		Short: "Prove a fresh second factor in the current session (for approvals that require it)",
		Args:  exactArgs("CODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.StepUp(cmd.Context(), args[0]); err != nil {
				return err
			}
			return g.done(map[string]any{"stepped_up": true}, "Stepped up: this session has a fresh second factor.\n")
		},
	}
	enrol.Flags().StringVar(&enrolOTP, "otp", "", "a code of your current factor, to replace it")
	reset := &cobra.Command{
		Use:   "reset USER",
		Short: "Delete a user's second factor (admins; e.g. a lost phone)",
		Args:  exactArgs("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return userAction(cmd.Context(), g, args[0], "mfa/reset", "Second factor of %s reset.\n")
		},
	}
	allow := &cobra.Command{
		Use:   "allow-enrol USER",
		Short: "Let a person enrol a second factor without one, once, within the hour (admins; recorded High)",
		Long: `Let a person enrol a second factor without a factor or the identity provider's multi-factor
authentication, once, within the next hour: after a lost factor (rampart mfa reset), or for an
identity provider whose tokens do not say how the person authenticated (Entra ID). Check who is
asking first: the person enrols from their own session, and the factor counts for approvals only
after a day. Recorded as a High ledger entry.`,
		Args: exactArgs("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return userAction(cmd.Context(), g, args[0], "mfa/allow-enrol", "%s may enrol a second factor within the hour (rampart mfa enrol, from their own session).\n")
		},
	}
	code := &cobra.Command{
		Use:   "code",
		Short: "Print the current one-time code of rampart dev's demo users (development only)",
		Long: `Print the current one-time code (TOTP) of the secret that rampart dev's built-in identity
provider gives every demo user, published so that step-up can be tried without an authenticator
app: type it when ` + "`rampart login --step-up`" + ` asks for a one-time code. Computed here from that
published secret; nothing is sent. Only for a server on this machine (rampart dev): at a real
identity provider, use your authenticator app.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !loopbackAddr(g.addr) {
				return usageErr("mfa code is for rampart dev's demo users, whose secret is published; %s is not on this machine: use your authenticator app", g.addr)
			}
			key, err := identity.DecodeTOTPSecret(server.DevTOTPSecret)
			if err != nil {
				return err
			}
			now := time.Now()
			step := identity.TOTPStepAt(now)
			left := time.Unix((step+1)*int64(identity.TOTPStep/time.Second), 0).Sub(now).Round(time.Second)
			// A code may start with 0, so under -o json it is a string, not a bare number.
			otp := identity.TOTPAt(key, step)
			if err := g.done(map[string]any{"code": otp, "valid_for_seconds": int(left.Seconds())}, "%s\n", otp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "(valid for %s more; the demo users' published secret %s)\n", left, server.DevTOTPSecret)
			return nil
		},
	}
	cmd.AddCommand(enrol, confirm, stepUp, reset, allow, code)
	return cmd
}

// loopbackAddr reports whether a --addr (host:port or URL) names this machine.
func loopbackAddr(addr string) bool {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func userAction(ctx context.Context, g *globals, subject, action, done string) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	if err := c.UserAction(ctx, subject, action); err != nil {
		return err
	}
	return g.done(map[string]string{"subject": subject, "action": action}, done, subject)
}

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "People Rampart knows: list, disable, enable, unbind (admins)"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List people who signed in or were disabled",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			us, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, us, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "SUBJECT\tGROUPS\tSTATE\tIDP ACCOUNT")
				for _, u := range us {
					state := "active"
					if !u.DisabledAt.IsZero() {
						state = "disabled by " + u.DisabledBy
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Subject, strings.Join(u.Groups, ", "), state, u.IdPSubject)
				}
			})
		},
	}
	mk := func(use, short, action, done string) *cobra.Command {
		return &cobra.Command{Use: use + " USER", Short: short, Args: exactArgs("USER"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return userAction(cmd.Context(), g, args[0], action, done)
			}}
	}
	var reason string
	disable := &cobra.Command{Use: "disable USER [--reason TEXT]", Args: exactArgs("USER"),
		Short: "Disable a person: their sessions and tokens are revoked for good, their grants revoked, every decision about them denies",
		Long: `Disable a person and end everything of theirs at once: every session (and refresh token) and
API token of theirs is revoked for good, their active grants are revoked (their Kubernetes
bindings and egress tunnels go within seconds), pending requests by or for them are cancelled,
their approvals of pending requests no longer count, and every decision about them denies, on
every replica. Enabling them again only lets them sign in again: nothing is revived.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.DisableUser(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, d, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "%s disabled: %d session(s) and %d token(s) revoked, %d grant(s) revoked, %d pending request(s) cancelled, %d approval(s) withdrawn.\n",
					d.Subject, len(d.Sessions), d.Tokens, len(d.Grants), len(d.Requests), len(d.Approvals))
			})
		}}
	disable.Flags().StringVar(&reason, "reason", "", "why (recorded in the ledger)")
	cmd.AddCommand(list, disable,
		mk("enable", "Let a disabled person sign in again (nothing of theirs is revived)", "enable", "%s enabled; they may sign in again.\n"),
		mk("unbind", "Forget the identity-provider account a user is bound to (the account was replaced)", "unbind", "%s unbound; the next sign-in binds the account it comes from.\n"))
	return cmd
}
