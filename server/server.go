// Package server assembles a running control plane from its parts: store, ledger, policy,
// workflow, decision index, token authentication and the HTTP API, plus the background jobs
// (index sync, reading the ledger back, the Kubernetes reconcilers and the summaries of
// aggregated refusals on every replica; the expiry sweep, identity sweep, checkpoints and their
// witnessing on the replica that holds the jobs lease). `rampart server` and `rampart dev` both
// run it.
//
// Start refuses to serve when the ledger does not verify against its signed checkpoints
// (invariant 5), when an earlier run raised a ledger tamper alarm (<data_dir>/ledger.alarm),
// when the policy does not validate, or when the store cannot be opened. A tamper alarm raised
// while running fails closed (invariant 6): decisions deny, changes are refused, /readyz fails.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/ci"
	"rampart.dev/rampart/console"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/devop"
	"rampart.dev/rampart/identity/scim"
	"rampart.dev/rampart/identity/signin"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/rbac"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/secrets"
	"rampart.dev/rampart/store/postgres"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
	"rampart.dev/rampart/suggest/llm"
	"rampart.dev/rampart/weights"
)

// Instance is a started control plane.
type Instance struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	Store  *sqlstore.DB
	Ledger *audit.Ledger
	Access *access.Service
	Index  *authz.Index
	Tokens *identity.Tokens
	// Sessions are interactive sign-ins; Auth accepts every credential form (API tokens,
	// session tokens, workload tokens).
	Sessions *identity.Sessions
	Auth     *identity.Chain
	// SignIn is the OIDC sign-in service (nil without oidc configuration); SCIM the SCIM
	// provisioning service (nil without scim configuration).
	SignIn *signin.Service
	SCIM   *scim.Service
	// Refusals records the refusals callers can provoke at will (failed sign-ins, denied
	// weights, refused pods), aggregated per source and window (invariant 11).
	Refusals *refusals.Recorder
	// Weights is the weights vault (nil when disabled).
	Weights *weights.Service
	// Secrets is the secrets store, on the vault's keyring (nil when the vault is off).
	Secrets *secrets.Service
	// Changes is guarded change: change requests to protected Git refs and the Git server
	// hook's verdicts (package change).
	Changes *change.Service
	// KubeRBAC keeps Kubernetes RBAC equal to the grants (nil without a cluster).
	KubeRBAC *rbac.Reconciler
	// Kube is the cluster client (nil without a cluster); Webhook the admission webhook (nil
	// unless kubernetes.admission.listen is set).
	Kube    kubernetes.Interface
	Webhook *admission.Webhook
	API     *api.Server
	// Console is the web console, served beside the API.
	Console *console.Console
	// consoleKey binds the console's CSRF tokens to sessions; derived from the ledger signing
	// key, which every replica shares.
	consoleKey []byte

	jobs    *jobLease           // which replica runs the jobs one replica is enough for
	witness *witnessing         // sends checkpoints to the configured witnesses
	drift   *driftWatch         // runs iac drift on an interval (iac_drift), or nil
	detect  *detection          // evaluates detection rules over the ledger, or nil
	hooks   identityHooks       // told when someone's identity changed (lifecycle.go)
	base    *policy.Policy      // the policy as read, before the directory's groups
	dir     map[string][]string // the groups overlaid on it
	devIdP  *devop.Provider
	closers []func() error

	cancel context.CancelFunc
	wg     sync.WaitGroup
	polMu  sync.Mutex
	// pgit is the policy repository when the policy comes from Git (policy_git).
	pgit *policyGit
}

// Options are for tests: an injected clock and faster job intervals.
type Options struct {
	Now           func() time.Time
	Logger        *slog.Logger
	SyncInterval  time.Duration
	SweepInterval time.Duration
	// CheckpointInterval overrides how often the lease holder signs a checkpoint (default:
	// the policy's checkpoint_interval, at most CheckpointEvery).
	CheckpointInterval time.Duration
	// RefusalFlushInterval is how often ended windows of refusals are summarised (default 1s).
	RefusalFlushInterval time.Duration
	// CIClient fetches CI issuers' keys and calls dispatch APIs (default: a client with a
	// timeout and the system's roots).
	CIClient *http.Client
	// PolicyGate replaces the verifier of approved changes for a policy loaded from Git
	// (default: change.VerifyHistory with the server's ledger key).
	PolicyGate PolicyGate
	// DetectSink hears of detection alerts once committed (delivery, automatic response).
	DetectSink detect.Sink
}

// Start opens everything, verifies the ledger, loads the policy and starts the background jobs.
func Start(ctx context.Context, cfg Config, o Options) (*Instance, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 500 * time.Millisecond
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = time.Second
	}
	if o.RefusalFlushInterval == 0 {
		o.RefusalFlushInterval = time.Second
	}
	in := &Instance{cfg: cfg, log: o.Logger, now: o.Now}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	pol, origin, err := in.readPolicy(ctx, o.PolicyGate)
	if err != nil {
		return nil, err
	}
	if in.Store, err = OpenStore(ctx, cfg); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			in.Store.Close()
		}
	}()
	if err := in.checkAlarm(); err != nil {
		return nil, in.noteRefusedStart(err)
	}
	if err := in.openLedger(ctx, pol); err != nil {
		return nil, in.noteRefusedStart(err)
	}
	// A policy from Git starts at the pinned commit (whose settings name the ledger key) and
	// moves to the newest approved commit before anything is decided.
	var refusal *PolicyRefusal
	if in.pgit != nil {
		next, commit, r, err := in.pgit.advance(ctx)
		if err != nil {
			return nil, fmt.Errorf("policy repository %s: %w", cfg.PolicyGit.Repo, err)
		}
		if next != nil {
			pol, origin = next, in.pgit.origin(commit)
			if err := in.pgit.setVerified(commit); err != nil {
				return nil, err
			}
		}
		refusal = r
	}
	in.Access = access.New(in.Store, pol, access.Options{Now: o.Now, Logger: o.Logger})
	if err := in.Access.LoadPolicy(ctx, pol, audit.SystemActor, origin); err != nil {
		return nil, fmt.Errorf("record policy load: %w", err)
	}
	if err := in.recordRefusedStarts(ctx); err != nil {
		return nil, err
	}
	if refusal != nil {
		refusal.Since = o.Now()
		if err := in.recordPolicyRefusal(ctx, refusal); err != nil {
			return nil, err
		}
	}
	in.Refusals = refusals.New(refusals.Options{Record: recorder(in.Store), Now: o.Now, Logger: o.Logger, Limits: func() refusals.Limits {
		r := in.Access.Policy().Settings().Refusals
		return refusals.Limits{Window: r.Window.Std(), MaxSources: r.MaxSources, RiskHistory: r.RiskHistory}
	}})
	in.Index = authz.New(in.Store, pol, authz.Options{Now: o.Now, MaxStaleness: cfg.IndexMaxStaleness.Std(), Logger: o.Logger})
	in.Access.OnGrantChange(in.Index.Apply)
	if err := in.Index.Load(ctx); err != nil {
		return nil, fmt.Errorf("load decision index: %w", err)
	}
	in.base = pol
	if err := in.applyDirectory(ctx); err != nil {
		return nil, fmt.Errorf("apply the groups people brought from the identity provider: %w", err)
	}
	in.Tokens = &identity.Tokens{Store: in.Store, Now: o.Now, Users: in.Store}
	if err := in.startIdentity(ctx, o); err != nil {
		return nil, err
	}
	if err := in.startSCIM(o); err != nil {
		return nil, err
	}
	ttl := cfg.JobsLeaseTTL.Std()
	if ttl == 0 {
		ttl = DefaultJobsLeaseTTL
	}
	in.jobs = newJobLease(in.Store, ttl, in.log)
	metrics := api.NewMetrics(in.Index, in.Ledger)
	in.ledgerMetrics(metrics.Registry())
	in.policyGitMetrics(metrics.Registry())
	in.witness = newWitnessing(in, cfg.Ledger, in.Ledger.Witnesses(), metrics.Registry())
	metrics.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rampart_background_jobs_lease_held", Help: "1 when this replica holds the lease on the background jobs one replica is enough for (expiry sweep, identity sweep, checkpoints).",
	}, func() float64 {
		if in.jobs.Held() {
			return 1
		}
		return 0
	}))
	metrics.Registry().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "rampart_refusals_aggregated_total", Help: "Refusals (failed sign-ins, denied weights, refused pods) counted into a summary entry instead of recorded one by one.",
	}, func() float64 { return float64(in.Refusals.Stats().Suppressed) }))
	metrics.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rampart_refusals_open_windows", Help: "Sources whose refusals are being counted into a summary now (at most refusals.max_sources, plus one per kind for the rest).",
	}, func() float64 { return float64(in.Refusals.Stats().Sources) }))
	apiCfg := api.Config{Access: in.Access, Index: in.Index, Ledger: in.Ledger, LedgerStore: in.Store, Alerts: in.Store, Tokens: in.Tokens, Auth: in.Auth,
		Sessions: in.Sessions, Users: in.Store, Lifecycle: in, Ready: in.Ready, PolicyStatus: in.PolicyStatus, Dev: cfg.Dev, Logger: o.Logger, Metrics: metrics}
	if in.SignIn != nil {
		apiCfg.SignIn = in.SignIn
	}
	if in.SCIM != nil {
		apiCfg.SCIM = in.SCIM
	}
	if err := in.startVault(); err != nil {
		return nil, err
	}
	if in.Weights != nil {
		apiCfg.Weights = in.Weights
		apiCfg.Secrets = in.Secrets
	}
	in.Changes = change.NewService(change.Options{Store: in.Store, Policy: in.Access.Policy, Ledger: in.Ledger, Now: o.Now, Logger: o.Logger,
		Refused: func(ctx context.Context, source string, e audit.Event) error {
			_, err := in.Refusals.Record(ctx, source, e)
			return err
		}})
	apiCfg.Changes = in.Changes
	apiCfg.CI, apiCfg.Pipelines = in.startCI(o)
	if m := cfg.Suggest.Model; m.URL != "" {
		apiCfg.Model = &llm.Client{URL: m.URL, Model: m.Model, APIKey: os.Getenv(m.APIKeyEnv), APIKeyHeader: m.APIKeyHeader}
		apiCfg.ModelTimeout = m.Timeout.Std()
		in.log.Info("role suggestions may use a language model; its answers are verified", "url", m.URL, "model", m.Model)
	}
	in.API = api.New(apiCfg)
	ccfg := console.Config{API: in.API.Handler(), CSRFKey: in.consoleKey, SignIn: in.SignIn != nil, Logger: in.log, Now: o.Now}
	if in.SignIn != nil {
		ccfg.ExternalURL = strings.TrimSuffix(in.SignIn.RedirectURI(), "/callback")
	}
	con, err := console.New(ccfg)
	if err != nil {
		return nil, err
	}
	in.Console = con

	jobCtx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	in.every(jobCtx, "index sync", 0, func(ctx context.Context) error { in.Index.Run(ctx, o.SyncInterval); return nil })
	if err := in.startKube(jobCtx); err != nil {
		cancel()
		in.wg.Wait()
		return nil, err
	}
	in.wg.Add(1)
	go func() { defer in.wg.Done(); in.jobs.run(jobCtx) }()
	in.every(jobCtx, "expiry sweep", o.SweepInterval, in.jobs.guard(func(ctx context.Context) error {
		n, err := in.Access.Sweep(ctx)
		if n > 0 {
			in.log.Info("expired", "count", n)
		}
		return err
	}))
	in.every(jobCtx, "identity sweep", time.Minute, in.jobs.guard(func(ctx context.Context) error {
		if in.SignIn != nil {
			if _, err := in.SignIn.SweepFlows(ctx); err != nil {
				return err
			}
		}
		keep := cfg.Risk.KeepHistory.Std()
		if keep == 0 {
			keep = 90 * 24 * time.Hour
		}
		if _, err := in.Store.PruneSignIns(ctx, o.Now().Add(-keep)); err != nil {
			return err
		}
		// Ended sessions stay listable for 30 days.
		if _, err := in.Store.PruneSessions(ctx, o.Now().Add(-30*24*time.Hour)); err != nil {
			return err
		}
		return in.finishDisables(ctx)
	}))
	// Other replicas' SCIM changes, and sign-in groups reaching groups_max_age, take effect
	// within a second.
	in.every(jobCtx, "directory sync", time.Second, in.applyDirectory)
	// Every replica writes the summaries of its own refusals, when their window ends, even if
	// no refusal comes after (invariant 11).
	in.every(jobCtx, "refusal summaries", o.RefusalFlushInterval, in.Refusals.Flush)
	if err := in.startIACDrift(jobCtx, metrics.Registry()); err != nil {
		cancel()
		in.wg.Wait()
		return nil, err
	}
	in.startLedgerJobs(jobCtx, pol, o)
	in.startNotifications(jobCtx, cfg, o)
	if err := in.startDetection(jobCtx, cfg, o, metrics.Registry()); err != nil {
		cancel()
		in.wg.Wait()
		return nil, err
	}
	if in.pgit != nil {
		// Every replica reads the policy repository itself: each serves only what it verified.
		poll := cfg.PolicyGit.PollInterval.Std()
		if poll == 0 {
			poll = DefaultPolicyPoll
		}
		in.every(jobCtx, "policy repository", poll, in.syncPolicyGit)
	}
	ok = true
	return in, nil
}

// startCI builds CI job identity (package ci): the exchange of CI ID tokens for pipeline tokens,
// which asks the change gate whether a commit was approved, and pipeline triggers.
func (in *Instance) startCI(o Options) (*ci.Exchanger, *ci.Triggerer) {
	refused := func(ctx context.Context, source string, e audit.Event) error {
		_, err := in.Refusals.Record(ctx, source, e)
		return err
	}
	x := ci.NewExchanger(ci.Options{Policy: in.Access.Policy, Verifier: &ci.Verifier{Now: o.Now, Client: o.CIClient}, Decider: in.Index, Approved: in.Changes,
		Mint: func(ctx context.Context, subject string, ttl time.Duration, e audit.Event) (ci.Issued, error) {
			secret, t, err := in.Tokens.IssuePipeline(ctx, subject, ttl, e)
			return ci.Issued{Token: secret, ID: t.ID, ExpiresAt: t.ExpiresAt}, err
		},
		Refused: refused, Now: o.Now, Logger: in.log})
	t := &ci.Triggerer{Policy: in.Access.Policy, Decider: in.Index, Record: recorder(in.Store), Refused: refused, Getenv: os.Getenv, Client: o.CIClient, Now: o.Now}
	return x, t
}

// every runs fn every interval until the instance closes (interval 0: run fn once, it loops).
func (in *Instance) every(ctx context.Context, name string, interval time.Duration, fn func(context.Context) error) {
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		if interval == 0 {
			_ = fn(ctx)
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := fn(ctx); err != nil && ctx.Err() == nil {
					in.log.Error("background job failed", "job", name, "err", err)
				}
			}
		}
	}()
}

func (in *Instance) readPolicy(ctx context.Context, gate PolicyGate) (*policy.Policy, string, error) {
	if c := in.cfg.PolicyGit; c != nil {
		var err error
		if in.pgit, err = in.newPolicyGit(*c, gate); err != nil {
			return nil, "", err
		}
		return in.pgit.pinned(ctx)
	}
	fsys, origin := in.cfg.PolicyFS, "embedded demo policy"
	if fsys == nil {
		abs, err := filepath.Abs(in.cfg.PolicyDir)
		if err != nil {
			return nil, "", err
		}
		fsys, origin = os.DirFS(abs), abs
	}
	pol, err := policy.Load(fsys)
	if err != nil {
		return nil, "", fmt.Errorf("policy %s does not validate:\n%w", origin, err)
	}
	return pol, origin, nil
}

// ReloadPolicy re-reads the policy; an invalid policy is refused and the old one stays. A
// policy from Git moves to the newest approved commit of its ref (syncPolicyGit).
func (in *Instance) ReloadPolicy(ctx context.Context) error {
	if in.pgit != nil {
		return in.syncPolicyGit(ctx)
	}
	in.polMu.Lock()
	defer in.polMu.Unlock()
	pol, origin, err := in.readPolicy(ctx, nil)
	if err != nil {
		return err
	}
	return in.loadPolicyLocked(ctx, pol, origin)
}

// loadPolicyLocked puts pol in force (polMu held).
func (in *Instance) loadPolicyLocked(ctx context.Context, pol *policy.Policy, origin string) error {
	if err := in.Access.LoadPolicy(ctx, pol, audit.SystemActor, origin); err != nil {
		return err
	}
	in.base, in.dir = pol, nil
	if err := in.applyDirectoryLocked(ctx); err != nil {
		return err
	}
	in.log.Info("policy reloaded", "digest", pol.Digest, "origin", origin)
	return nil
}

// OpenStore opens the configured store.
func OpenStore(ctx context.Context, cfg Config) (*sqlstore.DB, error) {
	switch cfg.Store.Driver {
	case "postgres":
		dsn := cfg.Store.DSN
		if dsn == "" {
			dsn = os.Getenv("RAMPART_POSTGRES_DSN")
		}
		return postgres.Open(ctx, dsn)
	default:
		path := cfg.Store.Path
		if path == "" {
			path = filepath.Join(cfg.DataDir, "rampart.db")
		}
		return sqlite.Open(ctx, path)
	}
}

// Ready reports whether decisions and changes can be served.
func (in *Instance) Ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if a := in.Ledger.Alarm(); a != nil {
		return fmt.Errorf("ledger tamper alarm: %w", a)
	}
	if err := in.Store.Ping(ctx); err != nil {
		return fmt.Errorf("store unreachable: %w", err)
	}
	return in.Index.Health()
}

// Handler is the HTTP handler: the web console's pages at /, /request, /requests/…, the API
// (everything else), and the development provider at /dev-idp in dev mode.
func (in *Instance) Handler() http.Handler {
	api, idp := in.API.Handler(), http.Handler(nil)
	if in.devIdP != nil {
		// The development provider lives beside the API, at /dev-idp (its own protocol
		// endpoints, not part of Rampart's API).
		idp = in.devIdP.Handler()
	}
	con := http.NewServeMux()
	in.Console.Register(con)
	// Not one ServeMux over all three: it would answer every path with a '..' segment with a
	// redirect to the cleaned path before the API sees it (for a secret, a redirect to another
	// secret's name); the API's own handler refuses those.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case idp != nil && strings.HasPrefix(p, "/dev-idp/"):
			idp.ServeHTTP(w, r)
		case console.Owns(p):
			con.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// Serve serves HTTP (or HTTPS when configured) on ln until ctx ends, then shuts down gracefully.
func (in *Instance) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           in.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(in.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		if in.cfg.TLS.CertFile != "" {
			errc <- srv.ServeTLS(ln, in.cfg.TLS.CertFile, in.cfg.TLS.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// Close stops the background jobs, writes the summaries of counted refusals, issues a final
// checkpoint and closes the store.
func (in *Instance) Close() error {
	in.cancel()
	in.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Counted refusals are written before the last checkpoint covers the ledger.
	if err := in.Refusals.FlushAll(ctx); err != nil {
		in.log.Warn("final summaries of refusals failed", "err", err)
	}
	if in.Ledger.Alarm() != nil {
		in.log.Error("no final checkpoint: the ledger raised a tamper alarm")
	} else if _, _, err := in.Ledger.Checkpoint(ctx); err != nil {
		in.log.Warn("final checkpoint failed", "err", err)
	} else if in.witness != nil {
		in.witness.greeted = make([]bool, len(in.witness.greeted)) // every witness hears of the last one
		if err := in.witness.run(ctx); err != nil {
			in.log.Warn("the final checkpoint was not cosigned by every witness", "err", err)
		}
	}
	for _, c := range in.closers {
		_ = c()
	}
	return in.Store.Close()
}
