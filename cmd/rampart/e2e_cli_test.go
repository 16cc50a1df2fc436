package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// Issue 12, item 12: what scripts rely on, for every command of the binary. The command tree is
// read from the binary's own help (every "Available Commands" section, recursively), so a command
// added without a row in cliRows fails TestCLIExitCodesAndFormats. Each row runs three times,
// with -o table, json and yaml, and must exit with its code every time; under json, standard
// output is empty or exactly one JSON value (a stream row: one per line), under yaml one YAML
// document (a stream: documents) of the same shape as the JSON; a command whose output has a
// fixed form (a server, a shell script, the ledger's bytes) refuses json and yaml with exit 2.

// cliEnv is the running dev server and the people signed in to it.
type cliEnv struct {
	t      *testing.T
	c      *cli
	dir    string
	data   string
	tokens map[string]string // user → a session access token
}

// cliRow is one invocation of a command. args returns the arguments and extra environment for
// one run (setup that a run consumes, such as a pending request to approve, is made anew each
// time); as names whose token the run uses ("" the login saved for alice, "-" none at all).
type cliRow struct {
	path   string // the command, as the help names it: "request approve"
	as     string
	args   func(e *cliEnv) ([]string, []string)
	code   int
	fixed  bool   // the output has a form of its own: -o json and yaml are refused with exit 2
	stream bool   // json: one value per line; yaml: documents
	quiet  bool   // prints nothing on success
	stderr string // in standard error, every run
}

// static makes the args of a row that needs no setup.
func static(args ...string) func(*cliEnv) ([]string, []string) {
	return func(*cliEnv) ([]string, []string) { return args, nil }
}

func (e *cliEnv) as(user string, args ...string) result {
	e.t.Helper()
	env := []string{"RAMPART_TOKEN=" + e.tokens[user]}
	if user == "" {
		env = nil
	}
	return e.c.run(env, args...)
}

func (e *cliEnv) okJSON(user string, out any, args ...string) {
	e.t.Helper()
	r := e.as(user, append([]string{"-o", "json"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("setup: rampart %s as %q: exit %d\n%s", strings.Join(args, " "), user, r.code, r.err)
	}
	if err := json.Unmarshal([]byte(r.out), out); err != nil {
		e.t.Fatalf("setup: rampart %s: %v\n%s", strings.Join(args, " "), err, r.out)
	}
}

// request files a request by alice for a role and returns its id.
func (e *cliEnv) request(role string) string {
	var out struct {
		Request struct{ ID string } `json:"request"`
	}
	e.okJSON("alice", &out, "request", "create", "--role", role, "--reason", "cli table", "--duration", "1h")
	return out.Request.ID
}

// grant files a request by alice for role, has bob and dave approve it, and returns the grant.
func (e *cliEnv) grant(role string) string {
	id := e.request(role)
	var v struct {
		Grant *struct{ ID string } `json:"grant"`
	}
	e.okJSON("bob", &v, "request", "approve", id)
	e.okJSON("dave", &v, "request", "approve", id)
	if v.Grant == nil {
		e.t.Fatalf("setup: request %s approved by bob and dave has no grant", id)
	}
	return v.Grant.ID
}

// secretLease reads the research secret as alice with a lease and returns the lease's id.
func (e *cliEnv) secretLease() string {
	e.t.Helper()
	r := e.as("", "secret", "get", "research/tracking-key", "--lease-ttl", "5m")
	m := leaseRE.FindStringSubmatch(r.err)
	if r.code != 0 || m == nil {
		e.t.Fatalf("setup: secret get --lease-ttl: exit %d\n%s", r.code, r.err)
	}
	return m[1]
}

// alert records a firing in the dev server's database, as the detection runner of another
// replica would (a detect.alert entry naming entries 0 and 1 as evidence, and its alert), and
// returns the new alert's id.
func (e *cliEnv) alert() string {
	e.t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(e.data, "rampart.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	key := fmt.Sprintf("alice-%d", time.Now().UnixNano())
	a, err := s.RecordAlert(ctx, sqlstore.AlertFiring{Rule: "bulk-weight-reads", Key: key, Severity: "high", At: time.Now()},
		audit.Event{Code: "detect.alert", Class: audit.ClassDetectionFinding, Activity: 1, ActivityName: "Create", Severity: audit.SeverityHigh,
			Time: time.Now(), Actor: "detect:bulk-weight-reads", Message: "alice read 40 checkpoints in 10 minutes",
			Details: map[string]any{"rule": "bulk-weight-reads", "key": key, "evidence": []any{0, 1}}})
	if err != nil {
		e.t.Fatal(err)
	}
	return strconv.FormatInt(a.ID, 10)
}

func (e *cliEnv) file(name, content string) string {
	p := filepath.Join(e.dir, fmt.Sprintf("%d-%s", time.Now().UnixNano(), name))
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *cliEnv) fresh(name string) string {
	return filepath.Join(e.dir, fmt.Sprintf("%d-%s", time.Now().UnixNano(), name))
}

// cliRows is one row or more for every command of the binary.
func cliRows() []cliRow {
	const reader, writer = "weights-reader-frontier-7", "weights-writer-frontier-7"
	malformed := "RAMPART_TOKEN=garbage"
	unknown := "RAMPART_TOKEN=rpt_" + strings.Repeat("A", 43)
	return []cliRow{
		{path: "admin ledger-key", as: "-", args: func(e *cliEnv) ([]string, []string) {
			return []string{"admin", "ledger-key", "--out", e.fresh("ledger.key")}, nil
		}},
		{path: "admin token", as: "-", args: func(e *cliEnv) ([]string, []string) {
			cfg := e.file("server.yaml", fmt.Sprintf("listen: 127.0.0.1:1\ndata_dir: %s\npolicy_dir: ../../internal/demo/policy\n", e.data))
			return []string{"admin", "token", "--config", cfg, "--subject", "service:ci", "--kind", "service", "--ttl", "1h"}, nil
		}},
		{path: "admission", as: "-", args: static("admission"), code: 2, fixed: true},
		{path: "audit checkpoint", args: static("audit", "checkpoint")},
		{path: "audit export", as: "erin", args: func(e *cliEnv) ([]string, []string) {
			return []string{"audit", "export", "--file", e.fresh("entries.jsonl")}, nil
		}, fixed: true, quiet: true},
		{path: "audit tail", as: "erin", args: static("audit", "tail", "-n", "3"), stream: true},
		{path: "audit tail", args: static("audit", "tail"), code: 3, stderr: "admin or auditor"},
		{path: "audit verify", as: "erin", args: static("audit", "verify")},
		{path: "audit key", args: static("audit", "key")},
		{path: "audit prove", as: "erin", args: static("audit", "prove", "0", "1")},
		{path: "audit prove", as: "erin", args: static("audit", "prove"), code: 2, stderr: "sequence numbers"},
		{path: "audit prove", as: "erin", args: static("audit", "prove", "99999999"), code: 1, stderr: "not in the ledger"},
		// Alerts (store/storetest and api test their lifecycle; e.alert writes one as the
		// detection runner would).
		// Backtest: the dev server's ledger through a rule from a policy directory.
		{path: "detect backtest", as: "erin", args: func(e *cliEnv) ([]string, []string) {
			return []string{"detect", "backtest", "--since", "24h", "--rules", detectPolicyDir(e.t, churnRule)}, nil
		}},
		{path: "detect backtest", as: "erin", args: static("detect", "backtest", "--rules", "."), code: 2, stderr: "--since is required"},
		{path: "detect backtest", as: "erin", args: static("detect", "backtest", "--since", "yesterday", "--rules", "."), code: 2, stderr: "RFC 3339"},
		{path: "detect backtest", args: func(e *cliEnv) ([]string, []string) {
			return []string{"detect", "backtest", "--since", "24h", "--rules", detectPolicyDir(e.t, churnRule)}, nil
		}, code: 3, stderr: "admin or auditor"},
		{path: "alerts list", as: "erin", args: static("alerts", "list", "--state", "open", "--since", "24h")},
		{path: "alerts list", args: static("alerts", "list"), code: 3, stderr: "admin or auditor"},
		{path: "alerts list", as: "erin", args: static("alerts", "list", "--state", "closed"), code: 2, stderr: "open, acked or resolved"},
		{path: "alerts show", as: "erin", args: func(e *cliEnv) ([]string, []string) { return []string{"alerts", "show", e.alert()}, nil }},
		{path: "alerts show", as: "erin", args: static("alerts", "show", "999999"), code: 1, stderr: "no such alert"},
		{path: "alerts ack", as: "erin", args: func(e *cliEnv) ([]string, []string) {
			return []string{"alerts", "ack", e.alert(), "--note", "looking"}, nil
		}},
		{path: "alerts ack", args: func(e *cliEnv) ([]string, []string) { return []string{"alerts", "ack", e.alert()}, nil }, code: 3, stderr: "admin group"},
		{path: "alerts resolve", as: "erin", args: func(e *cliEnv) ([]string, []string) {
			return []string{"alerts", "resolve", e.alert(), "--note", "expected"}, nil
		}},
		{path: "alerts resolve", as: "erin", args: static("alerts", "resolve", "x"), code: 2, stderr: "not an alert id"},
		// Guarded change (e2e_change_test.go drives it against a policy with a Repository; the demo
		// policy has none, so these rows are its refusals).
		{path: "change approve", args: static("change", "approve", "chg_aaaaaaaaaaaaaaaa"), code: 1, stderr: "does not exist"},
		{path: "change deny", args: static("change", "deny", "chg_aaaaaaaaaaaaaaaa"), code: 1, stderr: "does not exist"},
		{path: "change show", args: static("change", "show", "chg_aaaaaaaaaaaaaaaa"), code: 1, stderr: "does not exist"},
		{path: "change publish", args: static("change", "publish", "chg_aaaaaaaaaaaaaaaa"), code: 1, stderr: "does not exist"},
		{path: "change bundle", args: static("change", "bundle", "chg_aaaaaaaaaaaaaaaa"), code: 1, fixed: true, stderr: "does not exist"},
		{path: "change list", args: static("change", "list")},
		{path: "change request", args: func(e *cliEnv) ([]string, []string) {
			return []string{"change", "request", "--repo", e.dir, "--repository", "infra", "--ref", "refs/heads/main", "--source", "HEAD"}, nil
		}, code: 1, stderr: "not a git repository"},
		{path: "ci login", as: "-", args: static("ci", "login"), code: 2, stderr: "no ID token"},
		{path: "pipeline trigger", args: static("pipeline", "trigger", "acme/infra/deploy.yml", "--ref", "refs/heads/main"), code: 3, stderr: "no active trigger grant"},
		{path: "change verify", as: "-", args: static("change", "verify"), code: 2, stderr: "--ref and --key are required"},
		{path: "change hook pre-receive", as: "-", args: static("change", "hook", "pre-receive"), code: 1, fixed: true, stderr: "the hook has no --repository"},
		{path: "change hook post-receive", as: "-", args: static("change", "hook", "post-receive"), fixed: true, quiet: true},
		{path: "audit verify", as: "-", args: func(e *cliEnv) ([]string, []string) {
			r := e.as("erin", "audit", "export", "--file", filepath.Join(e.dir, "verify.jsonl"), "--checkpoint", filepath.Join(e.dir, "verify.cp"))
			key := regexp.MustCompile(`ledger key: (\S+)`).FindStringSubmatch(r.err)
			if r.code != 0 || key == nil {
				e.t.Fatalf("setup: audit export: %+v", r)
			}
			return []string{"audit", "verify", "--entries", filepath.Join(e.dir, "verify.jsonl"), "--checkpoint", filepath.Join(e.dir, "verify.cp"), "--key", key[1]}, nil
		}},
		{path: "check", as: "carol", args: static("check", "carol", "read", "weights/frontier-7"), code: 3},
		{path: "check", args: static("check", "alice", "read", "weights/frontier-7")}, // alice holds the writer grant
		{path: "check", as: "carol", args: static("check", "bob", "read", "weights/frontier-7"), code: 3, stderr: "may only check their own access"},
		{path: "completion bash", as: "-", args: static("completion", "bash"), fixed: true},
		{path: "completion fish", as: "-", args: static("completion", "fish"), fixed: true},
		{path: "completion powershell", as: "-", args: static("completion", "powershell"), fixed: true},
		{path: "completion zsh", as: "-", args: static("completion", "zsh"), fixed: true},
		{path: "dev", as: "-", args: static("dev", "--addr", "0.0.0.0:1"), code: 2, fixed: true},
		{path: "egress", as: "-", args: static("egress"), code: 2, fixed: true},
		{path: "exception request", args: static("exception", "request", "--namespace", "research", "--workload", "gpu", "--check", "baseline.runtime-class",
			"--compensating", "dedicated node pool", "--reason", "cli table", "--duration", "1h", "--cluster", "dev", "--yes")},
		{path: "grant list", args: static("grant", "list")},
		{path: "grant list", as: "carol", args: static("grant", "list")},
		{path: "grant renew", args: func(e *cliEnv) ([]string, []string) {
			return []string{"grant", "renew", e.grant(reader), "--duration", "1h"}, nil
		}},
		{path: "grant revoke", args: func(e *cliEnv) ([]string, []string) {
			return []string{"grant", "revoke", e.grant(reader), "--reason", "cli table"}, nil
		}},
		{path: "help", as: "-", args: static("help", "audit"), fixed: true},
		{path: "detect test", as: "-", args: static("detect", "test", "../../internal/demo/policy", "--events", "../../detect/testdata/pack.jsonl")},
		{path: "detect test", as: "-", args: func(e *cliEnv) ([]string, []string) {
			bad := e.file("bad-rule.yaml", "apiVersion: rampart.dev/v1alpha1\nkind: DetectionRule\nmetadata: {name: bad}\nspec:\n  severity: high\n  condition: 'event.cod == \"x\"'\n")
			return []string{"detect", "test", bad, "--events", "../../detect/testdata/pack.jsonl"}, nil
		}, code: 1, stderr: "bad-rule.yaml:6:3: spec.condition: CEL: ERROR"},
		{path: "detect test", as: "-", args: static("detect", "test", "../../internal/demo/policy"), code: 2, stderr: "--events FILE is required"},
		{path: "detect sigma", as: "-", args: static("detect", "sigma", "../../detect/sigma/testdata/checkpoint_sweep.yml", "../../detect/sigma/testdata/egress_to_paste.yml"), stream: true},
		{path: "detect sigma", as: "-", args: static("detect", "sigma", "../../detect/sigma/testdata/unmapped_field.yml"), code: 1, stderr: "has no mapping to an event field"},
		{path: "detect sigma", as: "-", args: static("detect", "sigma"), code: 2, stderr: "at least one Sigma rule file"},
		{path: "iac check", as: "-", args: static("iac", "check", "../../iac/testdata/good")},
		{path: "iac check", as: "-", args: static("iac", "check", "../../iac/testdata/bad", "--policy", "../../internal/demo/policy"), code: 3},
		{path: "iac check", as: "-", args: static("iac", "check", "no-such-dir"), code: 1, stderr: "no-such-dir"},
		{path: "iac drift", as: "-", args: func(e *cliEnv) ([]string, []string) {
			return []string{"iac", "drift", "../../iac/testdata/good", "--kubeconfig", filepath.Join(e.dir, "no-such-kubeconfig")}, nil
		}, code: 1},
		{path: "kms-plugin", as: "-", args: static("kms-plugin"), code: 2, fixed: true},
		{path: "kube install", as: "-", args: static("kube", "install"), code: 2},
		{path: "kube render netpol", as: "-", args: static("kube", "render", "netpol", "--namespace", "research")},
		{path: "kube render rbac", as: "-", args: static("kube", "render", "rbac")},
		{path: "kube scan", as: "-", args: func(e *cliEnv) ([]string, []string) {
			return []string{"kube", "scan", "--kubeconfig", filepath.Join(e.dir, "no-such-kubeconfig")}, nil
		}, code: 1},
		{path: "login", as: "-", args: static("login", "--dev", "--user", "alice")},
		{path: "login", as: "-", args: static("login", "--dev", "--user", "alice", "--print-token")},
		{path: "logout", as: "-", args: func(e *cliEnv) ([]string, []string) {
			cfg := []string{"RAMPART_CONFIG_DIR=" + e.fresh("logout")}
			if r := e.c.run(cfg, "login", "--dev", "--user", "carol"); r.code != 0 {
				e.t.Fatalf("setup: login: %+v", r)
			}
			return []string{"logout"}, cfg
		}},
		{path: "mfa allow-enrol", as: "erin", args: static("mfa", "allow-enrol", "dave")},
		{path: "mfa code", args: static("mfa", "code")}, // the dev server of this table runs on this machine
		{path: "mfa enrol", as: "alice", args: func(e *cliEnv) ([]string, []string) {
			e.okJSON("erin", &map[string]any{}, "mfa", "allow-enrol", "alice")
			return []string{"mfa", "enrol"}, nil
		}},
		{path: "mfa confirm", as: "alice", args: func(e *cliEnv) ([]string, []string) {
			return []string{"mfa", "confirm", e.startEnrolment("alice")}, nil
		}},
		{path: "mfa reset", as: "erin", args: func(e *cliEnv) ([]string, []string) {
			e.enrol("dave")
			return []string{"mfa", "reset", "dave"}, nil
		}},
		{path: "mfa step-up", as: "dave", args: static("mfa", "step-up", "000000"), code: 3, stderr: "no confirmed second factor"},
		{path: "policy explain", args: static("policy", "explain", "--requester", "alice", "--role", reader)},
		{path: "policy diff", as: "-", args: func(e *cliEnv) ([]string, []string) {
			return []string{"policy", "diff", e.policyDir(), e.policyDir()}, nil
		}},
		{path: "policy diff", as: "-", args: func(e *cliEnv) ([]string, []string) {
			return []string{"policy", "diff", "--repo", e.policyRepo(), "--path", "policy", "HEAD~1", "HEAD"}, nil
		}, code: 3, stderr: "WEAKER"},
		{path: "policy diff", as: "-", args: static("policy", "diff", "no-such-dir", "no-such-dir"), code: 2, stderr: "is not a directory"},
		{path: "policy validate", as: "-", args: func(e *cliEnv) ([]string, []string) { return []string{"policy", "validate", e.policyDir()}, nil }},
		{path: "request approve", as: "bob", args: func(e *cliEnv) ([]string, []string) {
			return []string{"request", "approve", e.request(reader)}, nil
		}},
		{path: "request approve", args: func(e *cliEnv) ([]string, []string) {
			return []string{"request", "approve", e.request(reader)}, nil
		}, code: 3, stderr: "is the requester"},
		{path: "request cancel", args: func(e *cliEnv) ([]string, []string) {
			return []string{"request", "cancel", e.request(reader)}, nil
		}},
		{path: "request create", args: static("request", "create", "--role", reader, "--reason", "cli table", "--duration", "1h")},
		{path: "request create", args: func(e *cliEnv) ([]string, []string) {
			// The previous run's pair is cancelled first: three runs of two would take alice to
			// her limit of pending requests.
			var pending []struct{ ID, Reason string }
			e.okJSON("alice", &pending, "request", "list", "--state", "pending")
			for _, p := range pending {
				if p.Reason == "cli table set" {
					e.okJSON("alice", &map[string]any{}, "request", "cancel", p.ID)
				}
			}
			return []string{"request", "create", "--resource", "weights/frontier-7", "--resource", "datasets/eval-suite-v3", "--action", "read", "--reason", "cli table set", "--yes"}, nil
		}},
		// One resource has no role for delete: nothing is requested, exit 4.
		{path: "request create", args: static("request", "create", "--resource", "weights/frontier-7", "--resource", "datasets/eval-suite-v3", "--action", "delete", "--reason", "cli table", "--yes"), code: 4, stderr: "nothing was requested"},
		{path: "request deny", as: "bob", args: func(e *cliEnv) ([]string, []string) {
			return []string{"request", "deny", e.request(reader)}, nil
		}},
		{path: "request list", args: static("request", "list")},
		{path: "request list", as: "dave", args: static("request", "list", "--scope", "mine")}, // empty: [], not null
		{path: "request show", args: func(e *cliEnv) ([]string, []string) {
			return []string{"request", "show", e.request(reader)}, nil
		}},
		{path: "request show", args: static("request", "show", "req_aaaaaaaaaaaaaaaa"), code: 1},
		{path: "resources", args: static("resources")},
		{path: "roles", args: static("roles")},
		{path: "search", args: static("search", "frontier")},
		{path: "secret get", args: static("secret", "get", "research/tracking-key")}, // a standing binding
		{path: "secret get", args: static("secret", "get", "research/tracking-key", "--lease-ttl", "5m"), stderr: "lease sl_"},
		{path: "secret get", args: func(e *cliEnv) ([]string, []string) {
			return []string{"secret", "get", "research/tracking-key", "--lease", e.secretLease()}, nil
		}, stderr: "lease sl_"},
		{path: "secret get", as: "carol", args: static("secret", "get", "research/tracking-key"), code: 3, stderr: "may not read secrets/research/tracking-key"},
		{path: "secret get", args: static("secret", "get", "research/../deploy/registry-token"), code: 2, stderr: "secret name"},
		{path: "secret ls", args: static("secret", "ls")},
		{path: "secret ls", as: "carol", args: static("secret", "ls")}, // nothing carol may see: []
		{path: "secret put", args: func(e *cliEnv) ([]string, []string) {
			return []string{"secret", "put", "research/tracking-key", "--file", e.file("secret.txt", "a secret for the table")}, nil
		}},
		{path: "secret put", as: "carol", args: func(e *cliEnv) ([]string, []string) {
			return []string{"secret", "put", "research/tracking-key", "--file", e.file("secret.txt", "carol's")}, nil
		}, code: 3, stderr: "may not write"},
		{path: "secret revoke-lease", args: func(e *cliEnv) ([]string, []string) {
			return []string{"secret", "revoke-lease", e.secretLease()}, nil
		}},
		{path: "secret revoke-lease", args: static("secret", "revoke-lease", "sl_nope"), code: 2, stderr: "not a lease id"},
		{path: "secret rm", args: func(e *cliEnv) ([]string, []string) {
			// A version to delete each run (the rows after this one list versions, deleted too).
			e.c.ok("secret", "put", "research/tracking-key", "--file", e.file("again.txt", "again"))
			return []string{"secret", "rm", "research/tracking-key"}, nil
		}},
		{path: "secret rm", as: "carol", args: static("secret", "rm", "research/tracking-key"), code: 3},
		{path: "secret versions", args: static("secret", "versions", "research/tracking-key")},
		{path: "secret versions", as: "carol", args: static("secret", "versions", "research/tracking-key"), code: 3},
		{path: "server", as: "-", args: static("server"), code: 2, fixed: true},
		{path: "session list", args: static("session", "list")},
		{path: "session revoke", as: "-", args: func(e *cliEnv) ([]string, []string) {
			var tok struct {
				Token     string `json:"token"`
				SessionID string `json:"session_id"`
			}
			r := e.c.run(nil, "login", "--dev", "--user", "carol", "--print-token", "-o", "json")
			if r.code != 0 || json.Unmarshal([]byte(r.out), &tok) != nil {
				e.t.Fatalf("setup: login: %+v", r)
			}
			return []string{"session", "revoke", tok.SessionID}, []string{"RAMPART_TOKEN=" + tok.Token}
		}},
		{path: "suggest", args: static("suggest", "--resource", "weights/frontier-7", "--action", "read")},
		{path: "suggest", args: static("suggest", "--resource", "weights/frontier-7", "--action", "exec"), code: 4, stderr: "no requestable role grants exec"},
		{path: "suggest eval", as: "-", args: static("suggest", "eval", "../../testdata/suggest/eval.yaml", "--policy", "../../testdata/suggest/policy")},
		{path: "token create", args: static("token", "create", "--ttl", "10m")},
		{path: "token list", args: static("token", "list")},
		{path: "token revoke", args: func(e *cliEnv) ([]string, []string) {
			var tok struct{ ID string }
			e.okJSON("", &tok, "token", "create", "--ttl", "10m")
			return []string{"token", "revoke", tok.ID}, nil
		}},
		{path: "user disable", as: "erin", args: static("user", "disable", "frank", "--reason", "cli table")},
		{path: "user enable", as: "erin", args: func(e *cliEnv) ([]string, []string) {
			e.okJSON("erin", &map[string]any{}, "user", "disable", "frank", "--reason", "cli table")
			return []string{"user", "enable", "frank"}, nil
		}},
		{path: "user list", as: "erin", args: static("user", "list")},
		{path: "user unbind", as: "erin", args: func(e *cliEnv) ([]string, []string) {
			signInAs(e.t, e.c.addr, "carol") // binds carol to her account at the provider
			return []string{"user", "unbind", "carol"}, nil
		}},
		{path: "user unbind", as: "erin", args: static("user", "unbind", "frank"), code: 1, stderr: "not bound"},
		{path: "vault init", as: "-", args: func(e *cliEnv) ([]string, []string) {
			return []string{"vault", "init", e.fresh("keyring.json")}, nil
		}},
		{path: "vault retire", as: "-", args: func(e *cliEnv) ([]string, []string) {
			ring := e.fresh("keyring.json")
			var first struct {
				KeyID string `json:"key_id"`
			}
			if r := e.c.run(nil, "-o", "json", "vault", "init", ring); r.code != 0 || json.Unmarshal([]byte(r.out), &first) != nil {
				e.t.Fatalf("setup: vault init: %+v", r)
			}
			if r := e.c.run(nil, "vault", "rotate", "--keyring", ring); r.code != 0 {
				e.t.Fatalf("setup: vault rotate: %+v", r)
			}
			return []string{"vault", "retire", first.KeyID, "--keyring", ring}, nil
		}},
		{path: "vault rotate", as: "erin", args: static("vault", "rotate")},
		{path: "vault rotate", args: static("vault", "rotate"), code: 3, stderr: "needs an admin"},
		{path: "weights get", args: func(e *cliEnv) ([]string, []string) {
			return []string{"weights", "get", "frontier-7", "-O", e.fresh("fetched.bin")}, nil
		}},
		{path: "weights get", as: "carol", args: func(e *cliEnv) ([]string, []string) {
			return []string{"weights", "get", "frontier-7", "-O", e.fresh("denied.bin")}, nil
		}, code: 3, stderr: "may not read weights/frontier-7"},
		{path: "weights ls", args: static("weights", "ls")},
		{path: "weights ls", as: "carol", args: static("weights", "ls")}, // nothing carol may see: []
		{path: "weights put", args: func(e *cliEnv) ([]string, []string) {
			return []string{"weights", "put", "frontier-7", e.file("model.bin", "weights for the table")}, nil
		}},
		{path: "weights rekey", args: static("weights", "rekey", "frontier-7")}, // alice holds the writer grant
		{path: "weights rekey", as: "carol", args: static("weights", "rekey", "frontier-7"), code: 3},
		{path: "weights rm", as: "carol", args: static("weights", "rm", "frontier-7"), code: 3},
		{path: "weights verify", args: static("weights", "verify", "frontier-7")},
		{path: "whoami", args: static("whoami")},
		{path: "whoami", as: "-", args: func(*cliEnv) ([]string, []string) { return []string{"whoami"}, []string{malformed} }, code: 2, stderr: "RAMPART_TOKEN is not a Rampart credential"},
		{path: "whoami", as: "-", args: func(*cliEnv) ([]string, []string) { return []string{"whoami"}, []string{unknown} }, code: 1, stderr: "unknown token"},
	}
}

// startEnrolment lets user enrol a second factor, starts the enrolment, and returns the app's
// current code, which confirms it.
func (e *cliEnv) startEnrolment(user string) string {
	e.okJSON("erin", &map[string]any{}, "mfa", "allow-enrol", user)
	var en map[string]string
	e.okJSON(user, &en, "mfa", "enrol")
	key, err := identity.DecodeTOTPSecret(en["secret"])
	if err != nil {
		e.t.Fatalf("setup: enrolment secret %q: %v", en["secret"], err)
	}
	return identity.TOTPAt(key, identity.TOTPStepAt(time.Now()))
}

// enrol gives user a confirmed second factor.
func (e *cliEnv) enrol(user string) {
	e.okJSON(user, &map[string]any{}, "mfa", "confirm", e.startEnrolment(user))
}

// policyDir writes the demo policy to a directory, once.
func (e *cliEnv) policyDir() string {
	dir := filepath.Join(e.dir, "policy")
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	if err := os.CopyFS(dir, demo.Policy()); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// commandTree lists every command the binary's help shows, and which of them group others.
func commandTree(t *testing.T) (all []string, groups map[string][]string) {
	groups = map[string][]string{}
	section := regexp.MustCompile(`(?s)Available Commands:\n(.*?)\n\n`)
	var walk func(path []string)
	walk = func(path []string) {
		out, err := runHelp(path)
		if err != nil {
			t.Fatalf("rampart %s --help: %v", strings.Join(path, " "), err)
		}
		if len(path) > 0 {
			all = append(all, strings.Join(path, " "))
		}
		m := section.FindStringSubmatch(out)
		if m == nil {
			return
		}
		for _, line := range strings.Split(m[1], "\n") {
			name := strings.Fields(line)[0]
			groups[strings.Join(path, " ")] = append(groups[strings.Join(path, " ")], name)
			walk(append(slices.Clone(path), name))
		}
	}
	walk(nil)
	return all, groups
}

func runHelp(path []string) (string, error) {
	cmd := exec.Command(binary, append(slices.Clone(path), "--help")...)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	return out.String(), err
}

func TestCLIExitCodesAndFormats(t *testing.T) {
	all, groups := commandTree(t)
	rows := cliRows()
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.path] = true
		if !slices.Contains(all, r.path) {
			t.Errorf("cliRows has a row for %q, which the binary does not have", r.path)
		}
	}
	for _, path := range all {
		if len(groups[path]) == 0 && !covered[path] {
			t.Errorf("no row in cliRows for `rampart %s`: add one (its exit codes and output formats)", path)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	startServer(t, addr, "dev", "--addr", addr, "--data", data, "--egress-addr", "")
	e := &cliEnv{t: t, dir: t.TempDir(), data: data, tokens: map[string]string{},
		c: &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}}
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		e.tokens[u] = strings.TrimSpace(e.c.ok("login", "--dev", "--user", u, "--print-token"))
	}
	e.c.ok("login", "--dev", "--user", "alice")
	// Alice holds a writer grant and one stored version, for the weights rows.
	e.grant("weights-writer-frontier-7")
	e.c.ok("weights", "put", "frontier-7", e.file("first.bin", "first version"))
	// And the research secret (a standing binding), for the secret rows.
	e.c.ok("secret", "put", "research/tracking-key", "--file", e.file("secret.txt", "first secret"))

	// A group refuses what is not one of its commands, and suggests the one meant (`audit
	// veryfy`, `request aprove ID` printed help and exited 0).
	for group, subs := range groups {
		if group == "suggest" {
			continue // it takes free text as well as its eval command
		}
		sub := subs[0]
		typo := sub[:len(sub)-1]
		args := append(strings.Fields(group), typo, "ID")
		r := e.c.run(nil, args...)
		if r.code != 2 || !strings.Contains(r.err, "unknown command") || !strings.Contains(r.err, "Did you mean this?\n\t"+sub) {
			t.Errorf("rampart %s: exit %d, stderr %q; want 2, unknown command, did you mean %s", strings.Join(args, " "), r.code, r.err, sub)
		}
	}

	for _, row := range rows {
		for _, format := range []string{"table", "json", "yaml"} {
			args, env := row.args(e)
			if row.as != "-" && row.as != "" {
				env = append(env, "RAMPART_TOKEN="+e.tokens[row.as])
			}
			name := fmt.Sprintf("rampart -o %s %s", format, strings.Join(args, " "))
			r := e.c.run(env, append([]string{"-o", format}, args...)...)
			want := row.code
			if row.fixed && format != "table" {
				if r.code != 2 || !strings.Contains(r.err, "does not apply") || r.out != "" {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2, nothing on stdout, and -o does not apply", name, r.code, r.out, r.err)
				}
				continue
			}
			if r.code != want {
				t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", name, r.code, want, r.out, r.err)
				continue
			}
			if row.stderr != "" && !strings.Contains(r.err, row.stderr) {
				t.Errorf("%s: stderr %q does not say %q", name, r.err, row.stderr)
			}
			if want == 0 && !row.quiet && strings.TrimSpace(r.out) == "" {
				t.Errorf("%s: printed nothing on success", name)
			}
			if row.quiet && r.out != "" {
				t.Errorf("%s: printed %q; want nothing on standard output", name, r.out)
			}
			switch format {
			case "json":
				if err := checkJSON(r.out, row.stream); err != nil {
					t.Errorf("%s: standard output is not what -o json promises: %v\n%s", name, err, r.out)
				}
			case "yaml":
				if err := checkYAML(r.out, row.stream); err != nil {
					t.Errorf("%s: standard output is not what -o yaml promises: %v\n%s", name, err, r.out)
				}
			}
		}
	}
	// The same command's JSON and YAML say the same (the shape: ids and times differ per run).
	for _, args := range [][]string{{"roles"}, {"request", "list"}, {"grant", "list"}, {"whoami"}, {"weights", "ls"}, {"kube", "render", "rbac"}} {
		js, ys := e.c.run(nil, append([]string{"-o", "json"}, args...)...), e.c.run(nil, append([]string{"-o", "yaml"}, args...)...)
		var jv, yv any
		if err := json.Unmarshal([]byte(js.out), &jv); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if err := yaml.Unmarshal([]byte(ys.out), &yv); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if a, b := shape(jv), shape(yv); a != b {
			t.Errorf("rampart %s: -o json and -o yaml differ:\n json %s\n yaml %s", strings.Join(args, " "), a, b)
		}
	}
	// An empty list is [] (it was null).
	if r := e.as("dave", "-o", "json", "request", "list", "--scope", "mine"); strings.TrimSpace(r.out) != "[]" {
		t.Errorf("an empty request list under -o json: %q, want []", r.out)
	}
}

// checkJSON: nothing, one JSON value, or (stream) one value per line.
func checkJSON(out string, stream bool) error {
	if strings.TrimSpace(out) == "" {
		return nil
	}
	if stream {
		for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if !json.Valid([]byte(line)) {
				return fmt.Errorf("line %d is not one JSON value", i+1)
			}
		}
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if v == nil {
		return fmt.Errorf("null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("more than one JSON value (%v)", err)
	}
	return nil
}

// checkYAML: nothing, one YAML document, or (stream) documents.
func checkYAML(out string, stream bool) error {
	if strings.TrimSpace(out) == "" {
		return nil
	}
	dec := yaml.NewDecoder(strings.NewReader(out))
	n := 0
	for ; ; n++ {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if v == nil {
			return fmt.Errorf("document %d is null", n+1)
		}
		if _, ok := v.(string); ok {
			return fmt.Errorf("document %d is a bare string (text, not data)", n+1)
		}
	}
	if n > 1 && !stream {
		return fmt.Errorf("%d documents, want one", n)
	}
	return nil
}

// shape describes a decoded value by its structure: kinds and keys, not values.
func shape(v any) string {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + shape(v[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	case []any:
		if len(v) == 0 {
			return "[]"
		}
		return "[" + shape(v[0]) + "…]"
	case string:
		return "string"
	case bool:
		return "bool"
	case nil:
		return "null"
	case time.Time:
		return "string" // YAML reads RFC 3339 text as a time; JSON keeps it text
	default:
		return "number"
	}
}
