package server

import (
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/policy"
)

// Config is the server configuration file (YAML), read by `rampart server --config FILE`.
type Config struct {
	// Listen is the address to serve on. Default 127.0.0.1:8470.
	Listen string `yaml:"listen"`
	// DataDir holds the ledger signing key, the pinned checkpoint and (for SQLite) the database.
	DataDir string `yaml:"data_dir"`
	// PolicyDir is the policy repository checkout.
	PolicyDir string `yaml:"policy_dir"`
	// PolicyGit, instead of PolicyDir, loads the policy only from approved commits of a Git
	// repository (docs/change.md).
	PolicyGit *PolicyGitConfig `yaml:"policy_git"`
	Store     StoreConfig      `yaml:"store"`
	Ledger    LedgerConfig     `yaml:"ledger"`
	TLS       TLSConfig        `yaml:"tls"`
	// IndexMaxStaleness is how long decisions may go without a successful store sync before
	// they fail closed. Default 5s.
	IndexMaxStaleness policy.Duration `yaml:"index_max_staleness"`
	// JobsLeaseTTL is how long the lease on the background jobs that one replica is enough for
	// (expiry sweep, identity sweep, checkpoints) lasts unrenewed. Default 15s.
	JobsLeaseTTL policy.Duration `yaml:"jobs_lease_ttl"`
	// Suggest configures role suggestions.
	Suggest SuggestConfig `yaml:"suggest"`
	// OIDC is the identity provider people sign in with; Risk scores their sign-ins.
	OIDC     OIDCConfig     `yaml:"oidc"`
	Risk     RiskConfig     `yaml:"risk"`
	Sessions SessionsConfig `yaml:"sessions"`
	MFA      MFAConfig      `yaml:"mfa"`
	// SCIM lets the organisation's directory provision and deprovision people and groups.
	SCIM SCIMConfig `yaml:"scim"`
	// Workloads are the Kubernetes clusters whose service-account tokens are accepted.
	Workloads WorkloadsConfig `yaml:"workloads"`
	// Vault is the weights vault.
	Vault VaultConfig `yaml:"vault"`
	// Kubernetes is the cluster where grants become RBAC bindings.
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
	// IACDrift compares the infrastructure repository with that cluster on an interval
	// (docs/iac.md).
	IACDrift *IACDriftConfig `yaml:"iac_drift"`
	// Notifications tunes delivery of the notifications whose sinks the policy's Settings name.
	Notifications NotificationsConfig `yaml:"notifications"`
	// Detection runs the policy's detection rules over the ledger (docs/detection-operations.md).
	Detection DetectionConfig `yaml:"detection"`

	// Dev enables the development login; set only by `rampart dev`.
	Dev bool `yaml:"-"`
	// EgressListen, if set, serves an egress gateway in the same process (rampart dev).
	EgressListen string `yaml:"-"`
	// PolicyFS, if set, is used instead of PolicyDir (the embedded demo policy).
	PolicyFS fs.FS `yaml:"-"`
}

// NotificationsConfig tunes the delivery worker (docs/notifications.md). Every replica runs
// it; each outbox row is claimed by one replica at a time.
type NotificationsConfig struct {
	// PollInterval is how often the outbox is read when no commit on this replica woke the
	// worker (rows written by other replicas). Default 1s.
	PollInterval policy.Duration `yaml:"poll_interval"`
	// MaxAttempts is the retry budget; after it the row is failed and notification.failed is
	// recorded in the ledger. Default 8.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the wait after the first failed attempt; it doubles after each, up to 5m.
	// Default 2s.
	Backoff policy.Duration `yaml:"backoff"`
	// Timeout bounds one delivery. A row stays claimed for twice this, so after a replica dies
	// mid-delivery another sends it once that much time has passed. Default 30s.
	Timeout policy.Duration `yaml:"timeout"`
	// Retention is how long a sent or given-up notification stays in the outbox before the
	// jobs-lease holder deletes it (pending rows are never deleted). It is never shorter than
	// the policy's reminder lead, so a reminder's row outlives what it reminded of. Default
	// 168h (7 days).
	Retention policy.Duration `yaml:"retention"`
}

// DefaultNotificationRetention is how long sent and failed notifications are kept.
const DefaultNotificationRetention = 7 * 24 * time.Hour

// StoreConfig selects the database.
type StoreConfig struct {
	// Driver is "sqlite" (default) or "postgres".
	Driver string `yaml:"driver"`
	// Path is the SQLite file; default <data_dir>/rampart.db.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string. It may be given as $RAMPART_POSTGRES_DSN instead,
	// to keep the password out of the file.
	DSN string `yaml:"dsn"`
}

// LedgerConfig names the ledger and its key, and the witnesses that cosign its checkpoints.
type LedgerConfig struct {
	// Origin names the ledger in its checkpoints when a new key is created. Default "rampart".
	Origin string `yaml:"origin"`
	// SigningKeyFile overrides the policy's Settings.signing_key.
	SigningKeyFile string `yaml:"signing_key_file"`
	// Witnesses cosign every checkpoint (c2sp.org/tlog-witness), so that a rollback of the
	// database and of everything the server keeps is caught by someone else.
	Witnesses []WitnessConfig `yaml:"witnesses"`
	// WitnessTimeout bounds each request to a witness. Default 5s.
	WitnessTimeout policy.Duration `yaml:"witness_timeout"`
	// WitnessRefresh is how often the newest checkpoint is sent again when the ledger has not
	// grown: a fresh cosignature dates it, and a witness that has seen a longer history says
	// so. Default 1m; the server also sends it once when it starts.
	WitnessRefresh policy.Duration `yaml:"witness_refresh"`
}

// WitnessConfig is one witness.
type WitnessConfig struct {
	// URL is the witness's submission prefix: add-checkpoint is POSTed to URL/add-checkpoint.
	URL string `yaml:"url"`
	// Key is the witness's cosignature verifier key (name+hash+base64), as the witness prints
	// it. Its cosignatures are accepted only if they verify with it.
	Key string `yaml:"key"`
}

// SuggestConfig configures role suggestions.
type SuggestConfig struct {
	// Model, if its url is set, lets a language model choose among verified candidates.
	Model ModelConfig `yaml:"model"`
}

// ModelConfig names an OpenAI-compatible Chat Completions endpoint.
type ModelConfig struct {
	// URL is the full chat completions URL (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp).
	URL   string `yaml:"url"`
	Model string `yaml:"model"`
	// APIKeyEnv names the environment variable holding the API key (keys stay out of files).
	APIKeyEnv string `yaml:"api_key_env"`
	// APIKeyHeader is "Authorization" (Bearer, the default) or "api-key" (Azure OpenAI).
	APIKeyHeader string `yaml:"api_key_header"`
	// Timeout bounds each model call; default 5s. On timeout the deterministic ranking is used.
	Timeout policy.Duration `yaml:"timeout"`
}

// TLSConfig enables HTTPS.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// LoadConfig reads and validates a configuration file. Errors name the file, line and field.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	nodes, err := strictyaml.SplitDocuments(path, data)
	if err != nil {
		return Config{}, err
	}
	if len(nodes) != 1 {
		return Config{}, fmt.Errorf("%s: want exactly one YAML document, found %d", path, len(nodes))
	}
	var c Config
	doc := &strictyaml.Document{File: path}
	doc.Decode("", nodes[0], &c)
	if len(doc.Errs) == 0 {
		c.validate(doc)
	}
	if err := doc.Errs.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) validate(doc *strictyaml.Document) {
	c.Detection.validate(doc.Errorf)
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8470"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		doc.Errorf("listen", "%q is not host:port", c.Listen)
	}
	if c.DataDir == "" {
		doc.Errorf("data_dir", "data_dir is required: the directory for the ledger key and pinned checkpoint")
	}
	switch {
	case c.PolicyGit != nil && c.PolicyDir != "":
		doc.Errorf("policy_git", "set policy_dir or policy_git, not both")
	case c.PolicyGit != nil:
		c.PolicyGit.validate(doc)
	case c.PolicyDir == "":
		doc.Errorf("policy_dir", "policy_dir (a directory of policy YAML files) or policy_git (a Git repository of approved commits) is required")
	}
	switch c.Store.Driver {
	case "", "sqlite":
		c.Store.Driver = "sqlite"
		if c.Store.DSN != "" {
			doc.Errorf("store.dsn", "dsn is for the postgres driver; SQLite uses store.path")
		}
	case "postgres":
		if c.Store.DSN == "" && os.Getenv("RAMPART_POSTGRES_DSN") == "" {
			doc.Errorf("store.dsn", "the postgres driver needs store.dsn or $RAMPART_POSTGRES_DSN")
		}
	default:
		doc.Errorf("store.driver", "unknown driver %q; use sqlite or postgres", c.Store.Driver)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		doc.Errorf("tls", "set both cert_file and key_file, or neither")
	}
	c.validateIdentity(doc)
	c.validateVault(doc)
	c.validateKubernetes(doc)
	c.validateIACDrift(doc)
	if c.IndexMaxStaleness != 0 && c.IndexMaxStaleness.Std() < time.Second {
		doc.Errorf("index_max_staleness", "must be at least 1s")
	}
	if c.Ledger.Origin != "" {
		if err := audit.ValidOrigin(c.Ledger.Origin); err != nil {
			doc.Errorf("ledger.origin", "%v", err)
		}
	}
	c.validateWitnesses(doc)
	if c.JobsLeaseTTL != 0 && c.JobsLeaseTTL.Std() < time.Second {
		doc.Errorf("jobs_lease_ttl", "must be at least 1s (it is renewed every third of it)")
	}
	if n := c.Notifications; n.MaxAttempts < 0 || n.MaxAttempts > 100 {
		doc.Errorf("notifications.max_attempts", "must be between 1 and 100 (it is %d); leave it out for 8", n.MaxAttempts)
	}
	if n := c.Notifications; n.PollInterval < 0 || n.Backoff < 0 || n.Timeout < 0 {
		doc.Errorf("notifications", "poll_interval, backoff and timeout must not be negative")
	}
	if m := c.Suggest.Model; m.URL != "" {
		if u, err := url.Parse(m.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			doc.Errorf("suggest.model.url", "%q is not an http(s) URL of a chat completions endpoint", m.URL)
		}
		if m.Model == "" {
			doc.Errorf("suggest.model.model", "name the model (or Azure deployment) to use")
		}
		if m.APIKeyEnv != "" && os.Getenv(m.APIKeyEnv) == "" {
			doc.Errorf("suggest.model.api_key_env", "$%s is empty; set it to the API key, or remove api_key_env for a server that needs none", m.APIKeyEnv)
		}
	}
}

func (c *Config) validateWitnesses(doc *strictyaml.Document) {
	seen := map[string]bool{}
	for i, w := range c.Ledger.Witnesses {
		field := fmt.Sprintf("ledger.witnesses[%d]", i)
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			doc.Errorf(field+".url", "%q is not the http(s) URL of a witness's submission prefix (add-checkpoint is posted below it)", w.URL)
		}
		v, err := audit.NewWitnessVerifier(w.Key)
		if err != nil {
			doc.Errorf(field+".key", "%v", err)
			continue
		}
		if seen[w.Key] {
			doc.Errorf(field+".key", "witness %s is listed twice", v.Name())
		}
		seen[w.Key] = true
	}
	if t := c.Ledger.WitnessTimeout; t != 0 && t.Std() < 100*time.Millisecond {
		doc.Errorf("ledger.witness_timeout", "must be at least 100ms")
	}
	if r := c.Ledger.WitnessRefresh; r != 0 && r.Std() < time.Second {
		doc.Errorf("ledger.witness_refresh", "must be at least 1s")
	}
}
