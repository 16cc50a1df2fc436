package testenv

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Azurite, the Azure Storage emulator the blob tests run against, and the well-known
// development account it serves (public values, documented by Microsoft; not a secret).
const (
	AzuriteVersion = "3.35.0"
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// AzuriteDir is where scripts/azurite.sh installs Azurite: RAMPART_AZURITE_DIR, or
// ${XDG_CACHE_HOME:-$HOME/.cache}/rampart/azurite-VERSION, outside any clone.
func AzuriteDir() string {
	if d := os.Getenv("RAMPART_AZURITE_DIR"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(cache, "rampart", "azurite-"+AzuriteVersion)
}

var azuriteListening = regexp.MustCompile(`successfully listens on (http://127\.0\.0\.1:[0-9]+)`)

// Azurite starts Azurite's blob service (azurite-blob) for this test on a free loopback port,
// with its data in a temporary directory, and stops it when the test ends. It returns the
// account URL (http://127.0.0.1:PORT/devstoreaccount1), the account name and its key. Without
// an installed Azurite (or Node.js), the test skips, or fails under
// RAMPART_REQUIRE_INTEGRATION=1.
func Azurite(t testing.TB) (url, account, key string) {
	t.Helper()
	const how = "run ./scripts/azurite.sh install (npm install azurite@" + AzuriteVersion + " into ~/.cache/rampart), or ./scripts/test.sh, which does"
	dir := AzuriteDir()
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err != nil {
		Missing(t, "Azurite "+AzuriteVersion+" (at "+bin+")", how)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		Missing(t, "Node.js (to run Azurite)", "install the Debian nodejs package, then "+how)
	}
	data := t.TempDir() // removed after the server has stopped (cleanups run last-in, first-out)
	cmd := exec.Command(node, bin,
		"--blobHost", "127.0.0.1", "--blobPort", "0",
		"--location", data, "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent")
	cmd.Dir = data
	cmd.SysProcAttr = azuriteSysProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs Tail
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Azurite: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { stopAzurite(t, cmd, exited) })

	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			logs.Write([]byte(line + "\n"))
			if m := azuriteListening.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(&logs, out)
	}()
	select {
	case u := <-found:
		return u + "/" + AzuriteAccount, AzuriteAccount, AzuriteKey
	case <-exited:
		t.Fatalf("Azurite exited before it listened (%v):\n%s", waitErr, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("Azurite did not listen within 60s:\n%s", logs.String())
	}
	panic("unreachable")
}

func stopAzurite(t testing.TB, cmd *exec.Cmd, exited <-chan struct{}) {
	signalAzurite(cmd, syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(10 * time.Second):
	}
	signalAzurite(cmd, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("Azurite (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
	}
}

// Tail keeps the last 64 KiB written to it, for error messages (a child process's output).
type Tail struct {
	mu  sync.Mutex
	buf []byte
}

func (w *Tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - 64<<10; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *Tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(bytes.TrimSpace(w.buf))
}
