package main

import (
	"strings"
	"testing"

	"rampart.dev/rampart/server"
)

// What the dev banner must and must not say (the issue 12 review): commands for the address it
// listens on, no tool that is not installed, nothing sent to the internet, the egress example on
// the catalogue's port, the way back from the tamper demo.
func TestDevBanner(t *testing.T) {
	cfg := server.Config{DataDir: ".rampart-dev", EgressListen: "127.0.0.1:8471", Dev: true}
	for _, addr := range []string{defaultAddr, "127.0.0.1:9123"} {
		b := banner(cfg, addr)
		if addr != defaultAddr && !strings.Contains(b, "export RAMPART_ADDR=http://"+addr) {
			t.Errorf("%s: the banner's commands would go to %s:\n%s", addr, defaultAddr, b)
		}
		if addr == defaultAddr && strings.Contains(b, "RAMPART_ADDR") {
			t.Errorf("%s: an export line for the default address", addr)
		}
		for _, bad := range []string{"oathtool", "http://api.openai.com", "https://github.com", "https://huggingface.co", "https://arxiv.org", "<ID>"} {
			if strings.Contains(b, bad) {
				t.Errorf("%s: the banner says %q:\n%s", addr, bad, b)
			}
		}
		for _, want := range []string{"https://api.openai.com", "./rampart mfa code", "ID=$(./rampart request create", "approve $ID", "audit verify --reset-key"} {
			if !strings.Contains(b, want) {
				t.Errorf("%s: the banner lacks %q:\n%s", addr, want, b)
			}
		}
	}
}

// mfa code refuses a server elsewhere: the secret it knows is only rampart dev's.
func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8470": true, "http://127.0.0.1:9000": true, "localhost:8470": true, "[::1]:8470": true,
		"rampart.example.com:8470": false, "https://rampart.example.com": false, "10.0.0.1:8470": false,
	} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
