package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/devop"
	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/identity/scim"
	"rampart.dev/rampart/identity/signin"
	"rampart.dev/rampart/identity/workload"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/secretfile"
	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/policy"
)

// OIDCConfig is the identity provider people sign in with.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (https). Empty: no sign-in, API tokens only.
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecretEnv names the environment variable holding the client secret (secrets stay
	// out of files); empty for a public client.
	ClientSecretEnv string `yaml:"client_secret_env"`
	// ClientAuth is client_secret_basic (default) or client_secret_post.
	ClientAuth string `yaml:"client_auth"`
	// CLIClientID names a second, public (native) application at the provider that the CLI's
	// device flow uses, without a secret (Okta, Auth0 and Entra ID need one; docs/identity.md).
	// Empty: the device flow uses client_id and its secret.
	CLIClientID string `yaml:"cli_client_id"`
	// CLIClientSecretEnv names the environment variable holding a secret to send with
	// cli_client_id, only for a provider that demands one from clients that cannot keep it
	// (Google's "TVs and Limited Input devices" clients).
	CLIClientSecretEnv string   `yaml:"cli_client_secret_env"`
	Scopes             []string `yaml:"scopes"`
	// UsernameClaim becomes the Rampart subject (default preferred_username); GroupsClaim
	// lists the person's groups (default groups).
	UsernameClaim string `yaml:"username_claim"`
	GroupsClaim   string `yaml:"groups_claim"`
	// ExternalURL is Rampart's URL as browsers reach it; register ExternalURL/callback at the
	// provider.
	ExternalURL string `yaml:"external_url"`
	// MFAAMR and MFAACR are the amr and acr values that mean multi-factor.
	MFAAMR []string `yaml:"mfa_amr"`
	MFAACR []string `yaml:"mfa_acr"`
	// StepUp is idp, totp or auto (default).
	StepUp      string          `yaml:"step_up"`
	StepUpFresh policy.Duration `yaml:"step_up_fresh"`
	// TrustedProxies are reverse proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
	// DevProvider serves the built-in development provider at /dev-idp with the demo users and
	// signs in against it. Development only: refused unless the server listens on loopback.
	DevProvider bool `yaml:"dev_provider"`
}

// RiskConfig configures the sign-in risk engine.
type RiskConfig struct {
	// Outcomes maps levels to allow, step_up or block, e.g. "medium=step_up,high=block"
	// (unnamed levels keep the defaults: none and low allow, medium step_up, high block).
	Outcomes        string          `yaml:"outcomes"`
	LearningSignIns int             `yaml:"learning_sign_ins"`
	FailureWindow   policy.Duration `yaml:"failure_window"`
	// GeoIP databases in MaxMind format (any may be empty).
	GeoIP struct {
		City      string `yaml:"city"`
		ASN       string `yaml:"asn"`
		Anonymous string `yaml:"anonymous"`
	} `yaml:"geoip"`
	// Locations are networks Rampart knows better than any database (offices, VPN egress);
	// they win over the databases.
	Locations []LocationConfig `yaml:"locations"`
	// AnonymousIPsFile and BadIPsFile are lists of networks, one per line.
	AnonymousIPsFile string `yaml:"anonymous_ips_file"`
	BadIPsFile       string `yaml:"bad_ips_file"`
	// KeepHistory is how long sign-in history is kept (default 90 days).
	KeepHistory policy.Duration `yaml:"keep_history"`
}

// LocationConfig is one network of the location table.
type LocationConfig struct {
	Prefix     netip.Prefix `yaml:"prefix"`
	Country    string       `yaml:"country"`
	City       string       `yaml:"city"`
	ASN        uint         `yaml:"asn"`
	Org        string       `yaml:"org"`
	Lat        *float64     `yaml:"lat"`
	Lon        *float64     `yaml:"lon"`
	AccuracyKm uint         `yaml:"accuracy_km"`
	Anonymous  bool         `yaml:"anonymous"`
}

// SessionsConfig bounds sessions.
type SessionsConfig struct {
	// AccessTTL is an access token's life (default 10m, at most 15m); SessionTTL a session's
	// (default 12h).
	AccessTTL  policy.Duration `yaml:"access_ttl"`
	SessionTTL policy.Duration `yaml:"session_ttl"`
	// GroupsMaxAge is how long the groups a sign-in brought from the identity provider carry
	// rights (approver, admin, auditor, standing bindings) without another sign-in; default:
	// the session lifetime. Groups provisioned over SCIM do not age: the directory pushes their
	// changes.
	GroupsMaxAge policy.Duration `yaml:"groups_max_age"`
}

// SCIMConfig enables SCIM 2.0 provisioning at /scim/v2 (identity/scim).
type SCIMConfig struct {
	// TokenFile holds the bearer secret the directory authenticates with (mode 600, at least
	// 32 bytes); or TokenEnv names the environment variable that holds it. Never in the policy.
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	// BaseURL is Rampart's URL as the directory reaches it, for meta.location (default:
	// oidc.external_url; without either, locations are relative).
	BaseURL string `yaml:"base_url"`
}

// WorkloadsConfig lists the Kubernetes clusters whose service-account tokens are accepted.
type WorkloadsConfig struct {
	Clusters []workload.Cluster `yaml:"clusters"`
}

// MFAConfig locates the key that seals TOTP secrets.
type MFAConfig struct {
	// KeyFile holds 32 random bytes; default <data_dir>/mfa.key, created on first start.
	KeyFile string `yaml:"key_file"`
}

func (c *Config) validateIdentity(doc *strictyaml.Document) {
	o := &c.OIDC
	if o.Issuer != "" || o.DevProvider {
		if o.DevProvider && o.Issuer != "" {
			doc.Errorf("oidc.issuer", "leave issuer empty with dev_provider: the development provider is the issuer")
		}
		if !o.DevProvider && o.ClientID == "" {
			doc.Errorf("oidc.client_id", "required with oidc.issuer: the application registered for Rampart at the provider")
		}
		if !o.DevProvider && o.ExternalURL == "" {
			doc.Errorf("oidc.external_url", "required with oidc.issuer: Rampart's URL as browsers reach it (the redirect URI is external_url/callback)")
		}
		if o.ClientSecretEnv != "" && os.Getenv(o.ClientSecretEnv) == "" {
			doc.Errorf("oidc.client_secret_env", "$%s is empty or unset", o.ClientSecretEnv)
		}
		if o.CLIClientSecretEnv != "" && o.CLIClientID == "" {
			doc.Errorf("oidc.cli_client_secret_env", "set only with oidc.cli_client_id (the CLI's own application at the provider)")
		} else if o.CLIClientSecretEnv != "" && os.Getenv(o.CLIClientSecretEnv) == "" {
			doc.Errorf("oidc.cli_client_secret_env", "$%s is empty or unset", o.CLIClientSecretEnv)
		}
		if o.DevProvider && o.CLIClientID != "" {
			doc.Errorf("oidc.cli_client_id", "leave it empty with dev_provider: the development provider registers its own public CLI client")
		}
	}
	if c.Risk.Outcomes != "" {
		if _, err := risk.ParseOutcomes(c.Risk.Outcomes); err != nil {
			doc.Errorf("risk.outcomes", "%v", err)
		}
	}
	if d := c.Sessions.AccessTTL.Std(); d != 0 && (d < time.Minute || d > identity.MaxAccessTTL) {
		doc.Errorf("sessions.access_ttl", "must be between 1m and %s", identity.MaxAccessTTL)
	}
	if d := c.Sessions.SessionTTL.Std(); d != 0 && (d < c.Sessions.AccessTTL.Std() || d > 7*24*time.Hour) {
		doc.Errorf("sessions.session_ttl", "must be at least access_ttl and at most 168h")
	}
	if d := c.Sessions.GroupsMaxAge.Std(); d != 0 && (d < time.Minute || d > 30*24*time.Hour) {
		doc.Errorf("sessions.groups_max_age", "must be between 1m and 720h")
	}
	if s := c.SCIM; s.TokenFile != "" && s.TokenEnv != "" {
		doc.Errorf("scim", "set token_file or token_env, not both")
	} else if s.TokenEnv != "" && len(os.Getenv(s.TokenEnv)) < scim.MinTokenLen {
		doc.Errorf("scim.token_env", "$%s must hold the SCIM bearer secret, at least %d bytes", s.TokenEnv, scim.MinTokenLen)
	}
}

// DevCLIClientID is the public client the development provider registers for the CLI's device
// flow (oidc.cli_client_id of a real provider).
const DevCLIClientID = "rampart-cli"

// devProviderUsers are the demo users at the development provider: password = name, and a
// shared, published TOTP secret so that step-up can be tried.
const DevTOTPSecret = "JBSWY3DPEHPK3PXPJBSWY3DP"

func devUsers() []devop.User {
	var out []devop.User
	for _, u := range demo.Users {
		out = append(out, devop.User{Name: u.Name, Password: u.Name, Email: u.Name + "@example.com", Groups: u.IdPGroups, TOTPSecret: DevTOTPSecret})
	}
	return out
}

// startIdentity builds sessions, sign-in, the risk engine and workload identities.
func (in *Instance) startIdentity(ctx context.Context, o Options) error {
	cfg := in.cfg
	in.Sessions = &identity.Sessions{Store: in.Store, Now: o.Now, AccessTTL: cfg.Sessions.AccessTTL.Std(), SessionTTL: cfg.Sessions.SessionTTL.Std(), Tokens: in.Tokens}
	in.Auth = &identity.Chain{Tokens: in.Tokens, Sessions: in.Sessions}
	if len(cfg.Workloads.Clusters) > 0 {
		v, err := workload.New(cfg.Workloads.Clusters, o.Now)
		if err != nil {
			return fmt.Errorf("workloads: %w", err)
		}
		in.Auth.Workloads = v
	}
	oc := cfg.OIDC
	if oc.Issuer == "" && !oc.DevProvider {
		return nil
	}
	sc := signin.Config{Issuer: oc.Issuer, ClientID: oc.ClientID, ClientAuth: oc.ClientAuth, CLIClientID: oc.CLIClientID, Scopes: oc.Scopes, UsernameClaim: oc.UsernameClaim,
		GroupsClaim: oc.GroupsClaim, ExternalURL: oc.ExternalURL, MFAAMR: oc.MFAAMR, MFAACR: oc.MFAACR, StepUp: oc.StepUp,
		StepUpFresh: oc.StepUpFresh.Std(), TrustedProxies: oc.TrustedProxies}
	if oc.ClientSecretEnv != "" {
		sc.ClientSecret = os.Getenv(oc.ClientSecretEnv)
	}
	if oc.CLIClientSecretEnv != "" {
		sc.CLIClientSecret = os.Getenv(oc.CLIClientSecretEnv)
	}
	if oc.DevProvider {
		if err := loopbackOnly(cfg.Listen); err != nil {
			return fmt.Errorf("oidc.dev_provider: %w", err)
		}
		base := "http://" + cfg.Listen
		secret := rand.Text()
		// Registered as at Okta, Auth0 or Entra ID: a confidential web application for the browser
		// flow, which may not use the device flow, and a public one for the CLI's device flow,
		// which sends no secret (the provider refuses one from it).
		p, err := devop.New(devop.Config{Issuer: base + "/dev-idp", Users: devUsers(), Logger: in.log,
			Clients: []devop.Client{
				{ID: "rampart-dev", Secret: secret, RedirectURIs: []string{base + "/callback"}, GrantTypes: []oidc.GrantType{oidc.GrantTypeCode}},
				{ID: DevCLIClientID, GrantTypes: []oidc.GrantType{oidc.GrantTypeDeviceCode}},
			}})
		if err != nil {
			return err
		}
		in.devIdP = p
		sc.Issuer, sc.ClientID, sc.ClientSecret, sc.CLIClientID, sc.ExternalURL = base+"/dev-idp", "rampart-dev", secret, DevCLIClientID, base
	}
	if cfg.Risk.Outcomes != "" {
		sc.Outcomes, _ = risk.ParseOutcomes(cfg.Risk.Outcomes)
	}
	engine, err := in.riskEngine()
	if err != nil {
		return err
	}
	sealer, err := in.mfaSealer()
	if err != nil {
		return err
	}
	in.SignIn, err = signin.New(sc, signin.Deps{Sessions: in.Sessions, Store: in.Store, Auth: in.Auth, Risk: engine,
		Policy: in.Access.Policy, Record: recorder(in.Store), Refused: in.Refusals.Record, Sealer: sealer, Now: o.Now, Logger: in.log,
		OnSignIn: func(ctx context.Context) {
			if err := in.applyDirectory(ctx); err != nil {
				in.log.Error("apply the directory after a sign-in", "err", err)
			}
		}})
	return err
}

func loopbackOnly(addr string) error {
	host := addr
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		host = strings.Trim(addr[:i], "[]")
	}
	if host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return fmt.Errorf("the development provider signs in anyone who knows a demo password, so the server must listen on loopback, not %s", addr)
	}
	return nil
}

// riskEngine builds the risk engine from the configuration.
func (in *Instance) riskEngine() (*risk.Engine, error) {
	rc := in.cfg.Risk
	var geos risk.Chain
	if len(rc.Locations) > 0 {
		var entries []risk.TableEntry
		for i, l := range rc.Locations {
			loc := risk.Location{Country: l.Country, City: l.City, ASN: l.ASN, Org: l.Org, AccuracyKm: l.AccuracyKm, Anonymous: l.Anonymous}
			if (l.Lat == nil) != (l.Lon == nil) {
				return nil, fmt.Errorf("risk.locations[%d] (%s): give both lat and lon, or neither", i, l.Prefix)
			}
			if l.Lat != nil {
				loc.Lat, loc.Lon, loc.HasGeo = *l.Lat, *l.Lon, true
			}
			entries = append(entries, risk.TableEntry{Prefix: l.Prefix, Location: loc})
		}
		t, err := risk.NewTable(entries)
		if err != nil {
			return nil, fmt.Errorf("risk.locations: %w", err)
		}
		geos = append(geos, t)
	}
	if rc.GeoIP.City != "" || rc.GeoIP.ASN != "" || rc.GeoIP.Anonymous != "" {
		m, err := risk.OpenMMDB(risk.MMDBFiles{City: rc.GeoIP.City, ASN: rc.GeoIP.ASN, Anonymous: rc.GeoIP.Anonymous})
		if err != nil {
			return nil, fmt.Errorf("risk.geoip: %w", err)
		}
		in.closers = append(in.closers, m.Close)
		geos = append(geos, m)
	}
	rcfg := risk.Config{LearningSignIns: rc.LearningSignIns, FailureWindow: rc.FailureWindow.Std()}
	var err error
	if rc.AnonymousIPsFile != "" {
		if rcfg.AnonymousIPs, err = risk.LoadPrefixList(rc.AnonymousIPsFile); err != nil {
			return nil, fmt.Errorf("risk.anonymous_ips_file: %w", err)
		}
	}
	if rc.BadIPsFile != "" {
		if rcfg.BadIPs, err = risk.LoadPrefixList(rc.BadIPsFile); err != nil {
			return nil, fmt.Errorf("risk.bad_ips_file: %w", err)
		}
	}
	var geo risk.Geo
	if len(geos) > 0 {
		geo = geos
	}
	e, err := risk.NewEngine(rcfg, geo, in.Store)
	if err != nil {
		return nil, fmt.Errorf("risk: %w", err)
	}
	return e, nil
}

// mfaSealer reads (or creates) the key that seals TOTP secrets.
func (in *Instance) mfaSealer() (*identity.Sealer, error) {
	path := in.cfg.MFA.KeyFile
	if path == "" {
		path = filepath.Join(in.cfg.DataDir, "mfa.key")
	}
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		if err := os.WriteFile(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("create the MFA key %s: %w", path, err)
		}
		in.log.Info("created the key that seals TOTP secrets; back it up with the data directory", "path", path)
	} else if err != nil {
		return nil, fmt.Errorf("read the MFA key: %w", err)
	}
	s, err := identity.NewSealer(key)
	if err != nil {
		return nil, fmt.Errorf("MFA key %s: %w", path, err)
	}
	return s, nil
}

// groupsMaxAge is how long sign-in groups carry rights.
func (in *Instance) groupsMaxAge() time.Duration {
	if d := in.cfg.Sessions.GroupsMaxAge.Std(); d > 0 {
		return d
	}
	if d := in.cfg.Sessions.SessionTTL.Std(); d > 0 {
		return d
	}
	return identity.DefaultSessionTTL
}

// startSCIM serves SCIM provisioning when the configuration has a secret for it.
func (in *Instance) startSCIM(o Options) error {
	c := in.cfg.SCIM
	var token string
	switch {
	case c.TokenFile != "":
		if err := secretfile.Check(c.TokenFile, "SCIM bearer secret"); err != nil {
			return fmt.Errorf("scim.token_file: %w", err)
		}
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return fmt.Errorf("scim.token_file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	case c.TokenEnv != "":
		token = os.Getenv(c.TokenEnv)
	default:
		return nil
	}
	base := c.BaseURL
	if base == "" {
		base = in.cfg.OIDC.ExternalURL
	}
	svc, err := scim.New(scim.Config{Token: token, BaseURL: strings.TrimRight(base, "/")}, scim.Deps{Store: in.Store, Now: o.Now, Logger: in.log,
		Disable: func(ctx context.Context, subject, reason string) error {
			_, _, err := in.DisableUser(ctx, subject, scim.Actor, reason)
			return err
		},
		Enable: func(ctx context.Context, subject string) error {
			if err := in.EnableUser(ctx, subject, scim.Actor); err != nil && !errors.Is(err, identity.ErrSessionNotFound) {
				return err
			}
			return nil
		},
		Changed: func(ctx context.Context) {
			if err := in.applyDirectory(ctx); err != nil {
				in.log.Error("apply the directory after a SCIM change", "err", err)
			}
		}})
	if err != nil {
		return fmt.Errorf("scim: %w", err)
	}
	in.SCIM = svc
	in.log.Info("SCIM provisioning at /scim/v2", "base_url", base)
	return nil
}

// applyDirectory puts the groups people brought from the identity provider into the policy in
// force: for a person the directory provisions over SCIM, the groups it pushed (authoritative:
// a removal there takes effect here at once, whatever their last sign-in said); for anyone else,
// the groups of their last sign-in, until they are older than groups_max_age (invariant 8: a
// person removed from a group at the provider does not keep its approver, admin or auditor
// rights in a long-lived credential). Disabled people bring none.
func (in *Instance) applyDirectory(ctx context.Context) error {
	in.polMu.Lock()
	defer in.polMu.Unlock()
	return in.applyDirectoryLocked(ctx)
}

func (in *Instance) applyDirectoryLocked(ctx context.Context) error {
	users, err := in.Store.ListUsers(ctx)
	if err != nil {
		return err
	}
	provisioned, err := in.Store.SCIMDirectory(ctx)
	if err != nil {
		return err
	}
	now, maxAge := in.now(), in.groupsMaxAge()
	dir := map[string][]string{}
	disabled := map[string]bool{}
	for _, u := range users {
		if !u.DisabledAt.IsZero() {
			disabled[u.Subject] = true
			continue
		}
		if _, ok := provisioned[u.Subject]; ok || len(u.Groups) == 0 {
			continue
		}
		if age := now.Sub(u.GroupsAt); age > maxAge {
			if in.dir[u.Subject] != nil {
				in.log.Info("the groups a sign-in brought expired; they count again after the next sign-in", "subject", u.Subject,
					"confirmed_at", u.GroupsAt, "groups_max_age", maxAge)
			}
			continue
		}
		dir[u.Subject] = u.Groups
	}
	for subject, names := range provisioned {
		if gs := in.base.MapIdPGroups(names); len(gs) > 0 && !disabled[subject] {
			dir[subject] = gs
		}
	}
	if maps.EqualFunc(dir, in.dir, slices.Equal) && in.dir != nil {
		return nil
	}
	pol := in.base.WithDirectory(dir)
	if err := in.Access.UsePolicy(pol); err != nil {
		return err
	}
	in.Index.SetPolicy(pol)
	in.dir = dir
	return nil
}
