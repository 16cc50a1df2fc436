package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/server"
)

func newDevCmd() *cobra.Command {
	var addr, data, policyDir, egressAddr string
	cmd := &cobra.Command{
		Use:         "dev",
		Annotations: map[string]string{fixedOutput: "it runs a server, which writes JSON log lines"},
		Short:       "Run the whole control plane locally on embedded SQLite with a demo policy",
		Long: `Run the whole control plane on this machine: embedded SQLite in --data, the demo policy
(or --policy DIR), a built-in development OpenID provider at /dev-idp with the demo users (the
real sign-in flow: rampart login), a development login shortcut (POST /v1/dev/login, rampart
login --dev) that opens sessions for the policy's users, the egress gateway, and the background
jobs. For a first look and for development only: it listens on loopback and refuses other
addresses.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return usageErr("--addr %q is not host:port", addr)
			}
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return usageErr("--addr %s: rampart dev opens sessions for anyone who asks, so it only listens on loopback (127.0.0.1, ::1 or localhost)", addr)
			}
			if egressAddr != "" {
				host, _, err := net.SplitHostPort(egressAddr)
				if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
					return usageErr("--egress-addr %s: in dev mode the gateway only listens on loopback", egressAddr)
				}
			}
			cfg := server.Config{Listen: addr, DataDir: data, PolicyDir: policyDir, Dev: true, Ledger: server.LedgerConfig{Origin: "rampart-dev"}, EgressListen: egressAddr,
				OIDC: server.OIDCConfig{DevProvider: true}}
			if policyDir == "" {
				cfg.PolicyFS = demo.Policy()
			}
			return serve(cmd.Context(), cfg, true)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", defaultAddr, "address to listen on (loopback only)")
	cmd.Flags().StringVar(&data, "data", ".rampart-dev", "directory for the database, ledger key and pinned checkpoint")
	cmd.Flags().StringVar(&policyDir, "policy", "", "policy directory (default: the embedded demo policy)")
	cmd.Flags().StringVar(&egressAddr, "egress-addr", "127.0.0.1:8471", "address of the egress gateway (empty: no gateway)")
	return cmd
}

func newEgressCmd() *cobra.Command {
	var configPath string
	var ranges []string
	cmd := &cobra.Command{
		Use:         "egress --config FILE [--allow-range CIDR]...",
		Annotations: map[string]string{fixedOutput: "it runs a server, which writes JSON log lines"},
		Short:       "Run the egress gateway: default-deny outbound traffic, per-subject allowlists, just-in-time destinations",
		Long: `Run the egress gateway as its own process beside the control plane (see docs/egress.md): an
HTTP forward proxy (CONNECT and http://) that refuses every destination unless an EgressPolicy or
an active grant allows it, never connects to private, loopback, link-local or metadata addresses
unless --allow-range opens them, and counts bytes sent against exfiltration budgets. Clients
give their token as the proxy password (HTTPS_PROXY=http://rampart:TOKEN@host:8471, curl -x,
git's http.proxy, pip --proxy) or as Proxy-Authorization: Bearer, or a client certificate on the
mTLS listener. SIGHUP reloads the policy, the CRL and the metrics token without dropping
connections.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				return usageErr("--config is required")
			}
			cfg, err := server.LoadEgressConfig(configPath)
			if err != nil {
				return err
			}
			for _, r := range ranges {
				if _, err := server.ParseRange(r); err != nil {
					return usageErr("--allow-range: %v", err)
				}
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := make(chan struct{})
			go func() {
				for range hup {
					reload <- struct{}{}
				}
			}()
			return server.RunEgress(cmd.Context(), cfg, ranges, nil, reload)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "gateway configuration file (YAML)")
	cmd.Flags().StringSliceVar(&ranges, "allow-range", nil, "open an otherwise forbidden address range, e.g. 127.0.0.1/32 (repeatable)")
	return cmd
}

func newServerCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:         "server --config FILE",
		Annotations: map[string]string{fixedOutput: "it runs a server, which writes JSON log lines"},
		Short:       "Run the control plane in production mode",
		Long: `Run the control plane from a configuration file (see docs/operations.md): PostgreSQL or
SQLite, the policy directory, TLS, the ledger key and the witnesses that cosign its checkpoints
(ledger.witnesses). Send SIGHUP to reload the policy; an invalid policy is refused and the old
one stays in force. A server that raised a ledger tamper alarm refuses to start until an
operator removes <data_dir>/ledger.alarm (see docs/ledger.md).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := serverConfig(configPath)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, false)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML)")
	return cmd
}

func serve(ctx context.Context, cfg server.Config, banner bool) error {
	in, err := server.Start(ctx, cfg, server.Options{})
	if err != nil {
		return err
	}
	defer in.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another rampart already running? choose another with --addr)", cfg.Listen, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := in.ReloadPolicy(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "rampart: policy reload refused:", err)
			}
		}
	}()
	if cfg.EgressListen != "" {
		gw := in.Gateway(server.GatewayOptions{})
		gln, err := gw.Listen(ctx, cfg.EgressListen)
		if err != nil {
			return fmt.Errorf("egress gateway: listen on %s: %w (choose another with --egress-addr, or \"\" for none)", cfg.EgressListen, err)
		}
		gwCtx, cancelGateway := context.WithCancel(ctx)
		gwDone := make(chan struct{})
		go func() {
			defer close(gwDone)
			if err := server.ServeGatewayListener(gwCtx, gw, gln); err != nil {
				fmt.Fprintln(os.Stderr, "rampart: egress gateway:", err)
			}
		}()
		// The gateway's last ledger entries (transfers of the tunnels it closes, refusals) are
		// written before the store closes (in.Close, deferred above, runs after this).
		defer func() { <-gwDone }()
		defer cancelGateway() // runs first: whatever ended Serve ends the gateway too
	}
	if in.Webhook != nil {
		go func() {
			if err := in.ServeAdmission(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "rampart:", err)
			}
		}()
	}
	if banner {
		printBanner(cfg, ln.Addr().String())
	}
	return in.Serve(ctx, ln)
}

// defaultAddr is where the CLI looks for the server without --addr or RAMPART_ADDR.
const defaultAddr = "127.0.0.1:8470"

func printBanner(cfg server.Config, addr string) {
	fmt.Print(banner(cfg, addr))
}

// banner is what rampart dev prints at start: where it runs, and commands to paste that work
// against this server (its --addr), reach nothing outside this machine, and need no tool that
// is not installed.
func banner(cfg server.Config, addr string) string {
	pol := "embedded demo policy"
	if cfg.PolicyDir != "" {
		pol = cfg.PolicyDir
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nRampart dev control plane on http://%s\n", addr)
	fmt.Fprintf(&b, "  console: http://%s/ (sign in as a demo user; the password is the user name)\n", addr)
	fmt.Fprintf(&b, "  data:   %s (SQLite, ledger key, pinned checkpoint)\n  policy: %s\n", cfg.DataDir, pol)
	if addr != defaultAddr {
		// Every command below talks to this server, not to the CLI's default address.
		fmt.Fprintf(&b, "\nIn every terminal you use with it (the CLI's default is %s):\n  export RAMPART_ADDR=http://%s\n", defaultAddr, addr)
	}
	fmt.Fprintf(&b, `
Sign in for real through the built-in development identity provider (http://%[1]s/dev-idp);
the password is the user name:
  ./rampart login              # opens a browser here if it can, else a URL and a code (--device)
  ./rampart login --step-up    # a fresh multi-factor sign-in; the one-time code: ./rampart mfa code
`, addr)
	if cfg.PolicyDir == "" {
		b.WriteString("\nDemo users (shortcut without the identity provider: rampart login --dev --user NAME):\n")
		for _, u := range demo.Users {
			fmt.Fprintf(&b, "  %-6s %-30s %s\n", u.Name, u.Groups, u.Role)
		}
		b.WriteString(`
Try, in another terminal:
  go build -o rampart ./cmd/rampart
  ./rampart login --dev --user alice
  ID=$(./rampart request create --role weights-reader-frontier-7 --reason "eval run 4411" --duration 2h | grep -o 'req_[a-z2-7]*' | head -1); echo $ID
  RAMPART_TOKEN=$(./rampart login --dev --user bob --print-token) ./rampart request approve $ID
  RAMPART_TOKEN=$(./rampart login --dev --user dave --print-token) ./rampart request approve $ID
  ./rampart check alice read weights/frontier-7
  ./rampart audit verify
`)
	}
	if cfg.PolicyDir == "" && !cfg.Vault.Disabled {
		b.WriteString(`
Weights vault (encrypted under <data>/vault, keyring <data>/vault-keyring.json):
  ./rampart request create --role weights-writer-frontier-7 --reason "store checkpoint" --duration 1h   # bob and dave approve
  ./rampart weights put frontier-7 model.safetensors
  ./rampart weights get frontier-7 -o fetched.safetensors    # written only once the whole object verified
  ./rampart weights verify frontier-7

Secrets store (sealed with the same keyring; docs/secrets.md):
  printf '%s' "$API_KEY" | ./rampart secret put research/tracking-key   # researchers: a standing binding
  ./rampart secret get research/tracking-key --lease-ttl 15m
  ./rampart secret get deploy/registry-token    # exit 3: critical, needs a grant of secret-deploy-registry
`)
	}
	if cfg.EgressListen != "" {
		fmt.Fprintf(&b, `
Egress gateway on %[1]s: default deny. Researchers may reach huggingface.co, github.com and
arxiv.org through it (on the internet, so not tried here); these are refused before any
connection leaves this machine:
  curl -sS -x http://%[1]s http://example.com     # no identity: 407, and how to get access
  T=$(./rampart login --dev --user alice --print-token)
  curl -sS -x http://%[1]s --proxy-header "Proxy-Authorization: Bearer $T" https://api.openai.com   # 403: request it just in time (egress-openai, security approves)
  curl -sS -x http://%[1]s --proxy-header "Proxy-Authorization: Bearer $T" https://pastebin.com     # 403: on the deny list
`, cfg.EgressListen)
	}
	fmt.Fprintf(&b, "\nDev logins are sessions: a saved one is refreshed for %s; a --print-token access token lasts %s. Stop with Ctrl-C; state stays in %s\n(delete it to start over, then trust the new ledger key once: ./rampart audit verify --reset-key).\n\n",
		identity.DefaultSessionTTL, identity.DefaultAccessTTL, cfg.DataDir)
	return b.String()
}

// serverConfig loads the --config of a command that runs the control plane.
func serverConfig(path string) (server.Config, error) {
	if path == "" {
		return server.Config{}, usageErr("--config is required")
	}
	return server.LoadConfig(path)
}
