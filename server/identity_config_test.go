package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/server"
)

// The oidc section's CLI client: a cli_client_id is accepted; a secret for it needs it, and its
// variable must be set; the development provider registers its own.
func TestOIDCCLIClientConfig(t *testing.T) {
	dir := t.TempDir()
	load := func(oidc string) error {
		p := filepath.Join(dir, "rampart.yaml")
		cfg := "data_dir: " + dir + "\npolicy_dir: " + dir + "\noidc:\n" + oidc
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := server.LoadConfig(p)
		return err
	}
	base := "  issuer: https://login.example.com\n  client_id: rampart\n  external_url: https://rampart.example.com\n"
	if err := load(base + "  cli_client_id: rampart-cli\n"); err != nil {
		t.Fatalf("a public CLI client: %v", err)
	}
	t.Setenv("RAMPART_TEST_CLI_SECRET", "not-secret-at-google")
	if err := load(base + "  cli_client_id: rampart-cli\n  cli_client_secret_env: RAMPART_TEST_CLI_SECRET\n"); err != nil {
		t.Fatalf("a CLI client with Google's secret: %v", err)
	}
	for _, c := range []struct{ yaml, want string }{
		{base + "  cli_client_secret_env: RAMPART_TEST_CLI_SECRET\n", "oidc.cli_client_secret_env"},
		{base + "  cli_client_id: rampart-cli\n  cli_client_secret_env: RAMPART_TEST_UNSET_VARIABLE\n", "RAMPART_TEST_UNSET_VARIABLE is empty or unset"},
		{"  dev_provider: true\n  cli_client_id: mine\n", "oidc.cli_client_id"},
	} {
		if err := load(c.yaml); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want an error naming %q", c.yaml, err, c.want)
		}
	}
}
