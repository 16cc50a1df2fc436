package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The commands `rampart dev` prints work as printed, pasted into a shell, against the address it
// was started on (not the CLI's default): before, the banner ignored --addr. The egress examples
// are answered by the gateway itself (nothing leaves the machine), the not-yet-granted one with
// 403 and not "not in catalogue".
func TestDevBannerCommandsWork(t *testing.T) {
	addr, egress := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	dev := exec.Command(binary, "dev", "--addr", addr, "--egress-addr", egress, "--data", filepath.Join(dir, "data"))
	out, logs := &syncBuffer{}, &syncBuffer{}
	dev.Stdout, dev.Stderr = out, logs
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = dev.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = dev.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = dev.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("rampart dev's log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out.String(), "Stop with Ctrl-C"); time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("rampart dev exited:\n%s%s", out, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner within a minute:\n%s", out)
		}
	}
	banner := out.String()

	// The shell lines of a block: from its heading to the next blank line, with ./rampart
	// replaced by the binary under test and go build left out.
	block := func(heading string) []string {
		t.Helper()
		i := strings.Index(banner, heading)
		if i < 0 {
			t.Fatalf("the banner has no %q:\n%s", heading, banner)
		}
		var lines []string
		for _, l := range strings.Split(banner[i:], "\n")[1:] {
			l = strings.TrimSpace(l)
			if l == "" {
				break
			}
			if strings.HasPrefix(l, "go build") || strings.HasPrefix(l, "#") || !strings.Contains(l, "rampart") && !strings.HasPrefix(l, "curl") && !strings.HasPrefix(l, "export") {
				continue
			}
			lines = append(lines, strings.ReplaceAll(l, "./rampart", binary))
		}
		return lines
	}
	export := block("In every terminal you use with it")
	if len(export) != 1 || export[0] != "export RAMPART_ADDR=http://"+addr {
		t.Fatalf("the banner does not point the commands at %s: %q\n%s", addr, export, banner)
	}
	sh := func(lines []string) (string, error) {
		t.Helper()
		script := "set -eu\n" + export[0] + "\n" + strings.Join(lines, "\n") + "\n"
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = append(os.Environ(), "RAMPART_CONFIG_DIR="+t.TempDir(), "RAMPART_TOKEN=", "HTTPS_PROXY=", "HTTP_PROXY=", "https_proxy=", "http_proxy=")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	walk, err := sh(block("Try, in another terminal:"))
	if err != nil || !strings.Contains(walk, "ALLOWED") || !strings.Contains(walk, "req_") {
		t.Fatalf("the banner's walkthrough, pasted: %v\n%s", err, walk)
	}
	gw := block("Egress gateway on " + egress)
	if len(gw) != 4 {
		t.Fatalf("egress lines %q", gw)
	}
	for i, want := range map[int]string{0: "denied example.com:80 for an unidentified client", 2: "403", 3: "403"} {
		lines := []string{gw[i]}
		if strings.Contains(gw[i], "$T") {
			lines = []string{gw[1], gw[i]} // the token line first
		}
		got, _ := sh(lines)
		if !strings.Contains(got, want) || strings.Contains(got, "not in catalogue") {
			t.Errorf("%s\nanswered:\n%s\nwant %s", gw[i], got, want)
		}
	}
}
