package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Azurite, the Azure Storage emulator, for the vault's blob-store benchmark. The main module
// starts it for its tests with internal/testenv.Azurite, which this module cannot import; this
// is the same logic (same version, flags, install location and well-known development account).
const (
	azuriteVersion = "3.35.0"
	azuriteAccount = "devstoreaccount1"
	// The emulator's public development key, documented by Microsoft; not a secret.
	azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

var azuriteListening = regexp.MustCompile(`successfully listens on (http://127\.0\.0\.1:[0-9]+)`)

// azurite is a running azurite-blob.
type azurite struct {
	cmd     *exec.Cmd
	url     string // the account URL: http://127.0.0.1:PORT/devstoreaccount1
	exited  chan struct{}
	mu      sync.Mutex
	logs    strings.Builder
	waitErr error
}

// azuriteDir is where scripts/azurite.sh installs Azurite: $RAMPART_AZURITE_DIR, or
// ${XDG_CACHE_HOME:-$HOME/.cache}/rampart/azurite-VERSION.
func azuriteDir() string {
	if d := os.Getenv("RAMPART_AZURITE_DIR"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(cache, "rampart", "azurite-"+azuriteVersion)
}

// startAzurite starts Azurite's blob service on a free loopback port with its data in dir.
// Stop it with stop.
func startAzurite(dir string) (*azurite, error) {
	const how = "install it with scripts/azurite.sh install (run.sh does), or set RAMPART_AZURITE_DIR"
	bin := filepath.Join(azuriteDir(), "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("Azurite %s is not installed at %s: %s", azuriteVersion, bin, how)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("Node.js is needed to run Azurite (install the Debian nodejs package): %v", err)
	}
	cmd := exec.Command(node, bin,
		"--blobHost", "127.0.0.1", "--blobPort", "0",
		"--location", dir, "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent")
	cmd.Dir = dir
	// Its own process group, so stop ends all of it; killed by the kernel if this process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	a := &azurite{cmd: cmd, exited: make(chan struct{})}
	cmd.Stderr = a
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start Azurite: %v", err)
	}
	go func() { a.waitErr = cmd.Wait(); close(a.exited) }()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			_, _ = a.Write([]byte(sc.Text() + "\n"))
			if m := azuriteListening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(a, out)
	}()
	select {
	case u := <-found:
		a.url = u + "/" + azuriteAccount
		return a, nil
	case <-a.exited:
		return nil, fmt.Errorf("Azurite exited before it listened (%v):\n%s", a.waitErr, a.output())
	case <-time.After(60 * time.Second):
		a.stop()
		return nil, fmt.Errorf("Azurite did not listen within 60s:\n%s", a.output())
	}
}

// Write keeps Azurite's output (the first 64 KiB), for error messages.
func (a *azurite) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.logs.Len() < 64<<10 {
		a.logs.Write(p)
	}
	return len(p), nil
}

func (a *azurite) output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.TrimSpace(a.logs.String())
}

// pid is the Node.js process serving the blobs.
func (a *azurite) pid() int { return a.cmd.Process.Pid }

// stop ends Azurite's process group: SIGTERM, then SIGKILL after 10 s.
func (a *azurite) stop() {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := syscall.Kill(-a.cmd.Process.Pid, sig); err != nil {
			_ = a.cmd.Process.Signal(sig)
		}
		select {
		case <-a.exited:
			return
		case <-time.After(10 * time.Second):
		}
	}
}
