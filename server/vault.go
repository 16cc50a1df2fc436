package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/secrets"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
	"rampart.dev/rampart/vault/blob/azure"
	"rampart.dev/rampart/weights"
)

// VaultConfig is the weights vault.
type VaultConfig struct {
	// Keyring is the local key provider's file (rampart vault init); default
	// <data_dir>/vault-keyring.json. rampart dev creates it; elsewhere, without one the vault is
	// off, and a keyring named here but missing stops the server.
	Keyring string `yaml:"keyring"`
	// Store is where the ciphertext lives.
	Store VaultStoreConfig `yaml:"store"`
	// Disabled turns the vault off (its routes answer 404).
	Disabled bool `yaml:"disabled"`
}

// VaultStoreConfig selects the blob store.
type VaultStoreConfig struct {
	// Driver is fs (default) or azure.
	Driver string `yaml:"driver"`
	// Path is the fs driver's directory (default <data_dir>/vault).
	Path string `yaml:"path"`
	// Azure Blob Storage: the account URL (https://ACCOUNT.blob.core.windows.net), the
	// container, and where the credential comes from. Secrets stay out of the file: the
	// account key is read from the environment variable account_key_env names (default
	// AZURE_STORAGE_KEY), or a SAS from sas_env (default AZURE_STORAGE_SAS_TOKEN).
	AccountURL      string `yaml:"account_url"`
	Container       string `yaml:"container"`
	AccountName     string `yaml:"account_name"`
	AccountKeyEnv   string `yaml:"account_key_env"`
	SASEnv          string `yaml:"sas_env"`
	CreateContainer bool   `yaml:"create_container"`
	// BlockSize is the Azure upload block size in bytes (default 8 MiB); each upload holds
	// four blocks in memory.
	BlockSize int64 `yaml:"block_size"`
}

func (c *Config) validateVault(doc *strictyaml.Document) {
	sc := c.Vault.Store
	switch sc.Driver {
	case "", "fs":
	case "azure":
		if sc.AccountURL == "" || sc.Container == "" {
			doc.Errorf("vault.store", "the azure driver needs account_url and container")
		}
		if sc.AccountKeyEnv != "" && os.Getenv(sc.AccountKeyEnv) == "" {
			doc.Errorf("vault.store.account_key_env", "$%s is empty or unset", sc.AccountKeyEnv)
		}
		if sc.SASEnv != "" && os.Getenv(sc.SASEnv) == "" {
			doc.Errorf("vault.store.sas_env", "$%s is empty or unset", sc.SASEnv)
		}
		if sc.AccountKeyEnv != "" && sc.SASEnv != "" {
			doc.Errorf("vault.store", "give account_key_env or sas_env, not both")
		}
	default:
		doc.Errorf("vault.store.driver", "unknown driver %q; use fs or azure", sc.Driver)
	}
}

// startVault opens the keyring and the blob store.
func (in *Instance) startVault() error {
	vc := in.cfg.Vault
	if vc.Disabled {
		return nil
	}
	path := vc.Keyring
	if path == "" {
		path = filepath.Join(in.cfg.DataDir, "vault-keyring.json")
	}
	_, serr := os.Stat(path)
	missing := errors.Is(serr, fs.ErrNotExist)
	switch {
	case missing && in.cfg.Dev:
		if _, err := vault.InitLocalKeyring(path); err != nil {
			return err
		}
		in.log.Info("created the vault keyring; back it up with the data directory (without it nothing decrypts)", "path", path)
	case missing && vc.Keyring == "":
		in.log.Info("weights vault off: no keyring; create one with `rampart vault init` and set vault.keyring", "looked_at", path)
		return nil
	}
	kp, err := vault.OpenLocalKeyring(path)
	if err != nil {
		return fmt.Errorf("vault: %w (or set vault.disabled: true)", err)
	}
	var store blob.Store
	switch vc.Store.Driver {
	case "azure":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		store, err = openAzureStore(ctx, vc.Store)
		cancel()
	default:
		dir := vc.Store.Path
		if dir == "" {
			dir = filepath.Join(in.cfg.DataDir, "vault")
		}
		store, err = blob.NewFS(dir)
	}
	if err != nil {
		return fmt.Errorf("vault store: %w", err)
	}
	in.Weights = &weights.Service{Keys: kp, Blobs: store, Meta: in.Store, Decide: in.Index, Record: recorder(in.Store), Refused: in.Refusals.Record,
		Sign: in.Ledger.SignNote, OpenNote: in.Ledger.OpenNote, Now: in.now, Log: in.log}
	// The secrets store shares the keyring: one rotation re-wraps both, and a key still used
	// by a secret is not retired.
	in.Secrets = &secrets.Service{Keys: kp, Store: in.Store, Decide: in.Index, Record: recorder(in.Store), Refused: in.Refusals.Record, Now: in.now}
	in.Weights.KeyUsers = []weights.KeyUser{in.Secrets}
	return nil
}

// openAzureStore opens the container, creating it first when create_container is set. The
// credential is an account key or a SAS from the environment; Entra ID credentials are not
// wired into the server yet.
func openAzureStore(ctx context.Context, c VaultStoreConfig) (blob.Store, error) {
	cfg := azure.Config{AccountURL: c.AccountURL, Container: c.Container, AccountName: c.AccountName,
		CreateContainer: c.CreateContainer, BlockSize: c.BlockSize}
	switch {
	case c.AccountKeyEnv != "":
		cfg.AccountKey = os.Getenv(c.AccountKeyEnv)
	case c.SASEnv != "":
		cfg.SAS = strings.TrimPrefix(os.Getenv(c.SASEnv), "?")
	default:
		cfg.CredentialsFromEnv(os.Getenv)
	}
	if cfg.AccountName == "" && cfg.AccountKey != "" {
		cfg.AccountName = os.Getenv(azure.EnvStorageAccount)
	}
	if cfg.AccountKey == "" && cfg.SAS == "" {
		return nil, fmt.Errorf("azure container %q: no credential; set $%s (with account_name or $%s) or $%s, or name other variables with vault.store.account_key_env / sas_env",
			c.Container, azure.EnvStorageKey, azure.EnvStorageAccount, azure.EnvStorageSAS)
	}
	s, err := azure.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Reach the container now: a wrong key or a missing container stops the server at start,
	// not at the first upload.
	if _, err := s.List(ctx, "objects/__probe__/"); err != nil {
		return nil, fmt.Errorf("azure container %q at %s is not reachable: %w", c.Container, c.AccountURL, err)
	}
	return s, nil
}
