package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/egress"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/workload"
	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlstore"
)

// EgressConfig is the configuration file of `rampart egress --config FILE`: a gateway process
// beside the control plane, reading the same store and policy.
type EgressConfig struct {
	// Listen is the plain proxy listener (identity by Proxy-Authorization bearer token, or none).
	// Default 127.0.0.1:8471.
	Listen string          `yaml:"listen"`
	TLS    EgressTLSConfig `yaml:"tls"`
	// PolicyDir and Store are the control plane's.
	PolicyDir string      `yaml:"policy_dir"`
	Store     StoreConfig `yaml:"store"`
	// Cluster names the cluster in workload subjects from SPIFFE IDs without a trust domain.
	Cluster string `yaml:"cluster"`
	// AllowRanges opens address ranges the gateway otherwise refuses (private, loopback…).
	AllowRanges []string `yaml:"allow_ranges"`
	// DNSServer, if set (host:port), resolves destinations instead of the system resolver.
	DNSServer string `yaml:"dns_server"`
	// DecisionLog is a file for the OCSF decision lines (default standard error).
	DecisionLog string       `yaml:"decision_log"`
	Limits      EgressLimits `yaml:"limits"`
	// IndexMaxStaleness: decisions on grants fail closed after this long without a store sync.
	IndexMaxStaleness policy.Duration `yaml:"index_max_staleness"`
	// Workloads are the Kubernetes clusters whose service-account tokens identify callers
	// (as in the server configuration).
	Workloads WorkloadsConfig `yaml:"workloads"`
	// MetricsTokenFile, if set, names a file holding the bearer token that GET /metrics requires
	// (Authorization: Bearer <token>); it is read at start and on SIGHUP. Unset, /metrics is
	// open to whoever reaches the listener.
	MetricsTokenFile string `yaml:"metrics_token_file"`
}

// EgressTLSConfig is the mTLS listener.
type EgressTLSConfig struct {
	Listen       string `yaml:"listen"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	CRLFile      string `yaml:"crl_file"`
}

// EgressLimits are the gateway's limits.
type EgressLimits struct {
	MaxTunnelsPerSubject int             `yaml:"max_tunnels_per_subject"`
	ConnectTimeout       policy.Duration `yaml:"connect_timeout"`
	IdleTimeout          policy.Duration `yaml:"idle_timeout"`
}

// LoadEgressConfig reads and validates a gateway configuration file.
func LoadEgressConfig(path string) (EgressConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return EgressConfig{}, fmt.Errorf("read config: %w", err)
	}
	nodes, err := strictyaml.SplitDocuments(path, data)
	if err != nil {
		return EgressConfig{}, err
	}
	if len(nodes) != 1 {
		return EgressConfig{}, fmt.Errorf("%s: want exactly one YAML document, found %d", path, len(nodes))
	}
	var c EgressConfig
	doc := &strictyaml.Document{File: path}
	doc.Decode("", nodes[0], &c)
	if len(doc.Errs) == 0 {
		if c.Listen == "" {
			c.Listen = "127.0.0.1:8471"
		}
		if c.PolicyDir == "" {
			doc.Errorf("policy_dir", "policy_dir is required: the control plane's policy directory")
		}
		switch c.Store.Driver {
		case "", "sqlite":
			c.Store.Driver = "sqlite"
			if c.Store.Path == "" {
				doc.Errorf("store.path", "store.path is required: the control plane's SQLite file")
			}
		case "postgres":
		default:
			doc.Errorf("store.driver", "unknown driver %q; use sqlite or postgres", c.Store.Driver)
		}
		for i, r := range c.AllowRanges {
			if _, err := ParseRange(r); err != nil {
				doc.Errorf(fmt.Sprintf("allow_ranges[%d]", i), "%v", err)
			}
		}
		if c.MetricsTokenFile != "" {
			if _, err := readMetricsToken(c.MetricsTokenFile); err != nil {
				doc.Errorf("metrics_token_file", "%v", err)
			}
		}
		t := c.TLS
		if t.Listen != "" && (t.CertFile == "" || t.KeyFile == "" || t.ClientCAFile == "") {
			doc.Errorf("tls", "the mTLS listener needs cert_file, key_file and client_ca_file")
		}
	}
	if err := doc.Errs.Err(); err != nil {
		return EgressConfig{}, err
	}
	return c, nil
}

// minMetricsToken is the shortest metrics token accepted: it guards a listener that may face a
// whole cluster.
const minMetricsToken = 16

// readMetricsToken reads the token GET /metrics requires.
func readMetricsToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the metrics token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minMetricsToken || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return "", fmt.Errorf("%s must hold one token of at least %d printable ASCII characters and no spaces (e.g. openssl rand -hex 32 > %s)", path, minMetricsToken, path)
	}
	return tok, nil
}

// metricsGuard serves h only to requests that carry the token (when one is set), compared in
// constant time.
func metricsGuard(token *atomic.Pointer[string], h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := token.Load()
		if want != nil {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(*want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="rampart-egress-metrics"`)
				http.Error(w, "rampart egress: /metrics needs Authorization: Bearer <the token in metrics_token_file>", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// ParseRange parses a CIDR ("127.0.0.1/32") or a single address.
func ParseRange(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a CIDR range (127.0.0.1/32, fd00::/8) or an address", s)
}

// GatewayOptions tune a gateway built on an instance.
type GatewayOptions struct {
	AllowRanges []netip.Prefix
	Resolver    *net.Resolver
	DecisionLog io.Writer
	Limits      egress.Limits
	Cluster     string
}

// batchRecorder appends ledger entries in one transaction.
func batchRecorder(st *sqlstore.DB) func(ctx context.Context, es []audit.Event) error {
	return func(ctx context.Context, es []audit.Event) error {
		return st.Update(ctx, func(tx access.Tx) error {
			for _, e := range es {
				if _, err := tx.Append(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

// recorder appends one ledger entry in its own transaction.
func recorder(st *sqlstore.DB) func(ctx context.Context, e audit.Event) error {
	return func(ctx context.Context, e audit.Event) error {
		return st.Update(ctx, func(tx access.Tx) error {
			_, err := tx.Append(ctx, e)
			return err
		})
	}
}

// Gateway builds an egress gateway over the instance's policy, decision index, tokens and
// store. Grant changes committed by this instance revalidate open tunnels at once.
func (in *Instance) Gateway(o GatewayOptions) *egress.Gateway {
	var grants egress.Grants
	if in.Index != nil {
		grants = in.Index
	}
	g := egress.New(egress.Config{
		Policy: in.Access.Policy, Grants: grants, Tokens: in.Auth, Record: recorder(in.Store), RecordAll: batchRecorder(in.Store), Refused: in.Refusals.Record,
		Addr: egress.AddrPolicy{Allow: o.AllowRanges, Own: egress.OwnAddrs()}, Resolver: o.Resolver,
		Now: in.now, Limits: o.Limits, Logger: in.log, DecisionLog: o.DecisionLog, Cluster: o.Cluster,
		Metrics: egress.NewMetrics(in.API.Registry()),
	})
	in.Access.OnGrantChange(func([]access.Grant) { g.Revalidate() })
	in.hooks.add(g.Revalidate)
	return g
}

// ServeGateway serves g on addr until ctx ends, then shuts it down gracefully.
func ServeGateway(ctx context.Context, g *egress.Gateway, addr string, local http.Handler, log *slog.Logger) error {
	ln, err := g.Listen(ctx, addr)
	if err != nil {
		return fmt.Errorf("egress gateway: listen on %s: %w", addr, err)
	}
	return serveGatewayOn(ctx, g, ln, local, log)
}

// ServeGatewayListener serves g on an open listener until ctx ends.
func ServeGatewayListener(ctx context.Context, g *egress.Gateway, ln net.Listener) error {
	return serveGatewayOn(ctx, g, ln, nil, slog.New(slog.DiscardHandler))
}

func serveGatewayOn(ctx context.Context, g *egress.Gateway, ln net.Listener, local http.Handler, log *slog.Logger) error {
	srv := g.HTTPServer(local)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(srv, ln) }()
	go g.Run(ctx)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	g.Shutdown(sctx)
	return nil
}

// RunEgress runs a standalone gateway: it opens the control plane's store and policy, keeps a
// decision index in sync with the store, and serves the plain and mTLS listeners until ctx ends.
// SIGHUP-style reloads go through reload (policy and CRL).
func RunEgress(ctx context.Context, c EgressConfig, extraRanges []string, log *slog.Logger, reload <-chan struct{}) error {
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	abs, err := filepath.Abs(c.PolicyDir)
	if err != nil {
		return err
	}
	loadPolicy := func() (*policy.Policy, error) {
		p, err := policy.Load(os.DirFS(abs))
		if err != nil {
			return nil, fmt.Errorf("policy %s does not validate:\n%w", abs, err)
		}
		return p, nil
	}
	pol, err := loadPolicy()
	if err != nil {
		return err
	}
	st, err := OpenStore(ctx, Config{Store: c.Store})
	if err != nil {
		return err
	}
	defer st.Close()
	ix := authz.New(st, pol, authz.Options{MaxStaleness: c.IndexMaxStaleness.Std(), Logger: log})
	if err := ix.Load(ctx); err != nil {
		return fmt.Errorf("load decision index: %w", err)
	}
	var current sync.Mutex
	polNow := pol
	getPolicy := func() *policy.Policy { current.Lock(); defer current.Unlock(); return polNow }
	var ranges []netip.Prefix
	for _, r := range append(append([]string(nil), c.AllowRanges...), extraRanges...) {
		p, err := ParseRange(r)
		if err != nil {
			return fmt.Errorf("--allow-range: %w", err)
		}
		ranges = append(ranges, p)
	}
	var resolver *net.Resolver
	if c.DNSServer != "" {
		resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, c.DNSServer)
		}}
	}
	var dlog io.Writer = os.Stderr
	if c.DecisionLog != "" {
		f, err := os.OpenFile(c.DecisionLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("decision log: %w", err)
		}
		defer f.Close()
		dlog = f
	}
	reg := prometheus.NewRegistry()
	revs := &egress.Revocations{}
	tokens := &identity.Tokens{Store: st, Now: time.Now, Users: st}
	creds := &identity.Chain{Tokens: tokens, Sessions: &identity.Sessions{Store: st, Now: time.Now, Tokens: tokens}}
	if len(c.Workloads.Clusters) > 0 {
		v, err := workload.New(c.Workloads.Clusters, time.Now)
		if err != nil {
			return fmt.Errorf("workloads: %w", err)
		}
		creds.Workloads = v
	}
	// Refused connections are aggregated per caller like the control plane's refusals, under
	// the policy's refusals settings; summaries are written every second and at exit.
	refused := refusals.New(refusals.Options{Record: recorder(st), Logger: log, Limits: func() refusals.Limits {
		r := getPolicy().Settings().Refusals
		return refusals.Limits{Window: r.Window.Std(), MaxSources: r.MaxSources, RiskHistory: r.RiskHistory}
	}})
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := refused.FlushAll(fctx); err != nil {
			log.Error("could not write the summaries of refused connections at exit", "err", err)
		}
	}()
	g := egress.New(egress.Config{
		Policy: getPolicy, Grants: ix, Tokens: creds, Record: recorder(st), RecordAll: batchRecorder(st), Refused: refused.Record,
		Revoked: revs.Revoked, Cluster: c.Cluster, Addr: egress.AddrPolicy{Allow: ranges, Own: egress.OwnAddrs()},
		Resolver: resolver, Logger: log, DecisionLog: dlog, Metrics: egress.NewMetrics(reg),
		Limits: egress.Limits{MaxTunnelsPerSubject: c.Limits.MaxTunnelsPerSubject, ConnectTimeout: c.Limits.ConnectTimeout.Std(), IdleTimeout: c.Limits.IdleTimeout.Std()},
	})
	local := http.NewServeMux()
	local.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	local.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ix.Health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	var metricsToken atomic.Pointer[string]
	loadMetricsToken := func() error {
		if c.MetricsTokenFile == "" {
			return nil
		}
		tok, err := readMetricsToken(c.MetricsTokenFile)
		if err != nil {
			return err
		}
		metricsToken.Store(&tok)
		return nil
	}
	if err := loadMetricsToken(); err != nil {
		return err
	}
	local.Handle("GET /metrics", metricsGuard(&metricsToken, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go ix.Run(ctx, 500*time.Millisecond)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = refused.Flush(ctx)
			}
		}
	}()
	errc := make(chan error, 2)
	go func() { errc <- ServeGateway(ctx, g, c.Listen, local, log) }()
	loadCRL := func() error { return nil }
	if c.TLS.Listen != "" {
		tcfg, caCerts, err := egress.ServerTLS(egress.TLSFiles{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, ClientCAFile: c.TLS.ClientCAFile, CRLFile: c.TLS.CRLFile})
		if err != nil {
			return err
		}
		if c.TLS.CRLFile != "" {
			loadCRL = func() error { return revs.Load(c.TLS.CRLFile, caCerts, time.Now()) }
		}
		if err := loadCRL(); err != nil {
			return err
		}
		ln, err := g.Listen(ctx, c.TLS.Listen)
		if err != nil {
			return fmt.Errorf("egress gateway: listen on %s: %w", c.TLS.Listen, err)
		}
		go func() { errc <- serveGatewayOn(ctx, g, tls.NewListener(ln, tcfg), local, log) }()
	}
	go func() {
		for range reload {
			if err := loadCRL(); err != nil {
				log.Error("CRL reload refused; the previous list stays", "err", err)
			}
			if err := loadMetricsToken(); err != nil {
				log.Error("metrics token reload refused; the previous token stays", "err", err)
			}
			p, err := loadPolicy()
			if err != nil {
				log.Error("policy reload refused; the previous policy stays", "err", err)
				continue
			}
			current.Lock()
			polNow = p
			current.Unlock()
			ix.SetPolicy(p)
			g.Revalidate()
			log.Info("egress policy reloaded", "digest", p.Digest)
		}
	}()
	log.Info("egress gateway serving", "listen", c.Listen, "tls_listen", c.TLS.Listen, "allow_ranges", fmt.Sprint(ranges))
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
