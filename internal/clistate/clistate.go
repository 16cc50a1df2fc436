// Package clistate keeps what the CLI remembers between runs, per server: the login token, the
// ledger's public key (trusted on first use, like an SSH host key) and the newest checkpoint
// seen, so `rampart audit verify` can prove the server never rewrote history it already showed.
package clistate

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Server is what is remembered about one server address.
type Server struct {
	Token   string `json:"token,omitempty"`
	Subject string `json:"subject,omitempty"`
	TokenID string `json:"token_id,omitempty"`
	// For a signed-in session: its refresh token, when the access token expires, and its id.
	RefreshToken    string    `json:"refresh_token,omitempty"`
	AccessExpiresAt time.Time `json:"access_expires_at,omitzero"`
	SessionID       string    `json:"session_id,omitempty"`
	// LedgerKey is the verifier key first seen for this server.
	LedgerKey string `json:"ledger_key,omitempty"`
	// Checkpoint is the newest signed checkpoint verified.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// State is the whole file.
type State struct {
	Servers map[string]*Server `json:"servers"`
	// DeviceID identifies this installation to the sign-in risk engine (random, made once).
	DeviceID string `json:"device_id,omitempty"`
	path     string
}

// Path returns the state file: $RAMPART_CONFIG_DIR/state.json, else the user config directory.
func Path() (string, error) {
	if d := os.Getenv("RAMPART_CONFIG_DIR"); d != "" {
		return filepath.Join(d, "state.json"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a config directory (%v); set RAMPART_CONFIG_DIR", err)
	}
	return filepath.Join(d, "rampart", "state.json"), nil
}

// Load reads the state file (an absent file is an empty state).
func Load() (*State, error) {
	p, err := Path()
	if err != nil {
		return nil, err
	}
	s := &State{Servers: map[string]*Server{}, path: p}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); delete it and log in again", p, err)
	}
	if s.Servers == nil {
		s.Servers = map[string]*Server{}
	}
	return s, nil
}

// Device returns the installation id, creating it (the caller saves the state).
func (s *State) Device() string {
	if s.DeviceID == "" {
		s.DeviceID = "cli-" + rand.Text()
	}
	return s.DeviceID
}

// ForgetLogin clears the login of addr.
func (s *Server) ForgetLogin() {
	s.Token, s.TokenID, s.Subject, s.RefreshToken, s.AccessExpiresAt, s.SessionID = "", "", "", "", time.Time{}, ""
}

// For returns the entry for addr, creating it.
func (s *State) For(addr string) *Server {
	if s.Servers[addr] == nil {
		s.Servers[addr] = &Server{}
	}
	return s.Servers[addr]
}

// Save writes the file, readable only by its owner (it holds tokens).
func (s *State) Save() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}
